public import KnitCore
internal import KnitYAML

/// Reads plan files (the YAML `knit plan apply` takes) into the spec the API expects, checking them with
/// the server's own rules first so every mistake is reported at its `line:col`.
public enum PlanFile {
    /// Top-level keys of a plan file, in the order `knit plan template` writes them.
    static let topLevelKeys = [
        "annotations", "image", "entrypoint", "args", "inputs", "outputs", "log", "active", "resources",
        "on_node", "service_account",
    ]

    /// Misspellings seen in Knitfab's own documentation and in the wild, with the key meant.
    static let knownTypos = [
        "logs": "log", "annoation": "annotations", "annotation": "annotations", "resouce": "resources",
        "resource": "resources", "resouces": "resources", "input": "inputs", "output": "outputs",
        "onNode": "on_node", "on-node": "on_node", "node": "on_node", "serviceAccount": "service_account",
        "service-account": "service_account", "serviceaccount": "service_account", "command": "entrypoint",
        "cmd": "args", "arguments": "args",
    ]

    /// Reads and checks the plan file at `path`.
    /// - Throws: ``PlanFileError`` naming `path`, with every problem found.
    public static func load(path: String) throws(PlanFileError) -> PlanSpecJSON {
        let bytes: [UInt8]
        do { bytes = try FileSystem.readFile(path, limit: 4 << 20) } catch {
            throw PlanFileError(file: path, diagnostics: [.init(line: nil, column: nil, message: error.message)])
        }
        return try parse(String(decoding: bytes, as: UTF8.self), file: path)
    }

    /// Parses a plan file's text.
    /// - Parameters:
    ///   - file: the name diagnostics start with.
    ///   - validate: also apply the registration rules (``Plan/init(validating:)``); off to get the spec
    ///     of a file the server should judge.
    /// - Throws: ``PlanFileError`` with one diagnostic per problem: YAML syntax, unknown keys (with the key
    ///   probably meant), wrong types, malformed tags, then the plan rules.
    public static func parse(_ text: String, file: String, validate: Bool = true) throws(PlanFileError) -> PlanSpecJSON
    {
        let root: YAMLNode?
        do { root = try parseYAML(text) } catch {
            throw PlanFileError(
                file: file,
                diagnostics: [.init(line: error.mark.line, column: error.mark.column, message: error.problem)]
            )
        }
        guard let root, !root.isNull else {
            throw PlanFileError(file: file, diagnostics: [.init(line: nil, column: nil, message: "plan file is empty")])
        }
        var reader = SpecReader()
        let spec = reader.spec(root)
        guard let spec, reader.diagnostics.isEmpty else {
            throw PlanFileError(file: file, diagnostics: reader.diagnostics)
        }
        if validate {
            do { _ = try Plan(validating: spec) } catch {
                throw PlanFileError(file: file, diagnostics: error.problems.map { reader.diagnostic(for: $0) })
            }
        }
        return spec
    }

    /// The key probably meant by an unknown `key` among `known`: a documented typo, or the one within two
    /// edits.
    static func suggestion(for key: String, among known: [String]) -> String? {
        if let meant = knownTypos[key], known.contains(meant) { return meant }
        let scored = known.map { ($0, editDistance(key.lowercased(), $0)) }.filter { $0.1 <= 2 }
        return scored.min { $0.1 < $1.1 }?.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let left = Array(a.utf8)
        let right = Array(b.utf8)
        var previous = Array(0...right.count)
        for (i, x) in left.enumerated() {
            var current = [i + 1]
            for (j, y) in right.enumerated() {
                current.append(Swift.min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[right.count]
    }
}

/// Everything wrong with a plan file, one compiler-style line per problem:
/// `plan.yaml:7:5: error: inputs[0].path: "in/x" is not absolute`.
public struct PlanFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Diagnostic: Sendable, Equatable, CustomStringConvertible {
        /// 1-based position of the offending node; nil when the problem has no place (a missing key).
        public let line: Int?
        public let column: Int?
        public let message: String

        public init(line: Int?, column: Int?, message: String) {
            self.line = line
            self.column = column
            self.message = message
        }

        /// `7:5: error: message`, or `error: message` without a position.
        public var description: String {
            guard let line, let column else { return "error: \(message)" }
            return "\(line):\(column): error: \(message)"
        }
    }

    public let file: String
    public let diagnostics: [Diagnostic]

    public init(file: String, diagnostics: [Diagnostic]) {
        self.file = file
        self.diagnostics = diagnostics
    }

    public var description: String {
        diagnostics.map { diagnostic in
            diagnostic.line == nil ? "\(file): \(diagnostic)" : "\(file):\(diagnostic)"
        }.joined(separator: "\n")
    }
}

/// Turns the YAML tree into a ``PlanSpecJSON``, remembering where each spec path came from.
private struct SpecReader {
    var diagnostics: [PlanFileError.Diagnostic] = []
    /// Spec path (`inputs[0].path`, `resources.cpu`) → position of its value.
    var marks: [String: YAMLMark] = [:]
    /// Spec path of a tag set + "\u{0}" + the tag's text → position of that tag.
    var tagMarks: [String: YAMLMark] = [:]

    mutating func fail(_ mark: YAMLMark?, _ message: String) {
        diagnostics.append(.init(line: mark?.line, column: mark?.column, message: message))
    }

    /// The diagnostic for a validation problem, at the tag, the value, or the nearest enclosing node.
    func diagnostic(for problem: PlanValidationError.Problem) -> PlanFileError.Diagnostic {
        var mark = problem.item.flatMap { tagMarks[problem.path + "\u{0}" + $0] }
        var path = Substring(problem.path)
        while mark == nil, !path.isEmpty {
            mark = marks[String(path)]
            guard let cut = path.lastIndex(where: { $0 == "." || $0 == "[" }) else { break }
            path = path[..<cut]
        }
        return .init(line: mark?.line, column: mark?.column, message: problem.description)
    }

    mutating func spec(_ root: YAMLNode) -> PlanSpecJSON? {
        guard let entries = root.entries else {
            fail(
                root.mark,
                "a plan file must be a mapping of keys (image, inputs, outputs, …), not \(root.kindDescription)"
            )
            return nil
        }
        var spec = PlanSpecJSON(image: "", inputs: [])
        for entry in entries {
            let node = entry.value
            marks[entry.key] = node.mark
            switch entry.key {
            case "image": spec.image = string(node, at: "image") ?? ""
            case "entrypoint": spec.entrypoint = strings(node, at: "entrypoint")
            case "args": spec.args = strings(node, at: "args")
            case "annotations": spec.annotations = strings(node, at: "annotations")
            case "inputs": spec.inputs = mountpoints(node, at: "inputs")
            case "outputs": spec.outputs = mountpoints(node, at: "outputs")
            case "log": spec.log = logPoint(node)
            case "active": spec.active = bool(node, at: "active")
            case "resources": spec.resources = resources(node)
            case "on_node": spec.onNode = onNode(node)
            case "service_account": spec.serviceAccount = string(node, at: "service_account")
            default: unknownKey(entry, among: PlanFile.topLevelKeys, in: nil)
            }
        }
        return spec
    }

    mutating func unknownKey(_ entry: YAMLEntry, among known: [String], in parent: String?) {
        let name = parent.map { "\($0).\(entry.key)" } ?? entry.key
        var message = "unknown key \"\(name)\""
        if let meant = PlanFile.suggestion(for: entry.key, among: known) {
            message += " (did you mean \"\(meant)\"?)"
        } else {
            message += " (known keys: \(known.joined(separator: ", ")))"
        }
        fail(entry.keyMark, message)
    }

    /// A scalar's text; nil (silently) for null, nil with a diagnostic for a collection.
    mutating func string(_ node: YAMLNode, at path: String) -> String? {
        if node.isNull { return nil }
        guard let text = node.scalar else {
            fail(node.mark, "\(path): expected a string, not \(node.kindDescription)")
            return nil
        }
        return text
    }

    mutating func strings(_ node: YAMLNode, at path: String) -> [String]? {
        if node.isNull { return nil }
        guard let items = node.items else {
            fail(node.mark, "\(path): expected a sequence of strings, not \(node.kindDescription)")
            return nil
        }
        var texts: [String] = []
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            marks[itemPath] = item.mark
            guard let text = item.scalar, !item.isNull else {
                fail(item.mark, "\(itemPath): expected a string, not \(item.isNull ? "null" : item.kindDescription)")
                continue
            }
            texts.append(text)
        }
        return texts
    }

    mutating func bool(_ node: YAMLNode, at path: String) -> Bool? {
        if node.isNull { return nil }
        if case .scalar(let text, true, _) = node {
            switch text {
            case "true", "True", "TRUE": return true
            case "false", "False", "FALSE": return false
            default: break
            }
        }
        fail(node.mark, "\(path): expected true or false")
        return nil
    }

    mutating func tags(_ node: YAMLNode, at path: String) -> TagSet {
        if node.isNull { return [] }
        guard let items = node.items else {
            fail(node.mark, "\(path): expected a sequence of \"key:value\" tags, not \(node.kindDescription)")
            return []
        }
        var tags: [Tag] = []
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            var tag: Tag?
            if let text = item.scalar, !item.isNull {
                do { tag = try Tag(parsing: text) } catch { fail(item.mark, "\(itemPath): \(error.description)") }
            } else if let entries = item.entries {
                for entry in entries where entry.key != "key" && entry.key != "value" {
                    unknownKey(entry, among: ["key", "value"], in: itemPath)
                }
                if let key = item["key"]?.scalar, let value = item["value"]?.scalar {
                    do { tag = try Tag(parsing: "\(key):\(value)") } catch {
                        fail(item.mark, "\(itemPath): \(error.description)")
                    }
                } else {
                    fail(item.mark, "\(itemPath): a tag mapping needs \"key\" and \"value\"")
                }
            } else {
                fail(
                    item.mark,
                    "\(itemPath): expected a \"key:value\" tag, not \(item.isNull ? "null" : item.kindDescription)"
                )
            }
            guard let tag else { continue }
            tags.append(tag)
            tagMarks[path + "\u{0}" + tag.description] = tagMarks[path + "\u{0}" + tag.description] ?? item.mark
        }
        return TagSet(tags)
    }

    mutating func mountpoints(_ node: YAMLNode, at path: String) -> [MountpointJSON] {
        if node.isNull { return [] }
        guard let items = node.items else {
            fail(node.mark, "\(path): expected a sequence of {path, tags}, not \(node.kindDescription)")
            return []
        }
        var result: [MountpointJSON] = []
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            marks[itemPath] = item.mark
            guard let entries = item.entries else {
                fail(item.mark, "\(itemPath): expected a mapping {path, tags}, not \(item.kindDescription)")
                continue
            }
            var mountpoint = MountpointJSON(path: "", tags: [])
            for entry in entries {
                marks["\(itemPath).\(entry.key)"] = entry.value.mark
                switch entry.key {
                case "path": mountpoint.path = string(entry.value, at: "\(itemPath).path") ?? ""
                case "tags": mountpoint.tags = tags(entry.value, at: "\(itemPath).tags")
                default: unknownKey(entry, among: ["path", "tags"], in: itemPath)
                }
            }
            result.append(mountpoint)
        }
        return result
    }

    mutating func logPoint(_ node: YAMLNode) -> LogPointJSON? {
        if node.isNull { return nil }
        guard let entries = node.entries else {
            fail(node.mark, "log: expected a mapping {tags: [...]}, not \(node.kindDescription)")
            return nil
        }
        var log = LogPointJSON(tags: [])
        for entry in entries {
            marks["log.\(entry.key)"] = entry.value.mark
            if entry.key == "tags" {
                log.tags = tags(entry.value, at: "log.tags")
            } else {
                unknownKey(entry, among: ["tags"], in: "log")
            }
        }
        return log
    }

    mutating func resources(_ node: YAMLNode) -> [String: String]? {
        if node.isNull { return nil }
        guard let entries = node.entries else {
            fail(
                node.mark,
                "resources: expected a mapping such as {cpu: \"1\", memory: 1Gi}, not \(node.kindDescription)"
            )
            return nil
        }
        var values: [String: String] = [:]
        for entry in entries {
            let path = "resources.\(entry.key)"
            marks[path] = entry.value.mark
            guard let text = entry.value.scalar, !entry.value.isNull else {
                fail(entry.value.mark, "\(path): expected a quantity such as 1, 500m or 1Gi")
                continue
            }
            values[entry.key] = text
        }
        return values
    }

    mutating func onNode(_ node: YAMLNode) -> OnNodeJSON? {
        if node.isNull { return nil }
        guard let entries = node.entries else {
            fail(node.mark, "on_node: expected a mapping {may, prefer, must}, not \(node.kindDescription)")
            return nil
        }
        var onNode = OnNodeJSON()
        for entry in entries {
            let path = "on_node.\(entry.key)"
            marks[path] = entry.value.mark
            switch entry.key {
            case "may": onNode.may = strings(entry.value, at: path)
            case "prefer": onNode.prefer = strings(entry.value, at: path)
            case "must": onNode.must = strings(entry.value, at: path)
            default: unknownKey(entry, among: ["may", "prefer", "must"], in: "on_node")
            }
        }
        return onNode
    }
}
