// Graphviz dot text of lineage and plan graphs, laid out as Knitfab's CLI writes them: HTML-like
// table labels, Data green, Runs orange, Plans goldenrod, roots as Mdiamond. Times are shown at a given UTC
// offset because this module has no clock or time zone; the CLI passes the local one.

extension KnitGraph {
    /// The graph as dot text, times rendered at `offsetMinutes` east of UTC.
    public func dot(offsetMinutes: Int = 0) -> String {
        var out = "digraph G {\n\tnode [shape=record fontsize=10]\n\tedge [fontsize=10]\n\n"
        switch kind {
        case .lineage: renderLineage(into: &out, offsetMinutes: offsetMinutes)
        case .plan: renderPlans(into: &out)
        }
        out += "\n}\n"
        return out
    }

    // Knitfab lists every Data, then every Run, then the roots; edges grouped by their source in that order.
    private func renderLineage(into out: inout String, offsetMinutes: Int) {
        var order: [String: Int] = [:]
        for node in nodes where node.type == .data { renderData(node, into: &out, offsetMinutes: offsetMinutes) }
        for node in nodes where node.type == .run { renderRun(node, into: &out, offsetMinutes: offsetMinutes) }
        for node in nodes where node.type == .root { out += "\t\(dotQuoted(node.id))[shape=Mdiamond];\n" }
        for (position, node) in nodes.enumerated() {
            let group = node.type == .data ? 0 : node.type == .run ? 1 : 2
            order[node.id] = group * nodes.count + position
        }
        out += "\n"
        let sorted = edges.enumerated().sorted { a, b in
            let left = order[a.element.from] ?? Int.max
            let right = order[b.element.from] ?? Int.max
            return left != right ? left < right : a.offset < b.offset
        }
        for (_, edge) in sorted {
            if let label = edge.label {
                out += "\t\(dotQuoted(edge.from)) -> \(dotQuoted(edge.to)) [label=\(dotQuoted(label))];\n"
            } else {
                out += "\t\(dotQuoted(edge.from)) -> \(dotQuoted(edge.to));\n"
            }
        }
    }

    private func renderData(_ node: GraphNode, into out: inout String, offsetMinutes: Int) {
        var system: [String] = []
        var user: [String] = []
        for tag in node.tags ?? TagSet() {
            switch tag.key {
            case SystemTag.id: continue
            case SystemTag.timestamp: system.append(dotHTMLEscaped(localTime(tag.value, offsetMinutes)))
            case SystemTag.transient: system.append(dotHTMLEscaped(tag.description))
            default: user.append("<B>\(dotHTMLEscaped(tag.key))</B>:\(dotHTMLEscaped(tag.value))")
            }
        }
        let background = node.start == true ? "#d4ecc6" : "#FFFFFF"
        out += "\t\(dotQuoted(node.id))[\n\t\tshape=none\n\t\tcolor=\"#1c9930\"\n\t\tlabel=<\n"
        out += "\t\t\t<TABLE CELLSPACING=\"0\">\n"
        out += "\t\t\t\t<TR><TD BGCOLOR=\"#1c9930\"><FONT COLOR=\"#FFFFFF\"><B>Data</B></FONT></TD>"
        out += "<TD BGCOLOR=\"\(background)\">knit#id: \(dotHTMLEscaped(node.knitId ?? ""))</TD></TR>\n"
        if !system.isEmpty {
            out +=
                "\t\t\t\t<TR><TD COLSPAN=\"2\"><FONT POINT-SIZE=\"8\">\(system.joined(separator: " | "))</FONT></TD></TR>\n"
        }
        out += "\t\t\t\t<TR><TD COLSPAN=\"2\">\(user.joined(separator: "<BR/>"))</TD></TR>\n"
        out += "\t\t\t</TABLE>\n\t\t>\n\t];\n"
    }

    private func renderRun(_ node: GraphNode, into out: inout String, offsetMinutes: Int) {
        let statusText = dotHTMLEscaped(node.status ?? "")
        let status: String
        switch node.status.flatMap(RunStatus.init(rawValue:)) {
        case .deactivated?: status = "<FONT COLOR=\"gray\"><B>\(statusText)</B></FONT>"
        case .completing?, .done?: status = "<FONT COLOR=\"#007700\"><B>\(statusText)</B></FONT>"
        case .aborting?, .failed?: status = "<FONT COLOR=\"red\"><B>\(statusText)</B></FONT>"
        default: status = statusText
        }
        out += "\t\(dotQuoted(node.id))[\n\t\tshape=none\n\t\tcolor=\"#FFA500\"\n\t\tlabel=<\n"
        out += "\t\t\t<TABLE CELLSPACING=\"0\">\n"
        out += "\t\t\t\t<TR><TD BGCOLOR=\"#FFA500\"><FONT COLOR=\"#FFFFFF\"><B>Run</B></FONT></TD>"
        out += "<TD>\(status)</TD><TD>id: \(dotHTMLEscaped(node.runId ?? ""))</TD></TR>\n"
        out += "\t\t\t\t<TR><TD COLSPAN=\"3\"><FONT POINT-SIZE=\"8\">last updated: "
        out += "\(dotHTMLEscaped(localTime(node.updatedAt ?? "", offsetMinutes)))</FONT></TD></TR>\n"
        out += "\t\t\t\t<TR><TD COLSPAN=\"3\">\(dotHTMLEscaped(planTitle(node.plan)))</TD></TR>\n"
        out += "\t\t\t</TABLE>\n\t\t>\n\t];\n"
    }

    private func renderPlans(into out: inout String) {
        var members: [String: [GraphNode]] = [:]
        for node in nodes where node.type != .plan {
            if let planId = node.planId { members[planId, default: []].append(node) }
        }
        var inner = Set<GraphEdge>()
        for node in nodes where node.type == .plan {
            let planId = node.planId ?? ""
            out += "\tsubgraph \(dotQuoted("cluster_" + node.id)) {\n\t\tcolor=\"#DAA520\"\n"
            let points = members[planId] ?? []
            for point in points where point.type == .input {
                out += "\t\t\(dotQuoted(point.id))[shape=point, color=\"#1c9930\"];\n"
                let edge = GraphEdge(from: point.id, to: node.id, type: .input, label: point.path)
                inner.insert(edge)
                out += "\t\t\(dotQuoted(point.id)) -> \(dotQuoted(node.id)) [label=\(dotQuoted(point.path ?? ""))];\n"
            }
            renderPlan(node, into: &out)
            for point in points where point.type == .output || point.type == .log {
                let label = point.type == .log ? "(log)" : point.path ?? ""
                out += "\t\t\(dotQuoted(point.id))[shape=point, color=\"#1c9930\"];\n"
                inner.insert(
                    GraphEdge(from: node.id, to: point.id, type: point.type == .log ? .log : .output, label: label)
                )
                out += "\t\t\(dotQuoted(node.id)) -> \(dotQuoted(point.id)) [label=\(dotQuoted(label))];\n"
            }
            out += "\t}\n"
        }
        out += "\n"
        for edge in edges where !inner.contains(edge) {
            if let label = edge.label {
                out += "\t\(dotQuoted(edge.from)) -> \(dotQuoted(edge.to)) [label=\(dotQuoted(label))];\n"
            } else {
                out += "\t\(dotQuoted(edge.from)) -> \(dotQuoted(edge.to));\n"
            }
        }
    }

    private func renderPlan(_ node: GraphNode, into out: inout String) {
        let background = node.start == true ? "#EDD9B4" : "#FFFFFF"
        let state =
            node.active == false
            ? "<FONT COLOR=\"gray\"><B>inactive</B></FONT>" : "<FONT COLOR=\"#007700\"><B>active</B></FONT>"
        let annotations = (node.plan?.annotations ?? []).map { annotation -> String in
            guard let equals = annotation.firstIndex(of: "=") else { return dotHTMLEscaped(annotation) }
            let key = annotation[..<equals]
            let value = annotation[annotation.index(after: equals)...]
            return "<B>\(dotHTMLEscaped(String(key)))</B>=\(dotHTMLEscaped(String(value)))"
        }
        out += "\t\t\(dotQuoted(node.id))[\n\t\t\tshape=none\n\t\t\tcolor=\"#DAA520\"\n\t\t\tlabel=<\n"
        out += "\t\t\t\t<TABLE CELLSPACING=\"0\">\n"
        out += "\t\t\t\t\t<TR><TD BGCOLOR=\"#DAA520\"><FONT COLOR=\"#FFFFFF\"><B>Plan</B></FONT></TD>"
        out += "<TD>\(state)</TD><TD BGCOLOR=\"\(background)\">id: \(dotHTMLEscaped(node.planId ?? ""))</TD></TR>\n"
        out += "\t\t\t\t\t<TR><TD COLSPAN=\"3\">\(dotHTMLEscaped(planTitle(node.plan)))</TD></TR>\n"
        if !annotations.isEmpty {
            out += "\t\t\t\t\t<TR><TD COLSPAN=\"3\">\(annotations.joined(separator: "<BR/>"))</TD></TR>\n"
        }
        out += "\t\t\t\t</TABLE>\n\t\t\t>\n\t\t];\n"
    }
}

/// `image = repo:tag` for an image plan, the name for a pseudo plan.
private func planTitle(_ plan: PlanSummaryJSON?) -> String {
    guard let plan else { return "" }
    if let image = plan.image { return "image = " + image }
    return plan.name ?? ""
}

/// A Knitfab timestamp shown at `offsetMinutes`; the text itself when it does not parse.
private func localTime(_ text: String, _ offsetMinutes: Int) -> String {
    guard let time = try? KnitTime(rfc3339: text) else { return text }
    return time.render(offsetMinutes: offsetMinutes)
}

/// A dot double-quoted string.
private func dotQuoted(_ text: String) -> String {
    var out = "\""
    for character in text {
        switch character {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        // An escaped backslash: a dot string shows `\\` as one.
        default: appendVisible(character, to: &out, backslash: "\\\\")
        }
    }
    return out + "\""
}

/// Appends `character`, or for a control character (other than tab and newline) its `\xNN` spelling:
/// graphviz refuses raw control characters in labels, and a graph must render whatever its text (names
/// and tags stored before such tags were refused, file names).
private func appendVisible(_ character: Character, to out: inout String, backslash: String = "\\") {
    guard
        character.unicodeScalars.contains(where: {
            $0.properties.generalCategory == .control && $0 != "\t" && $0 != "\n"
        })
    else {
        out.append(character)
        return
    }
    for scalar in character.unicodeScalars {
        if scalar.properties.generalCategory == .control && scalar != "\t" && scalar != "\n" {
            let hex = String(scalar.value, radix: 16, uppercase: true)
            out += backslash + "x" + String(repeating: "0", count: max(0, 2 - hex.count)) + hex
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
}

private func hasControlCharacter(_ text: String) -> Bool {
    text.unicodeScalars.contains { $0.properties.generalCategory == .control && $0 != "\t" && $0 != "\n" }
}

/// Text for an HTML-like label, escaped as Go's `html.EscapeString` does.
private func dotHTMLEscaped(_ text: String) -> String {
    guard text.contains(where: { "<>&\"'".contains($0) }) || hasControlCharacter(text) else { return text }
    var out = ""
    for character in text {
        switch character {
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "&": out += "&amp;"
        case "\"": out += "&#34;"
        case "'": out += "&#39;"
        default: appendVisible(character, to: &out)
        }
    }
    return out
}
