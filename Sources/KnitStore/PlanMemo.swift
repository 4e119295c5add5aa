internal import KnitCore
internal import Synchronization

#if canImport(Glibc)
    internal import Glibc
#endif

/// Decoded and validated plan records, kept for the life of the process.
///
/// Registering a plan checks it against every other plan (cycles, upstreams, downstreams), and a push
/// may nominate its Data to many candidate plans; decoding and re-validating each record's JSON every
/// time made registering the 10,000th plan cost ~100 ms. A memo entry is used only while the stored
/// bytes are byte-for-byte what it was decoded from, so a plan changed by another process (or by a
/// transaction that was later aborted) is simply decoded again: the memo can be stale, never wrong.
final class PlanMemo: Sendable {
    private struct Entry {
        let bytes: [UInt8]
        let record: PlanRecord
        /// The validated plan; nil for a pseudo plan.
        let plan: Plan?
    }

    private let entries = Mutex<[String: Entry]>([:])

    /// memcmp: the generic `elementsEqual` was 14 % of registering a plan among 4,000.
    private static func same(_ stored: [UInt8], _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard stored.count == bytes.count else { return false }
        // Both non-empty from here on, so both have a base address.
        guard !stored.isEmpty else { return true }
        return stored.withUnsafeBytes { memcmp($0.baseAddress!, bytes.baseAddress!, bytes.count) == 0 }
    }

    init() {}

    /// The record and validated plan stored as `bytes` under `planId`.
    func decoded(planId: String, bytes: UnsafeRawBufferPointer) throws -> (record: PlanRecord, plan: Plan?) {
        let cached = entries.withLock { $0[planId] }
        if let cached, Self.same(cached.bytes, bytes) { return (cached.record, cached.plan) }
        let record = try KnitStore.decode(PlanRecord.self, bytes)
        let plan = record.pseudoName == nil ? try KnitStore.plan(from: record) : nil
        let entry = Entry(bytes: Array(bytes), record: record, plan: plan)
        entries.withLock { $0[planId] = entry }
        return (record, plan)
    }
}
