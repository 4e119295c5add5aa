public import KnitCore
internal import KnitLMDB
internal import Synchronization

// The outbox of lifecycle after hooks (schema 3). When the scheduler has after-hook URLs, every status change
// it makes (`advance`, `finishRun`) also writes, in the same transaction, one outbox entry per URL holding the
// Run Detail JSON after the change; the scheduler's sender posts them and removes each once its URL answered
// 2xx. Changes made through the API (abort, tear-off, retry, deactivation) write none: Knitfab calls no hooks
// for them either.
//
// Key: the 8-byte big-endian sequence number (from `meta`'s counter, never reused), so a cursor reads the
// entries in the order they were made. Value: ``OutboxRecord`` (JSON).

/// The URLs the scheduler's status changes are recorded for; empty (the default, and in knitd) records nothing.
final class LifecycleHookTargets: Sendable {
    private let urls = Mutex<[String]>([])

    var current: [String] { urls.withLock { $0 } }

    func set(_ new: [String]) { urls.withLock { $0 = new } }
}

/// One outbox entry as stored.
struct OutboxRecord: Codable {
    var eventId: String
    var runId: String
    var status: String
    var url: String
    /// The Run Detail JSON (UTF-8 text).
    var body: String
}

extension KnitStore {
    static let outboxSequenceKey = Array("hook_outbox_next".utf8)

    /// From now on, every status change this store makes for the scheduler (``markStarting(runId:)``,
    /// ``markRunning(runId:)``, ``finishRun(runId:exit:succeeded:)``) records one outbox entry per URL in
    /// `afterHooks`, in the transaction of the change. Empty: nothing is recorded.
    public func recordLifecycleEvents(for afterHooks: [String]) { hookTargets.set(afterHooks) }

    /// Writes one outbox entry per after-hook URL for each of `states` (the Run after each change, oldest
    /// first). Nothing when no URL is set.
    func recordLifecycleEvents(_ txn: borrowing LMDBTransaction, _ states: [RunRecord], cache: PlanCache) throws {
        let urls = hookTargets.current
        guard !urls.isEmpty, !states.isEmpty else { return }
        var next = try txn.get(db.meta, key: Self.outboxSequenceKey).map(Self.sequence(from:)) ?? 1
        for state in states {
            let body = try KnitJSON.encode(try runDetail(txn, state, cache))
            let eventId = KnitIdentifier.make()
            for url in urls {
                let record = OutboxRecord(
                    eventId: eventId,
                    runId: state.runId,
                    status: state.status.rawValue,
                    url: url,
                    body: String(decoding: body, as: UTF8.self)
                )
                try txn.put(db.hookOutbox, key: Self.sequenceKey(next), value: Self.encode(record))
                next += 1
            }
        }
        try txn.put(db.meta, key: Self.outboxSequenceKey, value: Self.sequenceKey(next))
    }

    /// Deliveries still owed, oldest first.
    public func pendingLifecycleEvents(limit: Int) throws(StoreError) -> [LifecycleEvent] {
        guard limit > 0 else { return [] }
        return try read("hook outbox") { txn in
            var events: [LifecycleEvent] = []
            try txn.forEach(db.hookOutbox) { key, value in
                let record = try Self.decode(OutboxRecord.self, value)
                events.append(
                    LifecycleEvent(
                        sequence: Self.sequence(from: Array(key)),
                        eventId: record.eventId,
                        runId: record.runId,
                        status: record.status,
                        url: record.url,
                        body: Array(record.body.utf8)
                    )
                )
                return events.count < limit
            }
            return events
        }
    }

    /// Removes one delivery (its URL answered 2xx). False when it was gone already.
    @discardableResult
    public func removeLifecycleEvent(sequence: UInt64) throws(StoreError) -> Bool {
        try write("hook delivered") { txn in try txn.delete(db.hookOutbox, key: Self.sequenceKey(sequence)) }
    }

    /// Drops the deliveries owed to URLs not in `urls` (hooks taken out of the configuration: the administrator
    /// no longer wants them called, and an address that is gone would otherwise be retried for ever) and answers
    /// how many went, per URL.
    @discardableResult
    public func discardLifecycleEvents(notFor urls: [String]) throws(StoreError) -> [String: Int] {
        let kept = Set(urls)
        return try write("hook outbox pruned") { txn in
            var stale: [(key: [UInt8], url: String)] = []
            try txn.forEach(db.hookOutbox) { key, value in
                let record = try Self.decode(OutboxRecord.self, value)
                if !kept.contains(record.url) { stale.append((Array(key), record.url)) }
                return true
            }
            var dropped: [String: Int] = [:]
            for entry in stale {
                try txn.delete(db.hookOutbox, key: entry.key)
                dropped[entry.url, default: 0] += 1
            }
            return dropped
        }
    }

    /// How many deliveries are owed (for `/metrics`).
    public func lifecycleOutboxLength() throws(StoreError) -> Int {
        try read("hook outbox length") { txn in try txn.count(db.hookOutbox) }
    }

    static func sequenceKey(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    static func sequence(from key: [UInt8]) -> UInt64 {
        key.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }
}

extension KnitStore: LifecycleOutbox {}
