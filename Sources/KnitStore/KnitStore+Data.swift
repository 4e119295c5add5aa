public import KnitCore
internal import KnitDigest
internal import KnitLMDB
internal import Logging

// Data records, their tag index and their JSON detail.

extension KnitStore {
    /// The Data `knitId` as the API shows it.
    /// - Throws: `.notFound` when there is no such Data.
    public func dataDetail(knitId: String) throws(StoreError) -> DataDetailJSON {
        try read("data detail") { txn in
            guard let record = try dataRecord(txn, Array(knitId.utf8)) else {
                throw StoreError(.notFound, "data \(knitId) not found")
            }
            return try linkedDetail(txn, record, PlanCache())
        }
    }

    /// Number of Data records.
    public func dataCount() -> Int {
        do { return try read("count data") { txn in try txn.count(db.data) } } catch {
            logger.error("counting data failed", metadata: ["store.error": "\(error)"])
            return 0
        }
    }

    /// Changes the user tags of `knitId`: `removeKey`, then `remove`, then `add`. Removing an absent tag
    /// or adding a present one is ignored.
    /// - Throws: `.invalid` when any tag or key is a `knit#` one (nothing changes), `.notFound`.
    /// The most user tags one Data may carry.
    public static let maximumUserTags = 100_000

    public func updateTags(knitId: String, change: TagChangeJSON) throws(StoreError) -> DataDetailJSON {
        let systemKeys =
            change.removeKey.filter { $0.hasPrefix(SystemTag.prefix) }
            + (change.add + change.remove).filter(\.isSystem).map(\.key)
        if let key = systemKeys.first {
            throw StoreError(.invalid, "system tag key '\(key)' cannot be added or removed")
        }
        let now = clock()
        return try write("update tags") { txn in
            let key = Array(knitId.utf8)
            guard var record = try dataRecord(txn, key) else {
                throw StoreError(.notFound, "data \(knitId) not found")
            }
            let tags = TagSet(record.userTags)
                .applying(removeKeys: change.removeKey, remove: change.remove, add: change.add)
            guard tags.count <= Self.maximumUserTags else {
                throw StoreError(
                    .invalid,
                    "data \(knitId) would carry \(tags.count) tags; at most \(Self.maximumUserTags) are allowed"
                )
            }
            try reindex(txn, knitId: knitId, from: record.userTags, to: tags.tags)
            record.userTags = tags.tags
            try txn.put(db.data, key: key, value: record.encoded())
            let cache = PlanCache()
            let resolvedRecord = try resolved(txn, record)
            // Removed tags never remove Runs; new matches run their new combinations only.
            try projectData(txn, resolvedRecord, now: now, cache: cache)
            return try linkedDetail(txn, resolvedRecord, cache)
        }
    }

    // MARK: Internals

    /// `key\0value`, the tag index key. LMDB keys are at most 511 bytes, so a longer pair is stored under
    /// a SHA-256 of itself, marked by a leading 0x01 byte that no printable tag key starts with.
    static func indexKey(_ tag: Tag) -> [UInt8] {
        var bytes = Array(tag.key.utf8)
        bytes.append(0)
        bytes.append(contentsOf: tag.value.utf8)
        if bytes.count <= 500 { return bytes }
        return [1] + Array(SHA256Digest.hex(of: bytes).utf8)
    }

    /// Brings the tag index from `old` to `new` for one Data.
    func reindex(_ txn: borrowing LMDBTransaction, knitId: String, from old: [Tag], to new: [Tag]) throws {
        let id = Array(knitId.utf8)
        let oldSet = Set(old)
        let newSet = Set(new)
        for tag in oldSet.subtracting(newSet) {
            try txn.delete(db.tagIndex, key: Self.indexKey(tag), value: id)
        }
        for tag in newSet.subtracting(oldSet) {
            try txn.put(db.tagIndex, key: Self.indexKey(tag), value: id)
        }
    }

    func plan(_ txn: borrowing LMDBTransaction, _ planId: String) throws -> PlanRecord {
        if planId == uploadedPlan.planId { return uploadedPlan }
        return try decodedPlan(txn, planId).record
    }

    /// The record and (for an image plan) validated Plan of `planId`, through the process's memo.
    func decodedPlan(_ txn: borrowing LMDBTransaction, _ planId: String) throws -> (record: PlanRecord, plan: Plan?) {
        let found = try txn.withValue(db.plans, key: planId.utf8) { bytes in
            try bytes.map { try planMemo.decoded(planId: planId, bytes: $0) }
        }
        guard let found else { throw StoreError(.corrupted, "store: plan \(planId) is missing") }
        return found
    }

    func run(_ txn: borrowing LMDBTransaction, _ runId: String) throws -> RunRecord {
        let run = try txn.withValue(db.runs, key: runId.utf8) { bytes throws(StoreError) in
            try bytes.map { bytes throws(StoreError) in try RunRecord(decoding: bytes) }
        }
        guard let run else { throw StoreError(.corrupted, "store: run \(runId) is missing") }
        return run
    }

    /// Writes `run` and brings the producer copy in each of its output Data records up to date. Every
    /// change to a Run goes through here, so a Data record never shows a stale status. A change of status
    /// clears what the Run waited for.
    func putRun(_ txn: borrowing LMDBTransaction, _ run: RunRecord) throws {
        var run = run
        let id = Array(run.runId.utf8)
        let old = try txn.withValue(db.runs, key: id) { bytes throws(StoreError) in
            try bytes.map { bytes throws(StoreError) in try RunRecord(decoding: bytes) }
        }
        if let old, old.status != run.status { run.waitingFor = nil }
        try txn.put(db.runs, key: id, value: run.encoded())
        try countRun(txn, run, from: old?.status, to: run.status)
        if let old {
            if old.status != run.status {
                try txn.delete(db.runsByStatus, key: Array(old.status.rawValue.utf8), value: id)
                try txn.put(db.runsByStatus, key: Array(run.status.rawValue.utf8), value: id)
            }
        } else {
            try txn.put(db.runsByPlan, key: Array(run.planId.utf8), value: id)
            try txn.put(db.runsByStatus, key: Array(run.status.rawValue.utf8), value: id)
        }
        let snapshot = run.snapshot
        for knitId in run.outputs {
            let key = Array(knitId.utf8)
            guard var record = try dataRecord(txn, key), record.producer != snapshot else { continue }
            record.producer = snapshot
            try txn.put(db.data, key: key, value: record.encoded())
        }
    }

    /// The Data record under `knitId` (as text or bytes), decoded straight from the map, with its
    /// producer filled in from the Run when the record predates the copy (format 1).
    func dataRecord(_ txn: borrowing LMDBTransaction, _ knitId: some Collection<UInt8>) throws -> DataRecord? {
        let record = try txn.withValue(db.data, key: knitId) { bytes throws(StoreError) in
            try bytes.map { bytes throws(StoreError) in try DataRecord(decoding: bytes) }
        }
        guard let record else { return nil }
        return try resolved(txn, record)
    }

    func resolved(_ txn: borrowing LMDBTransaction, _ record: DataRecord) throws -> DataRecord {
        guard record.producer == nil else { return record }
        var record = record
        record.producer = try run(txn, record.runId).snapshot
        return record
    }

    func detail(_ txn: borrowing LMDBTransaction, _ record: DataRecord) throws -> DataDetailJSON {
        let record = try resolved(txn, record)
        return try Self.detail(record, plan: plan(txn, record.producer!.planId))
    }

    /// ``detail(_:plan:)`` plus the Data's links: the Runs consuming it (tombstones hidden), each with the
    /// input it is mounted on, and the plan inputs it is assignable to now.
    func linkedDetail(_ txn: borrowing LMDBTransaction, _ record: DataRecord, _ cache: PlanCache) throws
        -> DataDetailJSON
    {
        let record = try resolved(txn, record)
        var detail = Self.detail(record, plan: try cache.record(self, txn, record.producer!.planId))
        if let links = try links(txn, record, cache) {
            detail.downstreams = links.downstreams
            detail.nomination = links.nomination
        }
        return detail
    }

    /// Whether any Data of the store can have links (a Run consuming Data, a plan with inputs), read once
    /// per transaction, so a query on a store without them pays nothing per Data.
    func mayHaveLinks(_ txn: borrowing LMDBTransaction, _ cache: PlanCache) throws -> Bool {
        if cache.linkCounts == nil {
            cache.linkCounts = (
                try txn.count(db.consumers), try txn.count(db.inputTagIndex), try txn.count(db.untaggedInputPlans)
            )
        }
        let counts = cache.linkCounts!
        return counts.consumers != 0 || counts.inputIndex != 0 || counts.untagged != 0
    }

    /// A resolved record's links: the Runs consuming it (tombstones hidden), each with the input it is
    /// mounted on, and the plan inputs it is assignable to now. Nil when the store has no links at all.
    func links(_ txn: borrowing LMDBTransaction, _ record: DataRecord, _ cache: PlanCache) throws
        -> (downstreams: [DataDownstreamJSON], nomination: [NominationJSON])?
    {
        guard try mayHaveLinks(txn, cache) else { return nil }
        var downstreams: [DataDownstreamJSON] = []
        for id in try txn.duplicates(db.consumers, key: Array(record.knitId.utf8)) {
            let consumer = try run(txn, String(decoding: id, as: UTF8.self))
            guard consumer.status != .invalidated else { continue }
            let summary = Self.runSummary(consumer, plan: try cache.record(self, txn, consumer.planId))
            for assignment in consumer.assignments where assignment.knitId == record.knitId {
                downstreams.append(
                    DataDownstreamJSON(
                        mountpoint: MountpointJSON(path: assignment.path, tags: TagSet(normalized: assignment.tags)),
                        run: summary
                    )
                )
            }
        }
        var nomination: [NominationJSON] = []
        for candidate in try nominations(txn, record, cache) {
            guard let plan = try cache.plan(self, txn, candidate.planId) else { continue }
            let input = plan.inputs[candidate.inputIndex]
            nomination.append(
                NominationJSON(
                    path: input.path,
                    tags: input.tags,
                    plan: try cache.record(self, txn, candidate.planId).summary
                )
            )
        }
        return (downstreams, nomination)
    }

    static func runSummary(_ run: RunRecord, plan: PlanRecord) -> RunSummaryJSON {
        RunSummaryJSON(
            runId: run.runId,
            status: run.status.rawValue,
            updatedAt: KnitTime(milliseconds: run.updatedAtMs).description,
            exit: run.exit,
            plan: plan.summary
        )
    }

    /// The API's view of a resolved record (`producer` set) whose producing Run follows `plan`.
    static func detail(_ record: DataRecord, plan: PlanRecord) -> DataDetailJSON {
        guard let producer = record.producer else { preconditionFailure("data \(record.knitId) is not resolved") }
        let updatedAt = KnitTime(milliseconds: producer.updatedAtMs).description
        // An upload's timestamp is its Run's last update; render that instant once.
        let timestamp = record.timestampMs.map {
            $0 == producer.updatedAtMs ? updatedAt : KnitTime(milliseconds: $0).description
        }
        return DataDetailJSON(
            knitId: record.knitId,
            tags: tagSet(record, timestamp: timestamp, status: producer.status),
            upstream: DataUpstreamJSON(
                mountpoint: record.isLog
                    ? nil : MountpointJSON(path: record.outputPath, tags: TagSet(normalized: record.mountpointTags)),
                log: record.isLog ? LogPointJSON(tags: TagSet(normalized: record.mountpointTags)) : nil,
                run: RunSummaryJSON(
                    runId: record.runId,
                    status: producer.status.rawValue,
                    updatedAt: updatedAt,
                    exit: producer.exit,
                    plan: plan.summary
                )
            ),
            creator: record.creator.isEmpty ? nil : record.creator
        )
    }

    /// User tags plus system tags, in TagSet order without sorting again: user tags are stored sorted and
    /// never have a `knit#` key, so the system tags (built in key order) form one block among them, just
    /// before the first user tag that sorts after the `knit#` prefix.
    static func tagSet(_ record: DataRecord, timestamp: String?, status: RunStatus) -> TagSet {
        var tags: [Tag] = []
        tags.reserveCapacity(record.userTags.count + 3)
        let boundary = Tag(key: SystemTag.prefix, value: "")
        let cut = record.userTags.firstIndex { boundary < $0 } ?? record.userTags.count
        tags.append(contentsOf: record.userTags[..<cut])
        tags.append(Tag(key: SystemTag.id, value: record.knitId))
        if let timestamp { tags.append(Tag(key: SystemTag.timestamp, value: timestamp)) }
        if status.isProcessing {
            tags.append(Tag(key: SystemTag.transient, value: SystemTag.processing))
        } else if status == .failed || status == .invalidated {
            tags.append(Tag(key: SystemTag.transient, value: SystemTag.failed))
        }
        tags.append(contentsOf: record.userTags[cut...])
        return TagSet(normalized: tags)
    }
}
