internal import KnitCore

// Data and Run records are read on every query, so they use a compact binary form instead of JSON:
// decoding JSON (and re-parsing every tag) cost ~10 µs per record, most of a tag query's budget.
// Layout: one version byte, then fields in order; strings and lists are LEB128-length-prefixed,
// integers little-endian Int64, optionals a 0/1 byte then the value. A new field means a new version;
// readers keep accepting the older versions, so the store's schema version does not change.

struct RecordWriter {
    private(set) var bytes: [UInt8] = []

    init(version: UInt8) { bytes.append(version) }

    mutating func count(_ value: Int) {
        var rest = UInt64(value)
        repeat {
            let low = UInt8(rest & 0x7F)
            rest >>= 7
            bytes.append(rest == 0 ? low : low | 0x80)
        } while rest != 0
    }

    mutating func string(_ text: String) {
        count(text.utf8.count)
        bytes.append(contentsOf: text.utf8)
    }

    mutating func int(_ value: Int64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func optionalInt(_ value: Int64?) {
        bytes.append(value == nil ? 0 : 1)
        if let value { int(value) }
    }
}

struct RecordReader {
    private let bytes: UnsafeRawBufferPointer
    private var position = 0
    let what: String

    /// The record's format version, one of those passed to `init`.
    let version: UInt8

    /// Starts reading `bytes`; throws unless the version byte is in `versions`.
    init(_ bytes: UnsafeRawBufferPointer, versions: ClosedRange<UInt8>, what: String) throws(StoreError) {
        self.bytes = bytes
        self.what = what
        guard let first = bytes.first, versions.contains(first) else {
            throw StoreError(
                .corrupted,
                "store: \(what) record has unknown format \(bytes.first.map(String.init) ?? "(empty)")"
            )
        }
        version = first
        position = 1
    }

    /// Reads a part of a record that a reader has already walked (no version byte).
    fileprivate init(checkedList bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        self.what = "data"
        version = 0
    }

    private func truncated() -> StoreError { StoreError(.corrupted, "store: \(what) record is truncated") }

    mutating func byte() throws(StoreError) -> UInt8 {
        guard position < bytes.count else { throw truncated() }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func count() throws(StoreError) -> Int {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let next = try byte()
            guard shift < 63 else { throw truncated() }
            value |= UInt64(next & 0x7F) << shift
            if next & 0x80 == 0 { break }
            shift += 7
        }
        guard value <= UInt64(bytes.count) else { throw truncated() }
        return Int(value)
    }

    mutating func string() throws(StoreError) -> String {
        let length = try count()
        guard position + length <= bytes.count else { throw truncated() }
        defer { position += length }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<position + length]), as: UTF8.self)
    }

    mutating func int() throws(StoreError) -> Int64 {
        guard position + 8 <= bytes.count else { throw truncated() }
        var value: Int64 = 0
        withUnsafeMutableBytes(of: &value) {
            $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[position..<position + 8]))
        }
        position += 8
        return Int64(littleEndian: value)
    }

    mutating func optionalInt() throws(StoreError) -> Int64? {
        try byte() == 0 ? nil : try int()
    }

    /// The bytes of the next string, in place.
    mutating func stringBytes() throws(StoreError) -> UnsafeRawBufferPointer {
        let length = try count()
        guard position + length <= bytes.count else { throw truncated() }
        defer { position += length }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<position + length])
    }

    /// The next tag list as its encoded bytes (count first), checked but not decoded.
    mutating func tagListBytes() throws(StoreError) -> UnsafeRawBufferPointer {
        let start = position
        for _ in 0..<(try count()) {
            _ = try stringBytes()
            _ = try stringBytes()
        }
        return UnsafeRawBufferPointer(rebasing: bytes[start..<position])
    }
}

/// A Data record of format 2 or later read in place: the fields a query answer shows, as byte ranges into
/// the map (valid while the read transaction lasts), so no String or Tag is made for them.
struct DataRecordBytes {
    var knitId: UnsafeRawBufferPointer
    var runId: UnsafeRawBufferPointer
    var outputPath: UnsafeRawBufferPointer
    /// ``RecordWriter/tags(_:)``'s encoding: walk it with ``forEachTag(in:_:)``.
    var userTags: UnsafeRawBufferPointer
    var timestampMs: Int64?
    var creator: UnsafeRawBufferPointer
    var status: RunStatus
    var updatedAtMs: Int64
    var planId: UnsafeRawBufferPointer
    var exitCode: Int64?
    var exitMessage: UnsafeRawBufferPointer
    var isLog = false
    var mountpointTags: UnsafeRawBufferPointer

    /// Nil for a record of format 1 (no producer copy: it needs its Run to be read).
    init?(_ bytes: UnsafeRawBufferPointer) throws(StoreError) {
        var reader = try RecordReader(bytes, versions: 1...DataRecord.formatVersion, what: "data")
        guard reader.version >= 2 else { return nil }
        knitId = try reader.stringBytes()
        runId = try reader.stringBytes()
        outputPath = try reader.stringBytes()
        userTags = try reader.tagListBytes()
        timestampMs = try reader.optionalInt()
        _ = try reader.optionalInt()  // size
        creator = try reader.stringBytes()
        status = try reader.status()
        updatedAtMs = try reader.int()
        planId = try reader.stringBytes()
        exitCode = try reader.optionalInt()
        exitMessage = exitCode == nil ? UnsafeRawBufferPointer(start: nil, count: 0) : try reader.stringBytes()
        mountpointTags = UnsafeRawBufferPointer(start: nil, count: 0)
        if reader.version >= 3 {
            isLog = try reader.byte() != 0
            mountpointTags = try reader.tagListBytes()
        }
    }

    /// Calls `body` with each key and value of a tag list taken by ``RecordReader/tagListBytes()``.
    static func forEachTag(
        in list: UnsafeRawBufferPointer,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(StoreError) -> Void
    ) throws(StoreError) {
        guard !list.isEmpty else { return }
        var reader = RecordReader(checkedList: list)
        for _ in 0..<(try reader.count()) {
            try body(try reader.stringBytes(), try reader.stringBytes())
        }
    }
}

extension DataRecord {
    /// 1: without `producer`; 2: with it (status, updatedAtMs, planId, optional exit code + message);
    /// 3: then the log flag and the mountpoint's tags. A record with nothing to say in the format 3 fields
    /// (an upload) is still written as 2.
    static let formatVersion: UInt8 = 3

    func encoded() -> [UInt8] {
        guard let producer else { preconditionFailure("data record \(knitId) is written without its producer") }
        let version: UInt8 = isLog || !mountpointTags.isEmpty ? 3 : 2
        var writer = RecordWriter(version: version)
        writer.string(knitId)
        writer.string(runId)
        writer.string(outputPath)
        writer.tags(userTags)
        writer.optionalInt(timestampMs)
        writer.optionalInt(sizeBytes)
        writer.string(creator)
        writer.status(producer.status)
        writer.int(producer.updatedAtMs)
        writer.string(producer.planId)
        writer.exit(producer.exit)
        if version >= 3 {
            writer.count(isLog ? 1 : 0)
            writer.tags(mountpointTags)
        }
        return writer.bytes
    }

    init(decoding bytes: UnsafeRawBufferPointer) throws(StoreError) {
        var reader = try RecordReader(bytes, versions: 1...Self.formatVersion, what: "data")
        knitId = try reader.string()
        runId = try reader.string()
        outputPath = try reader.string()
        userTags = try reader.tags()
        timestampMs = try reader.optionalInt()
        sizeBytes = try reader.optionalInt()
        creator = try reader.string()
        if reader.version >= 2 {
            producer = ProducerSnapshot(
                status: try reader.status(),
                updatedAtMs: try reader.int(),
                planId: try reader.string(),
                exit: try reader.exit()
            )
        } else {
            producer = nil
        }
        if reader.version >= 3 {
            isLog = try reader.byte() != 0
            mountpointTags = try reader.tags()
        }
    }
}

extension RunRecord {
    /// 1: up to `creator`; 2: then the assignments (path, tags, knitId) and the optional log knitId; 3: then
    /// the optional `waitingFor`. An upload Run (no inputs, no log) is still written as 1, and a Run that
    /// waits for nothing as 1 or 2.
    static let formatVersion: UInt8 = 3

    func encoded() -> [UInt8] {
        let version: UInt8 = waitingFor != nil ? 3 : assignments.isEmpty && logKnitId == nil ? 1 : 2
        var writer = RecordWriter(version: version)
        writer.string(runId)
        writer.string(planId)
        writer.status(status)
        writer.int(updatedAtMs)
        writer.exit(exit)
        writer.count(outputs.count)
        for output in outputs { writer.string(output) }
        writer.string(creator)
        if version >= 2 {
            writer.count(assignments.count)
            for assignment in assignments {
                writer.string(assignment.path)
                writer.tags(assignment.tags)
                writer.string(assignment.knitId)
            }
            writer.count(logKnitId == nil ? 0 : 1)
            if let logKnitId { writer.string(logKnitId) }
        }
        if version >= 3 {
            writer.count(waitingFor == nil ? 0 : 1)
            if let waitingFor { writer.string(waitingFor) }
        }
        return writer.bytes
    }

    init(decoding bytes: UnsafeRawBufferPointer) throws(StoreError) {
        var reader = try RecordReader(bytes, versions: 1...Self.formatVersion, what: "run")
        runId = try reader.string()
        planId = try reader.string()
        status = try reader.status()
        updatedAtMs = try reader.int()
        exit = try reader.exit()
        let outputCount = try reader.count()
        var outputs: [String] = []
        for _ in 0..<outputCount { outputs.append(try reader.string()) }
        self.outputs = outputs
        creator = try reader.string()
        if reader.version >= 2 {
            let count = try reader.count()
            var assignments: [RunAssignmentRecord] = []
            for _ in 0..<count {
                assignments.append(
                    RunAssignmentRecord(path: try reader.string(), tags: try reader.tags(), knitId: try reader.string())
                )
            }
            self.assignments = assignments
            logKnitId = try reader.byte() == 0 ? nil : try reader.string()
        }
        if reader.version >= 3 {
            waitingFor = try reader.byte() == 0 ? nil : try reader.string()
        }
    }
}

// Run status is its API spelling; an exit is an optional code followed by its message.
extension RecordWriter {
    mutating func tags(_ tags: [Tag]) {
        count(tags.count)
        for tag in tags {
            string(tag.key)
            string(tag.value)
        }
    }

    mutating func status(_ status: RunStatus) { string(status.rawValue) }

    mutating func exit(_ exit: RunExitJSON?) {
        optionalInt(exit.map { Int64($0.code) })
        if let exit { string(exit.message) }
    }
}

extension RecordReader {
    mutating func tags() throws(StoreError) -> [Tag] {
        let tagCount = try count()
        var tags: [Tag] = []
        tags.reserveCapacity(tagCount)
        for _ in 0..<tagCount { tags.append(Tag(key: try string(), value: try string())) }
        return tags
    }

    mutating func status() throws(StoreError) -> RunStatus {
        let text = try stringBytes()
        // Matched as bytes: every query reads one status per Data, and making a String of it and looking
        // it up by name was ~2 % of a tag query.
        for status in RunStatus.allCases where text.elementsEqual(status.rawValue.utf8) { return status }
        throw StoreError(
            .corrupted,
            "store: \(what) record has unknown run status '\(String(decoding: text, as: UTF8.self))'"
        )
    }

    mutating func exit() throws(StoreError) -> RunExitJSON? {
        guard let code = try optionalInt() else { return nil }
        return RunExitJSON(code: Int(code), message: try string())
    }
}
