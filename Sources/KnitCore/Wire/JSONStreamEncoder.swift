// The streaming side of KnitJSON.encode: an Encoder that writes JSON text as values arrive, instead of
// building a JSONValue tree of class boxes first (half of knitd's CPU went there for `GET /api/data`).
//
// Codable has no "container finished" call, so the stream keeps a stack of open containers and closes
// them when the value that opened them returns, or when a container lower in the stack writes its next
// member (which is how a nested container ends). Anything it cannot follow in order (a super encoder,
// writing to a container that was already closed, two containers for one value) sets `unsupported` and
// KnitJSON.encode starts over through the tree encoder, so the text never differs between the two.
// `codingPath` is always empty here: nothing in Knit reads it while encoding, and keeping it costs an
// array per value; the tree encoder keeps it for the rare fallback.

final class JSONStream {
    struct Frame {
        var id: UInt32
        var isObject: Bool
        var count: Int
        /// Byte offset of the value that opened this container, to recognise a second container request.
        var valueStart: Int
    }

    // Only one encoding touches a stream, on one thread, and no access overlaps another, so the runtime
    // exclusivity checks (a tenth of the encoding time) buy nothing here.
    @exclusivity(unchecked) var out = JSONOutput(capacity: 1024)
    @exclusivity(unchecked) var frames: [Frame] = []
    @exclusivity(unchecked) var nextID: UInt32 = 0
    @exclusivity(unchecked) var unsupported = false

    init() { frames.reserveCapacity(16) }

    func writeTopLevel<T: Encodable>(_ value: T) throws {
        try write(value, emptyText: "null")
    }

    /// Writes one value at the current position. A value that writes nothing is `{}` (as the tree
    /// encoder renders an untouched box), or `null` at the top level.
    func write<T: Encodable>(_ value: T, emptyText: StaticString = "{}") throws {
        if writePrimitive(value) { return }
        let level = frames.count
        let start = out.bytes.count
        try value.encode(to: StreamEncoder(stream: self, level: level, start: start))
        guard !unsupported else { return }
        if frames.count > level {
            close(to: level)
        } else if out.bytes.count == start {
            out.append(emptyText)
        }
    }

    /// Closes every container above `level`.
    func close(to level: Int) {
        while frames.count > level {
            out.append(frames.removeLast().isObject ? UInt8(ascii: "}") : UInt8(ascii: "]"))
        }
    }

    func open(isObject: Bool, valueStart: Int) -> UInt32 {
        nextID &+= 1
        frames.append(Frame(id: nextID, isObject: isObject, count: 0, valueStart: valueStart))
        out.append(isObject ? UInt8(ascii: "{") : UInt8(ascii: "["))
        return nextID
    }

    /// Starts the next member or element of the container `id` at `level`: closes nested containers
    /// still open above it and writes the separator. False (and `unsupported`) when that container is
    /// no longer open.
    func beginItem(level: Int, id: UInt32) -> Bool {
        guard !unsupported, level < frames.count, frames[level].id == id else {
            unsupported = true
            return false
        }
        close(to: level + 1)
        if frames[level].count > 0 { out.append(UInt8(ascii: ",")) }
        frames[level].count += 1
        return true
    }

    func beginMember(level: Int, id: UInt32, key: String) -> Bool {
        guard beginItem(level: level, id: id) else { return false }
        out.quote(key)
        out.append(UInt8(ascii: ":"))
        return true
    }

    /// Scalars and Knit's own string-like types, written without going through `encode(to:)`.
    /// Compares metatypes first: a failed dynamic cast per type per value cost more than the writing.
    @inline(__always)
    private func writePrimitive<T: Encodable>(_ value: T) -> Bool {
        if T.self == String.self {
            out.quote(reinterpret(value, as: String.self))
        } else if T.self == Tag.self {
            writeTag(reinterpret(value, as: Tag.self))
        } else if T.self == TagSet.self {
            out.append(UInt8(ascii: "["))
            for (index, tag) in reinterpret(value, as: TagSet.self).tags.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                writeTag(tag)
            }
            out.append(UInt8(ascii: "]"))
        } else if ObjectIdentifier(T.self) == stringArrayType {
            out.append(UInt8(ascii: "["))
            for (index, text) in reinterpret(value, as: [String].self).enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                out.quote(text)
            }
            out.append(UInt8(ascii: "]"))
        } else if T.self == Int.self {
            out.int(Int64(reinterpret(value, as: Int.self)))
        } else if T.self == Bool.self {
            out.append(reinterpret(value, as: Bool.self) ? "true" : "false")
        } else if isOtherScalar(T.self), let other = primitive(value) {
            other.render(into: &out)
        } else {
            return false
        }
        return true
    }

    /// `Tag` encodes as its `key:value` description.
    private func writeTag(_ tag: Tag) {
        out.append(UInt8(ascii: "\""))
        out.escape(tag.key)
        out.append(UInt8(ascii: ":"))
        out.escape(tag.value)
        out.append(UInt8(ascii: "\""))
    }
}

/// `[String]`'s metadata, looked up once: a generic type's metadata is a cache lookup on every use.
private let stringArrayType = ObjectIdentifier([String].self)

/// Whether `primitive` handles `type`, asked without a dynamic cast.
@inline(__always)
private func isOtherScalar<T>(_ type: T.Type) -> Bool {
    T.self == Int64.self || T.self == Double.self || T.self == Int32.self || T.self == UInt.self
        || T.self == UInt64.self || T.self == UInt8.self || T.self == UInt32.self || T.self == UInt16.self
        || T.self == Int16.self || T.self == Int8.self || T.self == Float.self
}

/// `value` as `U`; only called after checking `T.self == U.self`.
@inline(__always)
private func reinterpret<T, U>(_ value: T, as type: U.Type) -> U {
    withUnsafePointer(to: value) { $0.withMemoryRebound(to: U.self, capacity: 1) { $0.pointee } }
}

private struct StreamEncoder: Encoder {
    let stream: JSONStream
    /// Number of containers open when this value started; its own container, if any, sits at this index.
    let level: Int
    let start: Int
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    /// The id of this value's container of the given kind, opening it if nothing was written yet.
    private func container(isObject: Bool) -> UInt32 {
        guard !stream.unsupported else { return 0 }
        if stream.frames.count == level, stream.out.bytes.count == start {
            return stream.open(isObject: isObject, valueStart: start)
        }
        // Asking twice for the same keyed or unkeyed container is allowed and gives the same one.
        if level < stream.frames.count, stream.frames[level].valueStart == start,
            stream.frames[level].isObject == isObject
        {
            return stream.frames[level].id
        }
        stream.unsupported = true
        return 0
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(StreamKeyed<Key>(stream: stream, level: level, id: container(isObject: true)))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        StreamUnkeyed(stream: stream, level: level, id: container(isObject: false))
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        StreamSingle(stream: stream, level: level, start: start)
    }
}

private struct StreamKeyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let stream: JSONStream
    let level: Int
    let id: UInt32
    var codingPath: [any CodingKey] { [] }

    mutating func encodeNil(forKey key: Key) throws {
        guard stream.beginMember(level: level, id: id, key: key.stringValue) else { return }
        stream.out.append("null")
    }
    mutating func encode(_ value: String, forKey key: Key) throws {
        guard stream.beginMember(level: level, id: id, key: key.stringValue) else { return }
        stream.out.quote(value)
    }
    mutating func encode(_ value: Bool, forKey key: Key) throws {
        guard stream.beginMember(level: level, id: id, key: key.stringValue) else { return }
        stream.out.append(value ? "true" : "false")
    }
    mutating func encode(_ value: Int, forKey key: Key) throws {
        guard stream.beginMember(level: level, id: id, key: key.stringValue) else { return }
        stream.out.int(Int64(value))
    }
    mutating func encode(_ value: Int64, forKey key: Key) throws {
        guard stream.beginMember(level: level, id: id, key: key.stringValue) else { return }
        stream.out.int(value)
    }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        guard stream.beginMember(level: level, id: id, key: key.stringValue) else { return }
        try stream.write(value)
    }
    // Optionals are omitted when nil (as Go's omitempty does) by the protocol's default encodeIfPresent.
    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type,
        forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        var nestedID: UInt32 = 0
        if stream.beginMember(level: level, id: id, key: key.stringValue) {
            nestedID = stream.open(isObject: true, valueStart: stream.out.bytes.count)
        }
        return KeyedEncodingContainer(StreamKeyed<NestedKey>(stream: stream, level: level + 1, id: nestedID))
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        var nestedID: UInt32 = 0
        if stream.beginMember(level: level, id: id, key: key.stringValue) {
            nestedID = stream.open(isObject: false, valueStart: stream.out.bytes.count)
        }
        return StreamUnkeyed(stream: stream, level: level + 1, id: nestedID)
    }
    mutating func superEncoder() -> any Encoder { unsupportedEncoder() }
    mutating func superEncoder(forKey key: Key) -> any Encoder { unsupportedEncoder() }

    private func unsupportedEncoder() -> any Encoder {
        stream.unsupported = true
        return StreamEncoder(stream: stream, level: level, start: -1)
    }
}

private struct StreamUnkeyed: UnkeyedEncodingContainer {
    let stream: JSONStream
    let level: Int
    let id: UInt32
    var codingPath: [any CodingKey] { [] }
    var count: Int { level < stream.frames.count && stream.frames[level].id == id ? stream.frames[level].count : 0 }

    mutating func encodeNil() throws {
        guard stream.beginItem(level: level, id: id) else { return }
        stream.out.append("null")
    }
    mutating func encode(_ value: String) throws {
        guard stream.beginItem(level: level, id: id) else { return }
        stream.out.quote(value)
    }
    mutating func encode<T: Encodable>(_ value: T) throws {
        guard stream.beginItem(level: level, id: id) else { return }
        try stream.write(value)
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<
        NestedKey
    > {
        var nestedID: UInt32 = 0
        if stream.beginItem(level: level, id: id) {
            nestedID = stream.open(isObject: true, valueStart: stream.out.bytes.count)
        }
        return KeyedEncodingContainer(StreamKeyed<NestedKey>(stream: stream, level: level + 1, id: nestedID))
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        var nestedID: UInt32 = 0
        if stream.beginItem(level: level, id: id) {
            nestedID = stream.open(isObject: false, valueStart: stream.out.bytes.count)
        }
        return StreamUnkeyed(stream: stream, level: level + 1, id: nestedID)
    }
    mutating func superEncoder() -> any Encoder {
        stream.unsupported = true
        return StreamEncoder(stream: stream, level: level, start: -1)
    }
}

private struct StreamSingle: SingleValueEncodingContainer {
    let stream: JSONStream
    let level: Int
    let start: Int
    var codingPath: [any CodingKey] { [] }

    /// A single value container holds exactly one value, written where the value started.
    private func begin() -> Bool {
        guard !stream.unsupported, stream.frames.count == level, stream.out.bytes.count == start else {
            stream.unsupported = true
            return false
        }
        return true
    }

    mutating func encodeNil() throws {
        guard begin() else { return }
        stream.out.append("null")
    }
    mutating func encode(_ value: String) throws {
        guard begin() else { return }
        stream.out.quote(value)
    }
    mutating func encode<T: Encodable>(_ value: T) throws {
        guard begin() else { return }
        try stream.write(value)
    }
}
