internal import KnitCore
internal import KnitLMDB

// Kept usage: per user, the bytes and the count of the Data they created, their image plans and the Runs of
// those plans by status, in `usage`. Every transaction that adds, sizes or drops a Data record, adds a plan, or
// adds, moves or drops a Run adjusts its owner's entry in that same transaction, so the entry is exactly as
// current as the records (a crash loses both or neither, and a restore brings both from one snapshot). Quota
// checks and `knitadm usage` read one entry per user instead of every record. Stores written before the entries
// existed get them from the schema 1 → 2 migration; `knitadm fsck` recounts them.

/// What the store keeps for one user: the sums a quota and `knitadm usage` need.
struct KeptUsage: Codable, Sendable, Equatable {
    /// Content bytes of their Data (a Data in progress counts 0 until it is sized).
    var bytes: Int64 = 0
    /// Their Data, in progress included.
    var data: Int64 = 0
    /// Their image plans.
    var plans: Int64 = 0
    /// Runs of their image plans by status (uploads and invalidated tombstones not counted); no zero entries.
    var runs: [String: Int64] = [:]

    mutating func addRun(_ status: RunStatus, _ count: Int64) {
        let value = runs[status.rawValue, default: 0] + count
        runs[status.rawValue] = value == 0 ? nil : value
    }
}

/// One user whose kept usage differs from a recount of the Data records (`knitadm fsck`).
public struct UsageMismatch: Codable, Sendable, Equatable {
    public var user: String
    public var keptBytes: Int64
    public var keptData: Int64
    public var countedBytes: Int64
    public var countedData: Int64
    public var keptPlans: Int64 = 0
    public var countedPlans: Int64 = 0
    public var keptRuns: [String: Int64] = [:]
    public var countedRuns: [String: Int64] = [:]
}

extension KnitStore {
    /// Adds `data` Data and `bytes` bytes to what `user` is kept as holding. An entry back at zero is removed,
    /// so the table holds exactly the users who own Data.
    func addUsage(_ txn: borrowing LMDBTransaction, user: String, data: Int64, bytes: Int64) throws {
        guard data != 0 || bytes != 0 else { return }
        try changeUsage(txn, user: user) { usage in
            usage.data += data
            usage.bytes += bytes
        }
    }

    /// Counts a new image plan for its creator.
    func countNewPlan(_ txn: borrowing LMDBTransaction, _ record: PlanRecord) throws {
        guard record.pseudoName == nil, let creator = record.creator else { return }
        try changeUsage(txn, user: creator) { $0.plans += 1 }
    }

    /// Moves a Run of an image plan from status `old` (nil: new) to `new` (nil: dropped) in its owner's counts.
    func countRun(_ txn: borrowing LMDBTransaction, _ run: RunRecord, from old: RunStatus?, to new: RunStatus?) throws {
        guard run.planId != uploadedPlan.planId, old != new else { return }
        try changeUsage(txn, user: run.creator) { usage in
            if let old, old != .invalidated { usage.addRun(old, -1) }
            if let new, new != .invalidated { usage.addRun(new, 1) }
        }
    }

    private func changeUsage(_ txn: borrowing LMDBTransaction, user: String, _ change: (inout KeptUsage) -> Void) throws
    {
        let key = Array(user.utf8)
        var usage = try Self.decode(KeptUsage.self, txn.get(db.usage, key: key)) ?? KeptUsage()
        change(&usage)
        if usage == KeptUsage() {
            try txn.delete(db.usage, key: key)
        } else {
            try txn.put(db.usage, key: key, value: Self.encode(usage))
        }
    }

    /// Counts a new Data record for its creator.
    func countNewData(_ txn: borrowing LMDBTransaction, _ record: DataRecord) throws {
        try addUsage(txn, user: record.creator, data: 1, bytes: record.sizeBytes ?? 0)
    }

    /// Stops counting a Data record being dropped.
    func uncountData(_ txn: borrowing LMDBTransaction, _ record: DataRecord) throws {
        try addUsage(txn, user: record.creator, data: -1, bytes: -(record.sizeBytes ?? 0))
    }

    /// What `user` is kept as holding.
    func keptUsage(_ txn: borrowing LMDBTransaction, user: String) throws -> KeptUsage {
        try Self.decode(KeptUsage.self, txn.get(db.usage, key: Array(user.utf8))) ?? KeptUsage()
    }

    /// Every user's kept usage.
    func allKeptUsage(_ txn: borrowing LMDBTransaction) throws -> [String: KeptUsage] {
        var kept: [String: KeptUsage] = [:]
        try txn.forEach(db.usage) { key, value in
            kept[String(decoding: key, as: UTF8.self)] = try Self.decode(KeptUsage.self, value)
            return true
        }
        return kept
    }

    /// Usage summed from every Data, plan and Run record: what the kept entries must equal. One pass over each.
    static func recountUsage(
        _ txn: borrowing LMDBTransaction,
        db: Databases,
        uploadedPlanId: String
    ) throws -> [String: KeptUsage] {
        var counted: [String: KeptUsage] = [:]
        try txn.forEach(db.data) { _, value in
            let record = try DataRecord(decoding: value)
            counted[record.creator, default: KeptUsage()].data += 1
            counted[record.creator, default: KeptUsage()].bytes += record.sizeBytes ?? 0
            return true
        }
        try txn.forEach(db.plans) { _, value in
            let plan = try decode(PlanRecord.self, value)
            if plan.pseudoName == nil, let creator = plan.creator { counted[creator, default: KeptUsage()].plans += 1 }
            return true
        }
        try txn.forEach(db.runs) { _, value in
            let run = try RunRecord(decoding: value)
            if run.planId != uploadedPlanId, run.status != .invalidated {
                counted[run.creator, default: KeptUsage()].addRun(run.status, 1)
            }
            return true
        }
        return counted
    }

    /// Replaces every kept entry with `usage` (entries of users not in it are removed).
    static func replaceUsage(_ txn: borrowing LMDBTransaction, db: Databases, with usage: [String: KeptUsage]) throws {
        var stale: [[UInt8]] = []
        try txn.forEach(db.usage) { key, _ in
            if usage[String(decoding: key, as: UTF8.self)] == nil { stale.append(Array(key)) }
            return true
        }
        for key in stale { try txn.delete(db.usage, key: key) }
        for (user, kept) in usage where kept != KeptUsage() {
            try txn.put(db.usage, key: Array(user.utf8), value: encode(kept))
        }
    }

    /// Users whose kept usage differs from a recount of the Data records, by name. With `repair`, the kept
    /// entries are rewritten from the recount in the same write transaction, so nothing written meanwhile is
    /// missed.
    public func checkUsage(repair: Bool) throws(StoreError) -> [UsageMismatch] {
        let body = { (txn: borrowing LMDBTransaction) throws -> [UsageMismatch] in
            let kept = try self.allKeptUsage(txn)
            let counted = try Self.recountUsage(txn, db: self.db, uploadedPlanId: self.uploadedPlan.planId)
            var mismatches: [UsageMismatch] = []
            for user in Set(kept.keys).union(counted.keys).sorted() {
                let have = kept[user] ?? KeptUsage()
                let should = counted[user] ?? KeptUsage()
                guard have != should else { continue }
                mismatches.append(
                    UsageMismatch(
                        user: user,
                        keptBytes: have.bytes,
                        keptData: have.data,
                        countedBytes: should.bytes,
                        countedData: should.data,
                        keptPlans: have.plans,
                        countedPlans: should.plans,
                        keptRuns: have.runs,
                        countedRuns: should.runs
                    )
                )
            }
            if repair, !mismatches.isEmpty { try Self.replaceUsage(txn, db: self.db, with: counted) }
            return mismatches
        }
        return repair ? try write("repair usage", body) : try read("check usage", body)
    }
}
