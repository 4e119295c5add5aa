internal import KnitCore
internal import KnitLMDB
internal import Logging

// Per-user quotas: stored bytes, Data count and Runs at once. Kept in `meta` under `quota:<user>` (and
// `quota_default` for users without their own), JSON, so a store without quotas reads exactly as before.
//
// Bytes, Data, plans and Runs by status come from the usage every writer keeps per user (KnitStore+Usage.swift),
// so a check reads one entry and the report one per user, not every record.

extension KnitStore {
    /// Sets the limits of `user` (nil: the default for users without limits of their own). Each given field
    /// replaces that limit (`.unlimited` lifts it); fields not given keep the user's current effective value.
    /// Returns the limits now in force.
    /// - Throws: `.notFound` for a user that does not exist or was deleted, `.invalid` for a negative limit.
    @discardableResult
    public func setQuota(
        user: String?,
        bytes: QuotaChange = .keep,
        data: QuotaChange = .keep,
        runs: QuotaChange = .keep
    ) throws(StoreError) -> Quota {
        for change in [bytes, data, runs] {
            if case .limit(let value) = change, value < 0 {
                throw StoreError(.invalid, "a quota cannot be negative (\(value))")
            }
        }
        let quota = try write("set quota") { txn -> Quota in
            if let user {
                guard let record = try Self.decode(UserRecord.self, txn.get(db.users, key: Array(user.utf8))),
                    record.deletedAtMs == nil
                else { throw StoreError(.notFound, "user \(user) not found") }
            }
            var quota = try effectiveQuota(txn, user: user)
            bytes.apply(to: &quota.bytes)
            data.apply(to: &quota.data)
            runs.apply(to: &quota.runs)
            try txn.put(db.meta, key: Self.quotaKey(user), value: Self.encode(quota))
            return quota
        }
        logger.info(
            "quota set",
            metadata: [
                "user.name": "\(user ?? "(default)")", "quota.bytes": "\(quota.bytes.map(String.init) ?? "none")",
                "quota.data": "\(quota.data.map(String.init) ?? "none")",
                "quota.runs": "\(quota.runs.map(String.init) ?? "none")",
            ]
        )
        return quota
    }

    /// Drops the limits of `user` of their own, so the default applies again (nil: drops the default, so
    /// users without limits of their own have none). Returns whether there was something to drop.
    @discardableResult
    public func unsetQuota(user: String?) throws(StoreError) -> Bool {
        try write("unset quota") { txn in try txn.delete(db.meta, key: Self.quotaKey(user)) }
    }

    /// The limits in force for `user`: their own, else the default, else none. `user` nil: the default.
    public func quota(user: String?) throws(StoreError) -> Quota {
        try read("read quota") { txn in try effectiveQuota(txn, user: user) }
    }

    /// Every user's limits and what they hold, ordered by name, deleted users included (what they own still
    /// counts), plus anybody who owns records without being a user (e.g. the scheduler's own user).
    public func usageReport() throws(StoreError) -> [UserUsage] {
        try read("usage report") { txn in
            var rows: [String: UserUsage] = [:]
            func row(_ name: String) -> UserUsage { rows[name] ?? UserUsage(user: name) }
            try txn.forEach(db.users) { key, _ in
                let name = String(decoding: key, as: UTF8.self)
                rows[name] = UserUsage(user: name)
                return true
            }
            for (name, kept) in try allKeptUsage(txn) {
                var usage = row(name)
                usage.bytes = kept.bytes
                usage.data = kept.data
                usage.plans = kept.plans
                usage.runs = kept.runs
                rows[name] = usage
            }
            for name in Array(rows.keys) { rows[name]?.quota = try effectiveQuota(txn, user: name) }
            return rows.values.sorted { $0.user < $1.user }
        }
    }

    // MARK: Internals, used by uploads and the scheduler's reads

    static func quotaKey(_ user: String?) -> [UInt8] { Array((user.map { "quota:\($0)" } ?? "quota_default").utf8) }

    func effectiveQuota(_ txn: borrowing LMDBTransaction, user: String?) throws -> Quota {
        if let user, let own = try Self.decode(Quota.self, txn.get(db.meta, key: Self.quotaKey(user))) {
            return own
        }
        return try Self.decode(Quota.self, txn.get(db.meta, key: Self.quotaKey(nil))) ?? Quota()
    }

    /// Bytes and Data `user` holds: every Data record they created, uploads and Run outputs in progress
    /// included (those count as Data, and as the bytes they have so far: none until they finish).
    func storedUsage(_ txn: borrowing LMDBTransaction, user: String) throws -> (bytes: Int64, data: Int64) {
        let kept = try keptUsage(txn, user: user)
        return (kept.bytes, kept.data)
    }

    /// Refuses a new Data of `user` when it would exceed their Data count or when their stored bytes are
    /// already at or over the limit. Returns how many bytes the new Data may hold and the limit (nil: none).
    func admitNewData(_ txn: borrowing LMDBTransaction, user: String) throws -> (left: Int64, limit: Int64)? {
        let quota = try effectiveQuota(txn, user: user)
        guard quota.bytes != nil || quota.data != nil else { return nil }
        let usage = try storedUsage(txn, user: user)
        if let limit = quota.data, usage.data >= limit {
            throw StoreError.quotaExceeded(user: user, quota: "data", usage: usage.data, limit: limit)
        }
        guard let limit = quota.bytes else { return nil }
        if usage.bytes >= limit {
            throw StoreError.quotaExceeded(user: user, quota: "bytes", usage: usage.bytes, limit: limit)
        }
        return (limit - usage.bytes, limit)
    }

    /// Refuses to publish `sizeBytes` more for `user` when that would take them over their bytes quota.
    /// Called in the publishing transaction, so uploads running in parallel are checked one after another
    /// against what the others committed.
    func admitPublish(_ txn: borrowing LMDBTransaction, user: String, sizeBytes: Int64) throws {
        guard let limit = try effectiveQuota(txn, user: user).bytes else { return }
        let usage = try storedUsage(txn, user: user)
        if usage.bytes + sizeBytes > limit {
            throw StoreError.quotaExceeded(
                user: user,
                quota: "bytes",
                usage: usage.bytes,
                limit: limit,
                adding: sizeBytes
            )
        }
    }

    /// Runs of image plans in flight (starting, running, completing, aborting) per owner, and each owner's
    /// Runs limit where one is set: what ``runsToStart(limit:)`` needs to keep a user's Runs within it.
    func runSlots(_ txn: borrowing LMDBTransaction) throws -> RunSlots {
        var slots = RunSlots()
        for status in [RunStatus.starting, .running, .completing, .aborting] {
            for id in try txn.duplicates(db.runsByStatus, key: Array(status.rawValue.utf8)) {
                let run = try run(txn, String(decoding: id, as: UTF8.self))
                guard run.planId != uploadedPlan.planId else { continue }
                slots.inFlight[run.creator, default: 0] += 1
            }
        }
        return slots
    }
}

/// Who may start how many more Runs during one read of the startable Runs: a user at their Runs limit, or at or
/// over their bytes quota (a Run's outputs would only add to it), starts none.
struct RunSlots {
    var inFlight: [String: Int64] = [:]
    /// Each user's Runs limit (nil: none), once read.
    var limits: [String: Int64?] = [:]
    /// Users at or over their bytes quota.
    var blocked: Set<String> = []

    /// Takes a slot of `user` when they have one left.
    mutating func take(
        _ user: String,
        _ store: KnitStore,
        _ txn: borrowing LMDBTransaction
    ) throws -> Bool {
        let limit: Int64?
        if let known = limits[user] {
            limit = known
        } else {
            let quota = try store.effectiveQuota(txn, user: user)
            if let bytes = quota.bytes, try store.storedUsage(txn, user: user).bytes >= bytes { blocked.insert(user) }
            limit = quota.runs
            limits[user] = limit
        }
        if blocked.contains(user) { return false }
        let used = inFlight[user, default: 0]
        if let limit, used >= limit { return false }
        inFlight[user] = used + 1
        return true
    }
}

extension StoreError {
    /// The 507 a quota answers with: names the quota, the usage and the limit.
    static func quotaExceeded(
        user: String,
        quota: String,
        usage: Int64,
        limit: Int64,
        adding: Int64? = nil
    ) -> StoreError {
        let unit = quota == "bytes" ? " bytes" : " Data"
        let what = adding.map { "; this Data holds \($0) more" } ?? ""
        return StoreError(
            .quotaExceeded,
            "quota exceeded: user \(user) holds \(usage)\(unit) of a \(quota) quota of \(limit)\(unit)\(what)",
            advice: "nothing was stored; delete Data you no longer need, or ask your administrator to raise the "
                + "quota (knitadm quota set \(user) --\(quota) …)"
        )
    }
}

/// A user's limits; nil is unlimited.
public struct Quota: Codable, Sendable, Equatable {
    /// Bytes of content all their Data may hold together.
    public var bytes: Int64?
    /// How many Data they may hold (uploads, Run outputs and logs).
    public var data: Int64?
    /// How many Runs of their plans may be in flight at once.
    public var runs: Int64?

    public init(bytes: Int64? = nil, data: Int64? = nil, runs: Int64? = nil) {
        self.bytes = bytes
        self.data = data
        self.runs = runs
    }
}

/// One field of a ``KnitStore/setQuota(user:bytes:data:runs:)`` call.
public enum QuotaChange: Sendable, Equatable {
    case keep
    case unlimited
    case limit(Int64)

    func apply(to value: inout Int64?) {
        switch self {
        case .keep: break
        case .unlimited: value = nil
        case .limit(let limit): value = limit
        }
    }
}

/// What one user holds, as `knitadm usage` shows it.
public struct UserUsage: Codable, Sendable, Equatable {
    public var user: String
    /// Bytes of content of their Data (Data in progress count 0 until they finish).
    public var bytes: Int64 = 0
    /// Their Data: uploads, Run outputs and logs, in progress included.
    public var data: Int64 = 0
    /// Their image plans.
    public var plans: Int64 = 0
    /// Runs of their plans by status (uploads not included).
    public var runs: [String: Int64] = [:]
    /// The limits in force for them.
    public var quota = Quota()

    public init(user: String) { self.user = user }
}
