// Hand-written JSON for the shapes a tag query answers with (a list of Data Detail and what it embeds).
// The Codable stream encoder spent ~19 % of knitd's CPU per `GET /api/data` on generic metadata lookups,
// container boxes and reference counting; these writers produce the very same bytes (fields in declaration
// order, nil optionals omitted, the same escapes), which `DirectJSONTests` checks against the Codable path
// over many varied values. A field added to one of these types must be added here too: that test fails
// until it is.

/// A value that writes its own compact JSON, byte-identical to what the Codable encoders give.
package protocol DirectJSON {
    func writeJSON(into out: inout JSONOutput)
}

extension Array: DirectJSON where Element: DirectJSON {
    package func writeJSON(into out: inout JSONOutput) {
        out.append(UInt8(ascii: "["))
        for index in indices {
            if index > startIndex { out.append(UInt8(ascii: ",")) }
            self[index].writeJSON(into: &out)
        }
        out.append(UInt8(ascii: "]"))
    }
}

extension JSONOutput {
    /// `"key":` — keys here are plain identifiers, so they need no escaping.
    @inline(__always)
    fileprivate mutating func key(_ name: StaticString, first: Bool = false) {
        if !first { append(UInt8(ascii: ",")) }
        append(UInt8(ascii: "\""))
        append(name)
        append("\":")
    }

    fileprivate mutating func tags(_ set: TagSet) {
        append(UInt8(ascii: "["))
        for (index, tag) in set.tags.enumerated() {
            if index > 0 { append(UInt8(ascii: ",")) }
            append(UInt8(ascii: "\""))
            escape(tag.key)
            append(UInt8(ascii: ":"))
            escape(tag.value)
            append(UInt8(ascii: "\""))
        }
        append(UInt8(ascii: "]"))
    }

    fileprivate mutating func strings(_ list: [String]) {
        append(UInt8(ascii: "["))
        for (index, text) in list.enumerated() {
            if index > 0 { append(UInt8(ascii: ",")) }
            quote(text)
        }
        append(UInt8(ascii: "]"))
    }
}

extension MountpointJSON: DirectJSON {
    package func writeJSON(into out: inout JSONOutput) {
        out.append(UInt8(ascii: "{"))
        out.key("path", first: true)
        out.quote(path)
        out.key("tags")
        out.tags(tags)
        out.append(UInt8(ascii: "}"))
    }
}

extension LogPointJSON: DirectJSON {
    package func writeJSON(into out: inout JSONOutput) {
        out.append(UInt8(ascii: "{"))
        out.key("tags", first: true)
        out.tags(tags)
        out.append(UInt8(ascii: "}"))
    }
}

extension PlanSummaryJSON: DirectJSON {
    package func writeJSON(into out: inout JSONOutput) {
        out.append(UInt8(ascii: "{"))
        out.key("planId", first: true)
        out.quote(planId)
        if let image {
            out.key("image")
            out.quote(image)
        }
        if let name {
            out.key("name")
            out.quote(name)
        }
        if let entrypoint {
            out.key("entrypoint")
            out.strings(entrypoint)
        }
        if let args {
            out.key("args")
            out.strings(args)
        }
        if let annotations {
            out.key("annotations")
            out.strings(annotations)
        }
        out.append(UInt8(ascii: "}"))
    }
}

extension RunExitJSON: DirectJSON {
    package func writeJSON(into out: inout JSONOutput) {
        out.append(UInt8(ascii: "{"))
        out.key("code", first: true)
        out.int(Int64(code))
        out.key("message")
        out.quote(message)
        out.append(UInt8(ascii: "}"))
    }
}

extension RunSummaryJSON: DirectJSON {
    package func writeJSON(into out: inout JSONOutput) {
        out.append(UInt8(ascii: "{"))
        out.key("runId", first: true)
        out.quote(runId)
        out.key("status")
        out.quote(status)
        out.key("updatedAt")
        out.quote(updatedAt)
        if let exit {
            out.key("exit")
            exit.writeJSON(into: &out)
        }
        out.key("plan")
        plan.writeJSON(into: &out)
        out.append(UInt8(ascii: "}"))
    }
}

extension DataUpstreamJSON: DirectJSON {
    package func writeJSON(into out: inout JSONOutput) {
        out.append(UInt8(ascii: "{"))
        var first = true
        if let mountpoint {
            out.key("mountpoint", first: true)
            mountpoint.writeJSON(into: &out)
            first = false
        }
        if let log {
            out.key("log", first: first)
            log.writeJSON(into: &out)
            first = false
        }
        out.key("run", first: first)
        run.writeJSON(into: &out)
        out.append(UInt8(ascii: "}"))
    }
}

extension DataDownstreamJSON: DirectJSON {
    package func writeJSON(into out: inout JSONOutput) {
        out.append(UInt8(ascii: "{"))
        out.key("mountpoint", first: true)
        mountpoint.writeJSON(into: &out)
        out.key("run")
        run.writeJSON(into: &out)
        out.append(UInt8(ascii: "}"))
    }
}

extension NominationJSON: DirectJSON {
    package func writeJSON(into out: inout JSONOutput) {
        out.append(UInt8(ascii: "{"))
        out.key("path", first: true)
        out.quote(path)
        out.key("tags")
        out.tags(tags)
        out.key("plan")
        plan.writeJSON(into: &out)
        out.append(UInt8(ascii: "}"))
    }
}

extension DataDetailJSON: DirectJSON {
    package func writeJSON(into out: inout JSONOutput) {
        out.append(UInt8(ascii: "{"))
        out.key("knitId", first: true)
        out.quote(knitId)
        out.key("tags")
        out.tags(tags)
        out.key("upstream")
        upstream.writeJSON(into: &out)
        out.key("downstreams")
        downstreams.writeJSON(into: &out)
        out.key("nomination")
        nomination.writeJSON(into: &out)
        if let creator {
            out.key("creator")
            out.quote(creator)
        }
        out.append(UInt8(ascii: "}"))
    }
}
