public import KnitCore
internal import KnitLMDB

// `GET /api/data` written straight from the Data records' bytes in the map. Decoding each record into
// Strings and Tags, building its `DataDetailJSON` and encoding that again cost about a fifth of knitd's CPU
// per tag query; here each field goes from the record to the answer once. `findData` stays the judge:
// `FindAnswerTests` compares both answers byte for byte over stores holding every kind of Data.

extension KnitStore {
    /// The answer to a tag query as the API sends it: the very bytes of ``findData(tags:since:durationMs:creator:)``'s
    /// result encoded as JSON (same Data, order and fields), without decoding the records.
    public func findDataJSON(
        tags: [Tag],
        since: KnitTime?,
        durationMs: Int64?,
        creator: String? = nil
    ) throws(StoreError) -> [UInt8] {
        guard let query = FindQuery(tags) else { return Array("[]".utf8) }
        var answer = FindAnswer(
            store: self,
            query: query,
            window: FindQuery.window(since: since, durationMs: durationMs),
            creator: creator.map { Array($0.utf8) }
        )
        return try read("find data") { txn in
            if let candidates = try candidates(txn, query) {
                for candidate in candidates {
                    try txn.withValue(db.data, key: candidate) { bytes in
                        if let bytes { try answer.add(txn, bytes) }
                    }
                }
            } else {
                try txn.forEach(db.data) { _, value in
                    try answer.add(txn, value)
                    return true
                }
            }
            return answer.finish()
        }
    }
}

/// The details of one query's Data, each written into one buffer as it is read, then put in the answer's
/// order (timestamp, Data without one last, then knitId).
private struct FindAnswer {
    let store: KnitStore
    let query: FindQuery
    let window: Range<Int64>?
    let creator: [UInt8]?
    let cache = PlanCache()
    var details = JSONOutput(capacity: 8192)
    /// The raw knitIds, for ordering (the answer holds them escaped).
    var ids: [UInt8] = []
    var entries: [(timestampMs: Int64?, id: Range<Int>, detail: Range<Int>)] = []
    /// Each plan's summary as JSON, written once per query: the Data of one answer mostly share a plan.
    var planSummaries: [(planId: [UInt8], json: [UInt8])] = []

    mutating func add(_ txn: borrowing LMDBTransaction, _ bytes: UnsafeRawBufferPointer) throws {
        guard let record = try DataRecordBytes(bytes) else {
            // Format 1 has no copy of its producer: resolve it against the Run and write the detail.
            let record = try store.resolved(txn, try DataRecord(decoding: bytes))
            let producer = record.producer!
            guard
                admits(
                    timestampMs: record.timestampMs,
                    updatedAtMs: producer.updatedAtMs,
                    status: producer.status,
                    creator: record.creator.utf8
                )
            else { return }
            let start = details.bytes.count
            try store.linkedDetail(txn, record, cache).writeJSON(into: &details)
            append(record.timestampMs, knitId: record.knitId.utf8, detail: start)
            return
        }
        guard
            admits(
                timestampMs: record.timestampMs,
                updatedAtMs: record.updatedAtMs,
                status: record.status,
                creator: record.creator
            )
        else { return }
        let start = details.bytes.count
        try write(txn, record, bytes)
        append(record.timestampMs, knitId: record.knitId, detail: start)
    }

    private func admits(
        timestampMs: Int64?,
        updatedAtMs: Int64,
        status: RunStatus,
        creator recordCreator: some Sequence<UInt8>
    ) -> Bool {
        if let creator, !recordCreator.elementsEqual(creator) { return false }
        return query.admits(
            timestampMs: timestampMs,
            producerStatus: status,
            producerUpdatedAtMs: updatedAtMs,
            window: window
        )
    }

    private mutating func append(_ timestampMs: Int64?, knitId: some Sequence<UInt8>, detail start: Int) {
        let idStart = ids.count
        ids.append(contentsOf: knitId)
        entries.append((timestampMs, idStart..<ids.count, start..<details.bytes.count))
    }

    /// ``KnitStore/linkedDetail(_:_:_:)`` encoded, from the record's bytes.
    private mutating func write(
        _ txn: borrowing LMDBTransaction,
        _ record: DataRecordBytes,
        _ bytes: UnsafeRawBufferPointer
    ) throws {
        let updatedAt = KnitTime(milliseconds: record.updatedAtMs).description
        let timestamp = record.timestampMs.map {
            $0 == record.updatedAtMs ? updatedAt : KnitTime(milliseconds: $0).description
        }
        details.append("{\"knitId\":\"")
        details.escape(utf8(record.knitId))
        details.append("\",\"tags\":[")
        try writeTags(record, timestamp: timestamp)
        details.append("],\"upstream\":{")
        if record.isLog {
            details.append("\"log\":{\"tags\":[")
            try writeTagList(record.mountpointTags)
            details.append("]}")
        } else {
            details.append("\"mountpoint\":{\"path\":\"")
            details.escape(utf8(record.outputPath))
            details.append("\",\"tags\":[")
            try writeTagList(record.mountpointTags)
            details.append("]}")
        }
        details.append(",\"run\":{\"runId\":\"")
        details.escape(utf8(record.runId))
        details.append("\",\"status\":")
        details.quote(record.status.rawValue)
        details.append(",\"updatedAt\":")
        details.quote(updatedAt)
        if let code = record.exitCode {
            details.append(",\"exit\":{\"code\":")
            details.int(code)
            details.append(",\"message\":\"")
            details.escape(utf8(record.exitMessage))
            details.append("\"}")
        }
        details.append(",\"plan\":")
        try writePlanSummary(txn, record.planId)
        details.append("}},\"downstreams\":")
        if try store.mayHaveLinks(txn, cache), let links = try store.links(txn, try DataRecord(decoding: bytes), cache)
        {
            links.downstreams.writeJSON(into: &details)
            details.append(",\"nomination\":")
            links.nomination.writeJSON(into: &details)
        } else {
            details.append("[],\"nomination\":[]")
        }
        if !record.creator.isEmpty {
            details.append(",\"creator\":\"")
            details.escape(utf8(record.creator))
            details.append(UInt8(ascii: "\""))
        }
        details.append(UInt8(ascii: "}"))
    }

    /// The user tags with the system tags among them where `TagSet` order puts them: user tags are stored
    /// sorted and never have a `knit#` key, so the system tags go just before the first user tag sorting
    /// after the `knit#` prefix (as ``KnitStore/tagSet(_:timestamp:status:)`` builds them).
    private mutating func writeTags(_ record: DataRecordBytes, timestamp: String?) throws {
        var first = true
        var systemWritten = false
        try DataRecordBytes.forEachTag(in: record.userTags) { key, value in
            if !systemWritten && sortsAfterSystemPrefix(key: key, value: value) {
                writeSystemTags(record, timestamp: timestamp, first: first)
                systemWritten = true
                first = false
            }
            writeTag(key, value, first: first)
            first = false
        }
        if !systemWritten { writeSystemTags(record, timestamp: timestamp, first: first) }
    }

    private mutating func writeSystemTags(_ record: DataRecordBytes, timestamp: String?, first: Bool) {
        writeSystemTag(SystemTag.id, first: first) { $0.escape(utf8(record.knitId)) }
        if let timestamp { writeSystemTag(SystemTag.timestamp) { $0.escape(timestamp) } }
        if record.status.isProcessing {
            writeSystemTag(SystemTag.transient) { $0.escape(SystemTag.processing) }
        } else if record.status == .failed || record.status == .invalidated {
            writeSystemTag(SystemTag.transient) { $0.escape(SystemTag.failed) }
        }
    }

    private mutating func writeSystemTag(_ key: String, first: Bool = false, value: (inout JSONOutput) -> Void) {
        details.append(first ? "\"" : ",\"")
        details.escape(key)
        details.append(UInt8(ascii: ":"))
        value(&details)
        details.append(UInt8(ascii: "\""))
    }

    private mutating func writeTagList(_ list: UnsafeRawBufferPointer) throws {
        var first = true
        try DataRecordBytes.forEachTag(in: list) { key, value in
            writeTag(key, value, first: first)
            first = false
        }
    }

    private mutating func writeTag(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, first: Bool) {
        details.append(first ? "\"" : ",\"")
        details.escape(utf8(key))
        details.append(UInt8(ascii: ":"))
        details.escape(utf8(value))
        details.append(UInt8(ascii: "\""))
    }

    private mutating func writePlanSummary(_ txn: borrowing LMDBTransaction, _ planId: UnsafeRawBufferPointer) throws {
        if let known = planSummaries.first(where: { $0.planId.elementsEqual(planId) }) {
            details.bytes.append(contentsOf: known.json)
            return
        }
        var json = JSONOutput()
        try cache.record(store, txn, String(decoding: planId, as: UTF8.self)).summary.writeJSON(into: &json)
        planSummaries.append((Array(planId), json.bytes))
        details.bytes.append(contentsOf: json.bytes)
    }

    /// The answer: the details in `findData`'s order.
    mutating func finish() -> [UInt8] {
        let ids = self.ids
        entries.sort { a, b in
            switch (a.timestampMs, b.timestampMs) {
            case let (x?, y?) where x != y: return x < y
            case (.some, nil): return true
            case (nil, .some): return false
            default: return knitIdPrecedes(ids[a.id], ids[b.id])
            }
        }
        var answer: [UInt8] = []
        answer.reserveCapacity(details.bytes.count + entries.count + 1)
        answer.append(UInt8(ascii: "["))
        for (index, entry) in entries.enumerated() {
            if index > 0 { answer.append(UInt8(ascii: ",")) }
            answer.append(contentsOf: details.bytes[entry.detail])
        }
        answer.append(UInt8(ascii: "]"))
        return answer
    }
}

/// `String`'s `<` on two knitIds given as UTF-8: byte order when both are ASCII (Knit's own ids always are),
/// which is what `String` gives for ASCII; anything else is compared as Strings.
private func knitIdPrecedes(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Bool {
    if a.allSatisfy({ $0 < 0x80 }) && b.allSatisfy({ $0 < 0x80 }) { return a.lexicographicallyPrecedes(b) }
    return String(decoding: a, as: UTF8.self) < String(decoding: b, as: UTF8.self)
}

/// Whether the tag sorts after `knit#` with an empty value, in `Tag`'s byte order.
private func sortsAfterSystemPrefix(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
    let prefix = SystemTag.prefix.utf8
    if key.elementsEqual(prefix) { return !value.isEmpty }
    return prefix.lexicographicallyPrecedes(key)
}

private func utf8(_ bytes: UnsafeRawBufferPointer) -> UnsafeBufferPointer<UInt8> {
    bytes.assumingMemoryBound(to: UInt8.self)
}
