/// A `key:value` label on Data, on a Plan's inputs and outputs, or a query term.
///
/// Text form splits at the first `:`; key and value are trimmed of white space, so a value may contain
/// colons but a key never does. Comparison is byte order of key, then value, which is the order Knitfab
/// prints tag sets in.
public struct Tag: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public let key: String
    public let value: String

    /// Longest key a tag may have (UTF-8 bytes).
    ///
    /// Knit caps tags tighter than Knitfab (1024 characters, 1 MiB): every stored tag must also be findable,
    /// and a query carries it percent-encoded in the request line (up to three bytes per byte), which nginx
    /// accepts up to 32 KiB. 256 + 4096 bytes encode to at most about 13 KiB, so even two tags fit in one
    /// query.
    public static let maximumKeyLength = 256
    /// Longest value a tag may have (UTF-8 bytes); see ``maximumKeyLength``.
    public static let maximumValueLength = 4096

    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }

    /// Parses `key:value`.
    /// - Throws: ``TagError`` when there is no `:`, the key is empty, a part is too long or holds a
    ///   control character.
    public init(parsing text: String) throws(TagError) {
        guard let colon = text.firstIndex(of: ":") else { throw TagError(text: text, problem: .missingColon) }
        try self.init(validatingKey: text[..<colon], value: text[text.index(after: colon)...], text: text)
    }

    /// A tag from a separate key and value (the JSON object form `{"key","value"}`), with the rules of the
    /// text form: trimmed, key not empty and without `:` (the text form could not say it, so it could never
    /// be found or removed), lengths capped, no control characters.
    public init(validatingKey key: String, value: String) throws(TagError) {
        try self.init(validatingKey: key[...], value: value[...], text: "\(key):\(value)")
    }

    private init(validatingKey rawKey: Substring, value rawValue: Substring, text: String) throws(TagError) {
        let key = Self.trimmed(rawKey)
        let value = Self.trimmed(rawValue)
        guard !key.isEmpty else { throw TagError(text: text, problem: .emptyKey) }
        guard key.utf8.count <= Self.maximumKeyLength else { throw TagError(text: text, problem: .keyTooLong) }
        guard value.utf8.count <= Self.maximumValueLength else { throw TagError(text: text, problem: .valueTooLong) }
        guard !key.contains(":") else { throw TagError(text: text, problem: .colonInKey) }
        // Control characters cannot be typed in a query, break one-line logs and graph labels, and no
        // tool that shows tags renders them; nothing legitimate needs them.
        guard
            !(key.unicodeScalars.contains(where: Self.isControl)
                || value.unicodeScalars.contains(where: Self.isControl))
        else { throw TagError(text: text, problem: .controlCharacter) }
        self.init(key: key, value: value)
    }

    /// General category Cc, which Unicode's stability policy fixes to exactly these 65 scalars; asking the
    /// property tables instead was 3 % of knitd's CPU for a tag query.
    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
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
        let key = try object.decode(String.self, forKey: .key)
        let value = try object.decode(String.self, forKey: .value)
        do { try self.init(validatingKey: key, value: value) } catch {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: error.description)
            )
        }
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
        // A slice of `text` itself: rebuilding a String scalar by scalar was 2 % of a tag query's CPU.
        return String(text[scalars.startIndex..<scalars.endIndex])
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
    public enum Problem: Sendable, Equatable {
        case missingColon, emptyKey, keyTooLong, valueTooLong, systemKey, colonInKey, controlCharacter
    }
    public let text: String
    public let problem: Problem

    public init(text: String, problem: Problem) {
        self.text = text
        self.problem = problem
    }

    public var description: String {
        // Shown escaped: the text may hold the very control characters it is refused for.
        let shown = (text.count > 80 ? String(text.prefix(80)) + "…" : text).unicodeScalars
            .map { $0.properties.generalCategory == .control ? $0.escaped(asASCII: true) : String($0) }.joined()
        switch problem {
        case .missingColon: return "tag '\(shown)' has no ':' (expected KEY:VALUE)"
        case .emptyKey: return "tag '\(shown)' has an empty key"
        case .keyTooLong: return "tag key is longer than \(Tag.maximumKeyLength) bytes"
        case .valueTooLong: return "tag value is longer than \(Tag.maximumValueLength) bytes"
        case .systemKey: return "tag '\(shown)' uses a reserved 'knit#' key"
        case .colonInKey: return "tag key of '\(shown)' contains ':' (a key ends at the first ':')"
        case .controlCharacter: return "tag '\(shown)' contains a control character"
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
        let index = insertionIndex(of: tag)
        guard index == tags.endIndex || tags[index] != tag else { return }
        tags.insert(tag, at: index)
    }

    public mutating func remove(_ tag: Tag) {
        let index = insertionIndex(of: tag)
        if index < tags.endIndex, tags[index] == tag { tags.remove(at: index) }
    }

    public mutating func removeKey(_ key: String) { tags.removeAll { $0.key == key } }

    /// The set after a tag change: keys removed first, then tags removed, then tags added (Knitfab's order).
    /// O((n + m) log(n + m)) for n tags and a change of m, however large either is: one request's change
    /// runs inside the store's single write transaction, which nobody else can use meanwhile.
    public func applying(removeKeys: [String], remove: [Tag], add: [Tag]) -> TagSet {
        let keys = Set(removeKeys)
        let removed = Set(remove)
        let kept = tags.filter { !keys.contains($0.key) && !removed.contains($0) }
        return TagSet(kept + add)
    }

    /// First index whose tag is not below `tag` (binary search on the sorted tags).
    private func insertionIndex(of tag: Tag) -> Int {
        var low = 0
        var high = tags.count
        while low < high {
            let middle = (low + high) / 2
            if tags[middle] < tag { low = middle + 1 } else { high = middle }
        }
        return low
    }

    public init(from decoder: any Decoder) throws { self.init(try [Tag](from: decoder)) }
    public func encode(to encoder: any Encoder) throws { try tags.encode(to: encoder) }
}
