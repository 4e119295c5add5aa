/// A `key:value` label on Data, on a Plan's inputs and outputs, or a query term.
///
/// Text form splits at the first `:`; key and value are trimmed of white space, so a value may contain
/// colons but a key never does. Comparison is byte order of key, then value, which is the order Knitfab
/// prints tag sets in.
public struct Tag: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public let key: String
    public let value: String

    /// Longest key a tag may have (characters), as in Knitfab.
    public static let maximumKeyLength = 1024
    /// Longest value a tag may have (UTF-8 bytes), as in Knitfab.
    public static let maximumValueLength = 1 << 20

    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }

    /// Parses `key:value`.
    /// - Throws: ``TagError`` when there is no `:`, the key is empty, or a part is too long.
    public init(parsing text: String) throws(TagError) {
        guard let colon = text.firstIndex(of: ":") else { throw TagError(text: text, problem: .missingColon) }
        let key = Self.trimmed(text[..<colon])
        let value = Self.trimmed(text[text.index(after: colon)...])
        guard !key.isEmpty else { throw TagError(text: text, problem: .emptyKey) }
        guard key.count <= Self.maximumKeyLength else { throw TagError(text: text, problem: .keyTooLong) }
        guard value.utf8.count <= Self.maximumValueLength else { throw TagError(text: text, problem: .valueTooLong) }
        self.init(key: key, value: value)
    }

    /// Keys starting with `knit#` belong to the system; users may query them but never set them.
    public var isSystem: Bool { key.hasPrefix(SystemTag.prefix) }

    public var description: String { "\(key):\(value)" }

    public static func < (lhs: Tag, rhs: Tag) -> Bool {
        let keyOrder = compareBytes(lhs.key, rhs.key)
        if keyOrder != 0 { return keyOrder < 0 }
        return compareBytes(lhs.value, rhs.value) < 0
    }

    // JSON form is the "key:value" string; objects {"key","value"} are accepted as input too.
    public init(from decoder: any Decoder) throws {
        if let container = try? decoder.singleValueContainer(), let text = try? container.decode(String.self) {
            do { try self.init(parsing: text) } catch {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: decoder.codingPath, debugDescription: error.description)
                )
            }
            return
        }
        let object = try decoder.container(keyedBy: ObjectKeys.self)
        let key = Self.trimmed(Substring(try object.decode(String.self, forKey: .key)))
        guard !key.isEmpty else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "tag key is empty")
            )
        }
        self.init(key: key, value: Self.trimmed(Substring(try object.decode(String.self, forKey: .value))))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    private enum ObjectKeys: String, CodingKey { case key, value }

    static func trimmed(_ text: Substring) -> String {
        var scalars = text.unicodeScalars[...]
        while let first = scalars.first, first.properties.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.properties.isWhitespace { scalars.removeLast() }
        return String(String.UnicodeScalarView(scalars))
    }
}

func compareBytes(_ a: String, _ b: String) -> Int {
    var left = a.utf8.makeIterator()
    var right = b.utf8.makeIterator()
    while true {
        switch (left.next(), right.next()) {
        case (nil, nil): return 0
        case (nil, _): return -1
        case (_, nil): return 1
        case let (x?, y?): if x != y { return x < y ? -1 : 1 }
        }
    }
}

/// Why a tag's text was rejected.
public struct TagError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Problem: Sendable, Equatable { case missingColon, emptyKey, keyTooLong, valueTooLong, systemKey }
    public let text: String
    public let problem: Problem

    public init(text: String, problem: Problem) {
        self.text = text
        self.problem = problem
    }

    public var description: String {
        let shown = text.count > 80 ? String(text.prefix(80)) + "…" : text
        switch problem {
        case .missingColon: return "tag '\(shown)' has no ':' (expected KEY:VALUE)"
        case .emptyKey: return "tag '\(shown)' has an empty key"
        case .keyTooLong: return "tag key is longer than \(Tag.maximumKeyLength) characters"
        case .valueTooLong: return "tag value is longer than \(Tag.maximumValueLength) bytes"
        case .systemKey: return "tag '\(shown)' uses a reserved 'knit#' key"
        }
    }
}

/// The keys and values of tags the system computes.
public enum SystemTag {
    public static let prefix = "knit#"
    public static let id = "knit#id"
    public static let timestamp = "knit#timestamp"
    public static let transient = "knit#transient"
    public static let processing = "processing"
    public static let failed = "failed"
}

/// A normalized tag set: de-duplicated and sorted by key, then value.
public struct TagSet: Hashable, Sendable, Sequence, Codable, ExpressibleByArrayLiteral {
    public private(set) var tags: [Tag]

    public init<S: Sequence>(_ tags: S) where S.Element == Tag {
        self.tags = Array(Set(tags)).sorted()
    }

    public init(arrayLiteral elements: Tag...) { self.init(elements) }

    /// Takes `tags` as they are: the caller guarantees they are sorted and unique (checked in debug builds),
    /// e.g. tags read back from the store, so queries skip hashing and sorting them again.
    package init(normalized tags: [Tag]) {
        assert(zip(tags, tags.dropFirst()).allSatisfy { $0 < $1 }, "TagSet(normalized:) needs sorted, unique tags")
        self.tags = tags
    }

    public init() { tags = [] }

    public func makeIterator() -> IndexingIterator<[Tag]> { tags.makeIterator() }
    public var count: Int { tags.count }
    public var isEmpty: Bool { tags.isEmpty }
    public func contains(_ tag: Tag) -> Bool { tags.contains(tag) }
    public func values(of key: String) -> [String] { tags.filter { $0.key == key }.map(\.value) }

    /// True when every tag of `other` is in this set.
    public func isSuperset(of other: TagSet) -> Bool { other.tags.allSatisfy { tags.contains($0) } }

    public mutating func insert(_ tag: Tag) {
        guard !tags.contains(tag) else { return }
        tags.append(tag)
        tags.sort()
    }

    public mutating func remove(_ tag: Tag) { tags.removeAll { $0 == tag } }
    public mutating func removeKey(_ key: String) { tags.removeAll { $0.key == key } }

    public init(from decoder: any Decoder) throws { self.init(try [Tag](from: decoder)) }
    public func encode(to encoder: any Encoder) throws { try tags.encode(to: encoder) }
}
