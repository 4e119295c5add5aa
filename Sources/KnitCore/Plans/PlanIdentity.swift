// A Plan has no name: two specs are the same plan when image, tag, inputs (path + tags), outputs, log tags,
// entrypoint, args and on_node agree. Input and output order, tag order, on_node order and duplicates do
// not matter; `active`, `resources`, `annotations` and `service_account` are not part of it. An empty
// entrypoint or args list is the same as none. A `knit#timestamp` requirement compares by instant (the
// validated plan holds it re-rendered).
//
// KnitCore has no hash function, so it produces the canonical bytes and the store hashes them to find
// candidates, then confirms with `sameIdentity(as:)`.

extension Plan {
    /// Canonical bytes of the plan's identity: equal exactly when ``sameIdentity(as:)`` holds.
    ///
    /// Every string is written as `<byte count>:<bytes>` and every list as `<count>;` first, so no two
    /// different plans can produce the same bytes. The first line names the format, so a later change to
    /// the encoding gives different bytes rather than false matches.
    public var identityBytes: [UInt8] {
        var out = IdentityWriter()
        out.raw("knit-plan-identity-1\n")
        out.string(image)
        out.string(version)
        out.count(onNode.count)
        for label in onNode {
            out.string(label.mode.rawValue)
            out.string(label.key)
            out.string(label.value)
        }
        let mountpoints = [
            ("inputs", inputs.map { ($0.path, $0.tags) }), ("outputs", outputs.map { ($0.path, $0.tags) }),
        ]
        for (name, points) in mountpoints {
            out.raw(name)
            out.count(points.count)
            for (path, tags) in points.sorted(by: { compareBytes($0.0, $1.0) < 0 }) {
                out.string(path)
                out.tags(tags)
            }
        }
        if let log {
            out.raw("log")
            out.tags(log)
        } else {
            out.raw("nolog")
        }
        out.raw("entrypoint")
        out.count(entrypoint.count)
        for item in entrypoint { out.string(item) }
        out.raw("args")
        out.count(args.count)
        for item in args { out.string(item) }
        return out.bytes
    }

    /// True when `other` is the same plan in Knitfab's sense (registering it would be a 409).
    public func sameIdentity(as other: Plan) -> Bool {
        image == other.image && version == other.version && entrypoint == other.entrypoint
            && args == other.args && log == other.log && onNode == other.onNode
            && Set(inputs.map { PointKey(path: $0.path, tags: $0.tags) })
                == Set(other.inputs.map { PointKey(path: $0.path, tags: $0.tags) })
            && Set(outputs.map { PointKey(path: $0.path, tags: $0.tags) })
                == Set(other.outputs.map { PointKey(path: $0.path, tags: $0.tags) })
    }
}

private struct PointKey: Hashable {
    let path: String
    let tags: TagSet
}

private struct IdentityWriter {
    var bytes: [UInt8] = []

    mutating func raw(_ text: String) { bytes.append(contentsOf: text.utf8) }

    mutating func count(_ value: Int) {
        raw(String(value))
        bytes.append(UInt8(ascii: ";"))
    }

    mutating func string(_ text: String) {
        raw(String(text.utf8.count))
        bytes.append(UInt8(ascii: ":"))
        bytes.append(contentsOf: text.utf8)
    }

    mutating func tags(_ tags: TagSet) {
        count(tags.count)
        for tag in tags {
            string(tag.key)
            string(tag.value)
        }
    }
}
