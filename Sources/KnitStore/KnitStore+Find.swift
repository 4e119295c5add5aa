public import KnitCore
internal import KnitLMDB
internal import Logging

// `GET /api/data`: tag queries answered from the tag index, decoding only the Data that match.

extension KnitStore {
    /// Data having all `tags`, optionally limited to `since <= t < since + durationMs` where `t` is the
    /// Data's timestamp, or its producing Run's last update when it has none.
    ///
    /// User tags intersect the tag index (smallest list first). System tags: `knit#id` picks one Data,
    /// `knit#timestamp` matches the same instant, `knit#transient:processing|failed` filters by the
    /// producing Run's status. Contradictory or unknown system tags give an empty result, not an error.
    /// `creator`, when given, keeps only the Data of that user (``DataDetailJSON/creator``).
    /// Ordered by timestamp (Data without one last), then knitId.
    public func findData(
        tags: [Tag],
        since: KnitTime?,
        durationMs: Int64?,
        creator: String? = nil
    ) throws(StoreError) -> [DataDetailJSON] {
        guard let query = FindQuery(tags) else { return [] }
        let window = FindQuery.window(since: since, durationMs: durationMs)
        var found: [(timestamp: Int64?, detail: DataDetailJSON)] = try read("find data") { txn in
            var records: [DataRecord] = []
            if let candidates = try candidates(txn, query) {
                records.reserveCapacity(candidates.count)
                for candidate in candidates {
                    if let record = try dataRecord(txn, candidate) { records.append(record) }
                }
            } else {
                try txn.forEach(db.data) { _, value in
                    records.append(try DataRecord(decoding: value))
                    return true
                }
            }
            let cache = PlanCache()
            var out: [(timestamp: Int64?, detail: DataDetailJSON)] = []
            out.reserveCapacity(records.count)
            for record in records {
                if let creator, record.creator != creator { continue }
                let record = try resolved(txn, record)
                let producer = record.producer!
                guard
                    query.admits(
                        timestampMs: record.timestampMs,
                        producerStatus: producer.status,
                        producerUpdatedAtMs: producer.updatedAtMs,
                        window: window
                    )
                else { continue }
                out.append((record.timestampMs, try linkedDetail(txn, record, cache)))
            }
            return out
        }
        found.sort { a, b in
            switch (a.timestamp, b.timestamp) {
            case let (x?, y?) where x != y: return x < y
            case (.some, nil): return true
            case (nil, .some): return false
            default: return a.detail.knitId < b.detail.knitId
            }
        }
        return found.map(\.detail)
    }

    /// knitIds that may match: from `knit#id` or the tag index; nil means "every Data" (the query has no
    /// selective term). Not a list of optionals: returning `[[UInt8]]` as `[[UInt8]?]` converted the list
    /// element by element through the runtime's dynamic cast.
    func candidates(_ txn: borrowing LMDBTransaction, _ query: FindQuery) throws -> [[UInt8]]? {
        let keys = query.userTags.map(Self.indexKey)
        var ids: [[UInt8]]
        var remaining = keys
        if let id = query.knitId {
            ids = [Array(id.utf8)]
        } else if keys.isEmpty {
            return nil
        } else {
            guard let shortest = try shortestTagList(txn, keys) else { return [] }
            ids = shortest.ids
            remaining = shortest.others
        }
        for key in remaining {
            ids = try ids.filter { try txn.contains(db.tagIndex, key: key, value: $0) }
            if ids.isEmpty { break }
        }
        return ids
    }
}

extension KnitStore {
    /// The shortest tag-index list among `keys`, and the keys still to probe: a conjunction of tags is
    /// answered by reading one duplicate list and checking the others per candidate. Nil when a key has
    /// no Data at all. `keys` must not be empty.
    func shortestTagList(
        _ txn: borrowing LMDBTransaction,
        _ keys: [[UInt8]]
    ) throws -> (ids: [[UInt8]], others: [[UInt8]])? {
        precondition(!keys.isEmpty, "a tag conjunction needs at least one tag")
        var smallest = 0
        var smallestCount = Int.max
        for (index, key) in keys.enumerated() {
            let count = try txn.duplicateCount(db.tagIndex, key: key)
            if count == 0 { return nil }
            if count < smallestCount {
                smallest = index
                smallestCount = count
            }
        }
        var others = keys
        others.remove(at: smallest)
        return (try txn.duplicates(db.tagIndex, key: keys[smallest]), others)
    }
}

/// A tag query split into user tags and the (at most one) value of each system tag.
/// Nil when it can match nothing: two values for one system key, an unknown `knit#` key, a bad timestamp.
struct FindQuery {
    enum Transient { case processing, failed }
    var userTags: [Tag] = []
    var knitId: String?
    var timestamp: Int64?
    var transient: Transient?

    init?(_ tags: [Tag]) {
        for tag in Set(tags) {
            guard tag.isSystem else {
                userTags.append(tag)
                continue
            }
            switch tag.key {
            case SystemTag.id:
                guard knitId == nil || knitId == tag.value else { return nil }
                knitId = tag.value
            case SystemTag.timestamp:
                guard let instant = try? KnitTime(rfc3339: tag.value).milliseconds else { return nil }
                guard timestamp == nil || timestamp == instant else { return nil }
                timestamp = instant
            case SystemTag.transient:
                let value: Transient
                switch tag.value {
                case SystemTag.processing: value = .processing
                case SystemTag.failed: value = .failed
                default: return nil
                }
                guard transient == nil || transient == value else { return nil }
                transient = value
            default:
                return nil
            }
        }
    }
}

extension FindQuery {
    /// Whether a Data passes the query's `knit#timestamp` and `knit#transient` and the time `window` (its
    /// timestamp, or its producing Run's last update when it has none).
    func admits(
        timestampMs: Int64?,
        producerStatus status: RunStatus,
        producerUpdatedAtMs: Int64,
        window: Range<Int64>?
    ) -> Bool {
        if let instant = timestamp, timestampMs != instant { return false }
        switch transient {
        case .processing?: guard status.isProcessing else { return false }
        case .failed?: guard status == .failed || status == .invalidated else { return false }
        case nil: break
        }
        if let window, !window.contains(timestampMs ?? producerUpdatedAtMs) { return false }
        return true
    }

    /// `since <= t < since + durationMs` as a range of milliseconds; an overflowing end means no end.
    static func window(since: KnitTime?, durationMs: Int64?) -> Range<Int64>? {
        since.map { start in
            let end = durationMs.map { start.milliseconds.addingReportingOverflow($0).partialValue } ?? Int64.max
            return start.milliseconds..<max(end, start.milliseconds)
        }
    }
}
