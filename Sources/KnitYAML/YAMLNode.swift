/// A 1-based position in a YAML document, as editors show it.
public struct YAMLMark: Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "\(line):\(column)" }
}

/// One `key: value` pair of a mapping, with the key's own position for error messages.
public struct YAMLEntry: Sendable, Equatable {
    public let key: String
    public let keyMark: YAMLMark
    public let value: YAMLNode

    public init(key: String, keyMark: YAMLMark, value: YAMLNode) {
        self.key = key
        self.keyMark = keyMark
        self.value = value
    }
}

/// A parsed YAML node. Scalars stay untyped text: callers decide what `1024` or `true` means, and
/// `plain` tells them whether the text was written unquoted (only plain scalars can be null or numbers).
public indirect enum YAMLNode: Sendable, Equatable {
    case scalar(String, plain: Bool, at: YAMLMark)
    case sequence([YAMLNode], at: YAMLMark)
    /// Entries in document order; keys are unique.
    case mapping([YAMLEntry], at: YAMLMark)

    public var mark: YAMLMark {
        switch self {
        case .scalar(_, _, let mark), .sequence(_, let mark), .mapping(_, let mark): return mark
        }
    }

    /// The text of a scalar; nil for collections.
    public var scalar: String? {
        guard case .scalar(let text, _, _) = self else { return nil }
        return text
    }

    /// YAML 1.2 core-schema null: an empty, `~` or `null` plain scalar.
    public var isNull: Bool {
        guard case .scalar(let text, true, _) = self else { return false }
        return text.isEmpty || text == "~" || text == "null" || text == "Null" || text == "NULL"
    }

    public var items: [YAMLNode]? {
        guard case .sequence(let items, _) = self else { return nil }
        return items
    }

    public var entries: [YAMLEntry]? {
        guard case .mapping(let entries, _) = self else { return nil }
        return entries
    }

    /// The value under `key` of a mapping; nil when absent or when this is not a mapping.
    public subscript(key: String) -> YAMLNode? {
        entries?.first { $0.key == key }?.value
    }

    /// "a scalar", "a sequence" or "a mapping", for messages such as "expected a mapping".
    public var kindDescription: String {
        switch self {
        case .scalar: return "a scalar"
        case .sequence: return "a sequence"
        case .mapping: return "a mapping"
        }
    }
}

/// Why a document was rejected. Renders like a compiler diagnostic: `2:5: error: <problem>`.
public struct YAMLError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// libyaml's reader, scanner or parser refused the text.
        case syntax
        case tooLarge, tooDeep, tooManyNodes
        case unknownAlias, nonScalarKey, duplicateKey, multipleDocuments
    }

    public let code: Code
    public let mark: YAMLMark
    public let problem: String

    public init(_ code: Code, at mark: YAMLMark, _ problem: String) {
        self.code = code
        self.mark = mark
        self.problem = problem
    }

    public var description: String { "\(mark.line):\(mark.column): error: \(problem)" }

    /// The diagnostic prefixed with the file it came from: `PATH:2:5: error: …`.
    public func described(file: String) -> String { "\(file):\(description)" }
}

/// Bounds that keep a hostile document from exhausting memory or the stack.
public struct YAMLLimits: Sendable {
    public var maximumBytes: Int
    public var maximumDepth: Int
    /// Nodes in the resulting tree, counting every expansion of an alias (so "billion laughs" stops here).
    public var maximumNodes: Int

    public init(maximumBytes: Int = 4 << 20, maximumDepth: Int = 64, maximumNodes: Int = 100_000) {
        self.maximumBytes = maximumBytes
        self.maximumDepth = maximumDepth
        self.maximumNodes = maximumNodes
    }

    public static let `default` = YAMLLimits()
}
