/// Encodes `Encodable` values keeping fields in declaration order, so responses read like Knitfab's
/// (`knitId`, `tags`, `upstream`, …). Foundation's JSONEncoder on Linux reorders keys and escapes `/`.
public enum KnitJSON {
    /// Compact UTF-8 JSON of `value`.
    ///
    /// Written straight into a byte buffer by a streaming encoder. A value whose `encode(to:)` uses the
    /// containers in a way a stream cannot follow (super encoders, writing to a container after a sibling
    /// was started) is encoded again through the ``JSONValue`` tree, which gives the same text.
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        // One conformance lookup per response; the runtime caches it per type.
        if let direct = value as? any DirectJSON {
            // Ten Data details are ~4.5 KB: room for them up front instead of copying the answer as it grows.
            var out = JSONOutput(capacity: 16384)
            direct.writeJSON(into: &out)
            return out.bytes
        }
        return try encodeThroughCodable(value)
    }

    /// `value` through its Codable conformance only (never the hand-written ``DirectJSON`` writers), which
    /// the tests compare those writers against.
    static func encodeThroughCodable<T: Encodable>(_ value: T) throws -> [UInt8] {
        let stream = JSONStream()
        try stream.writeTopLevel(value)
        if !stream.unsupported { return stream.out.bytes }
        var out = JSONOutput()
        try encodeValue(value).render(into: &out)
        return out.bytes
    }

    /// Pretty JSON with Knitfab CLI's 4-space indent.
    public static func encodePretty<T: Encodable>(_ value: T) throws -> String {
        try encodeValue(value).rendered(indent: 4)
    }

    public static func encodeValue<T: Encodable>(_ value: T) throws -> JSONValue {
        let box = ValueBox()
        try value.encode(to: TreeEncoder(box: box, codingPath: []))
        return box.value ?? .null
    }
}

// Encoders hand out containers before their contents exist, so the tree is built of reference nodes and
// materialized into a JSONValue only when encoding has finished.
private final class ValueBox {
    enum Storage {
        case unset
        case value(JSONValue)
        case object(ObjectBox)
        case array(ArrayBox)
    }
    var storage = Storage.unset

    var value: JSONValue? {
        switch storage {
        case .unset: return nil
        case .value(let value): return value
        case .object(let object): return object.value
        case .array(let array): return array.value
        }
    }

    func object() -> ObjectBox {
        if case .object(let existing) = storage { return existing }
        let object = ObjectBox()
        storage = .object(object)
        return object
    }

    func array() -> ArrayBox {
        if case .array(let existing) = storage { return existing }
        let array = ArrayBox()
        storage = .array(array)
        return array
    }
}

private final class ObjectBox {
    var members: [(String, ValueBox)] = []
    func box(for key: String) -> ValueBox {
        if let existing = members.first(where: { $0.0 == key }) { return existing.1 }
        let box = ValueBox()
        members.append((key, box))
        return box
    }
    var value: JSONValue { .object(members.compactMap { key, box in box.value.map { (key, $0) } }) }
}

private final class ArrayBox {
    var items: [ValueBox] = []
    func append() -> ValueBox {
        let box = ValueBox()
        items.append(box)
        return box
    }
    var value: JSONValue { .array(items.map { $0.value ?? .null }) }
}

private struct TreeEncoder: Encoder {
    let box: ValueBox
    var codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(KeyedContainer<Key>(object: box.object(), codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        UnkeyedContainer(array: box.array(), codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleContainer(box: box, codingPath: codingPath)
    }
}

/// Scalars both encoders write themselves rather than asking the value to encode itself.
func primitive<T: Encodable>(_ value: T) -> JSONValue? {
    switch value {
    case let v as String: return .string(v)
    case let v as Bool: return .bool(v)
    case let v as Int: return .number(String(v))
    case let v as Int64: return .number(String(v))
    case let v as Int32: return .number(String(v))
    case let v as UInt: return .number(String(v))
    case let v as UInt64: return .number(String(v))
    case let v as UInt8: return .number(String(v))
    case let v as UInt32: return .number(String(v))
    case let v as UInt16: return .number(String(v))
    case let v as Int16: return .number(String(v))
    case let v as Int8: return .number(String(v))
    case let v as Float: return v.isFinite ? .number(formatDouble(Double(v))) : .null
    case let v as Double: return v.isFinite ? .number(formatDouble(v)) : .null
    default: return nil
    }
}

private func formatDouble(_ v: Double) -> String {
    if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
    return String(v)
}

private func encodeNested<T: Encodable>(_ value: T, into box: ValueBox, codingPath: [any CodingKey]) throws {
    if let simple = primitive(value) {
        box.storage = .value(simple)
        return
    }
    try value.encode(to: TreeEncoder(box: box, codingPath: codingPath))
    if case .unset = box.storage { box.storage = .value(.object([])) }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let object: ObjectBox
    var codingPath: [any CodingKey]

    mutating func encodeNil(forKey key: Key) throws { object.box(for: key.stringValue).storage = .value(.null) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try encodeNested(value, into: object.box(for: key.stringValue), codingPath: codingPath + [key])
    }
    // Optionals are omitted when nil (as Go's omitempty does) by the protocol's default encodeIfPresent.
    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type,
        forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        TreeEncoder(box: object.box(for: key.stringValue), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        TreeEncoder(box: object.box(for: key.stringValue), codingPath: codingPath + [key]).unkeyedContainer()
    }
    mutating func superEncoder() -> any Encoder { TreeEncoder(box: object.box(for: "super"), codingPath: codingPath) }
    mutating func superEncoder(forKey key: Key) -> any Encoder {
        TreeEncoder(box: object.box(for: key.stringValue), codingPath: codingPath + [key])
    }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let array: ArrayBox
    var codingPath: [any CodingKey]
    var count: Int { array.items.count }

    mutating func encodeNil() throws { array.append().storage = .value(.null) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        try encodeNested(value, into: array.append(), codingPath: codingPath)
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<
        NestedKey
    > {
        TreeEncoder(box: array.append(), codingPath: codingPath).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        TreeEncoder(box: array.append(), codingPath: codingPath).unkeyedContainer()
    }
    mutating func superEncoder() -> any Encoder { TreeEncoder(box: array.append(), codingPath: codingPath) }
}

private struct SingleContainer: SingleValueEncodingContainer {
    let box: ValueBox
    var codingPath: [any CodingKey]
    mutating func encodeNil() throws { box.storage = .value(.null) }
    mutating func encode<T: Encodable>(_ value: T) throws { try encodeNested(value, into: box, codingPath: codingPath) }
}
