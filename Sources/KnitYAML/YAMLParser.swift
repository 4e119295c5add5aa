internal import CKnitYAML

/// Parses one YAML document into a tree with positions on every node.
///
/// Aliases are resolved (the tree holds a copy of the anchored node); their expansions count against
/// `limits.maximumNodes` and `limits.maximumDepth`. An empty stream returns nil; a second document is an
/// error, since every file Knit reads holds exactly one.
/// - Throws: ``YAMLError`` with the 1-based position of the problem.
public func parseYAML(_ text: String, limits: YAMLLimits = .default) throws(YAMLError) -> YAMLNode? {
    var utf8 = Array(text.utf8)
    guard utf8.count <= limits.maximumBytes else {
        throw YAMLError(
            .tooLarge,
            at: YAMLMark(line: 1, column: 1),
            "document is \(utf8.count) bytes; the limit is \(limits.maximumBytes)"
        )
    }
    return try utf8.withUnsafeMutableBufferPointer { (bytes) throws(YAMLError) -> YAMLNode? in
        var reader = EventReader(bytes)
        var builder = TreeBuilder(limits: limits)
        return try builder.document(&reader)
    }
}

/// One libyaml event, copied out of C memory so the C event can be freed at once.
private enum Event {
    case streamStart, streamEnd, documentStart, documentEnd, sequenceEnd, mappingEnd
    case alias(String, YAMLMark)
    case scalar(String, plain: Bool, anchor: String?, YAMLMark)
    case sequenceStart(anchor: String?, YAMLMark)
    case mappingStart(anchor: String?, YAMLMark)
}

/// Owns a `yaml_parser_t` and a `yaml_event_t` at stable addresses (libyaml keeps pointers into both).
/// The input bytes are borrowed from the caller's `withUnsafeMutableBufferPointer`, which outlives the reader.
private struct EventReader: ~Copyable {
    let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
    let event = UnsafeMutablePointer<yaml_event_t>.allocate(capacity: 1)

    init(_ input: UnsafeMutableBufferPointer<UInt8>) {
        guard yaml_parser_initialize(parser) == 1 else { fatalError("yaml_parser_initialize: out of memory") }
        yaml_parser_set_input_string(parser, input.baseAddress, input.count)
        yaml_parser_set_encoding(parser, YAML_UTF8_ENCODING)
    }

    deinit {
        yaml_parser_delete(parser)
        parser.deallocate()
        event.deallocate()
    }

    mutating func next() throws(YAMLError) -> Event {
        guard yaml_parser_parse(parser, event) == 1 else { throw syntaxError() }
        defer { yaml_event_delete(event) }
        let data = event.pointee.data
        let mark = YAMLMark(
            line: Int(event.pointee.start_mark.line) + 1,
            column: Int(event.pointee.start_mark.column) + 1
        )
        switch event.pointee.type {
        case YAML_STREAM_START_EVENT: return .streamStart
        case YAML_STREAM_END_EVENT: return .streamEnd
        case YAML_DOCUMENT_START_EVENT: return .documentStart
        case YAML_DOCUMENT_END_EVENT: return .documentEnd
        case YAML_SEQUENCE_END_EVENT: return .sequenceEnd
        case YAML_MAPPING_END_EVENT: return .mappingEnd
        case YAML_ALIAS_EVENT: return .alias(Self.string(data.alias.anchor) ?? "", mark)
        case YAML_SCALAR_EVENT:
            let scalar = data.scalar
            let text = String(decoding: UnsafeBufferPointer(start: scalar.value, count: scalar.length), as: UTF8.self)
            let plain = scalar.style == YAML_PLAIN_SCALAR_STYLE && scalar.tag == nil
            return .scalar(text, plain: plain, anchor: Self.string(scalar.anchor), mark)
        case YAML_SEQUENCE_START_EVENT: return .sequenceStart(anchor: Self.string(data.sequence_start.anchor), mark)
        case YAML_MAPPING_START_EVENT: return .mappingStart(anchor: Self.string(data.mapping_start.anchor), mark)
        default: fatalError("libyaml produced an event of unknown type \(event.pointee.type)")
        }
    }

    private static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: $0) }
    }

    private func syntaxError() -> YAMLError {
        let p = parser.pointee
        let mark = YAMLMark(line: Int(p.problem_mark.line) + 1, column: Int(p.problem_mark.column) + 1)
        var problem = p.problem.map { String(cString: $0) } ?? "malformed YAML"
        if let context = p.context.map({ String(cString: $0) }) {
            problem += " (\(context) at \(p.context_mark.line + 1):\(p.context_mark.column + 1))"
        }
        return YAMLError(.syntax, at: mark, problem)
    }
}

private struct TreeBuilder {
    let limits: YAMLLimits
    var nodeCount = 0
    /// Anchored nodes with their size and height, so an alias is charged for what it expands to.
    var anchors: [String: (node: YAMLNode, size: Int, height: Int)] = [:]

    init(limits: YAMLLimits) { self.limits = limits }

    mutating func document(_ reader: inout EventReader) throws(YAMLError) -> YAMLNode? {
        guard case .streamStart = try reader.next() else { fatalError("libyaml did not start with STREAM-START") }
        guard case .documentStart = try reader.next() else { return nil }  // empty stream
        let root = try node(try reader.next(), &reader, depth: 1).node
        guard case .documentEnd = try reader.next() else { fatalError("libyaml did not end the document") }
        switch try reader.next() {
        case .streamEnd: return root
        case .documentStart:
            // Anchored at the root's start: libyaml does not expose the second document's mark here.
            throw YAMLError(.multipleDocuments, at: root.mark, "expected a single YAML document, found several")
        default: fatalError("libyaml produced an event after the document end")
        }
    }

    /// Builds the node that starts with `event`. Returns its size (nodes) and height for alias accounting.
    private mutating func node(_ event: Event, _ reader: inout EventReader, depth: Int)
        throws(YAMLError) -> (node: YAMLNode, size: Int, height: Int)
    {
        switch event {
        case .scalar(let text, let plain, let anchor, let mark):
            try charge(1, at: mark)
            return remember(anchor, (.scalar(text, plain: plain, at: mark), 1, 1))

        case .alias(let name, let mark):
            guard let target = anchors[name] else {
                throw YAMLError(.unknownAlias, at: mark, "unknown alias '*\(name)'")
            }
            guard depth + target.height - 1 <= limits.maximumDepth else { throw tooDeep(mark) }
            try charge(target.size, at: mark)
            return target

        case .sequenceStart(let anchor, let mark):
            guard depth <= limits.maximumDepth else { throw tooDeep(mark) }
            try charge(1, at: mark)
            var items: [YAMLNode] = []
            var size = 1
            var height = 1
            while true {
                let next = try reader.next()
                if case .sequenceEnd = next { break }
                let item = try node(next, &reader, depth: depth + 1)
                items.append(item.node)
                size += item.size
                height = max(height, item.height + 1)
            }
            return remember(anchor, (.sequence(items, at: mark), size, height))

        case .mappingStart(let anchor, let mark):
            guard depth <= limits.maximumDepth else { throw tooDeep(mark) }
            try charge(1, at: mark)
            var entries: [YAMLEntry] = []
            var size = 1
            var height = 1
            while true {
                let next = try reader.next()
                if case .mappingEnd = next { break }
                let key = try node(next, &reader, depth: depth + 1)
                guard case .scalar(let keyText, _, let keyMark) = key.node else {
                    throw YAMLError(
                        .nonScalarKey,
                        at: key.node.mark,
                        "mapping keys must be scalars, not \(key.node.kindDescription)"
                    )
                }
                guard !entries.contains(where: { $0.key == keyText }) else {
                    throw YAMLError(.duplicateKey, at: keyMark, "duplicate key '\(keyText)'")
                }
                let value = try node(try reader.next(), &reader, depth: depth + 1)
                entries.append(YAMLEntry(key: keyText, keyMark: keyMark, value: value.node))
                size += key.size + value.size
                height = max(height, value.height + 1)
            }
            return remember(anchor, (.mapping(entries, at: mark), size, height))

        default:
            fatalError("libyaml produced a structural event where a node was expected")
        }
    }

    private mutating func remember(_ anchor: String?, _ built: (node: YAMLNode, size: Int, height: Int))
        -> (node: YAMLNode, size: Int, height: Int)
    {
        if let anchor { anchors[anchor] = built }
        return built
    }

    private mutating func charge(_ nodes: Int, at mark: YAMLMark) throws(YAMLError) {
        nodeCount += nodes
        guard nodeCount <= limits.maximumNodes else {
            throw YAMLError(.tooManyNodes, at: mark, "document expands to more than \(limits.maximumNodes) nodes")
        }
    }

    private func tooDeep(_ mark: YAMLMark) -> YAMLError {
        YAMLError(.tooDeep, at: mark, "nesting is deeper than \(limits.maximumDepth) levels")
    }
}
