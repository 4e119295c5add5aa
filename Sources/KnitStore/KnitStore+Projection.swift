internal import KnitCore
internal import KnitDigest
internal import KnitLMDB
internal import Logging

// Nomination and projection (Knitfab's rules): whenever a Data becomes usable (upload finished, tags
// changed) or a plan appears, the same write transaction creates one Run per combination of (plan, one
// Data per input) that no Run has had yet. `run_by_combination` remembers every combination ever run,
// so removing and re-adding a tag, or a Run deleted later (its tombstone keeps the entry), never runs a
// combination again.

/// Plans read during one transaction, each decoded and validated once.
final class PlanCache {
    private var records: [String: PlanRecord] = [:]
    private var plans: [String: Plan] = [:]
    /// `untagged_input_plans`, read at most once.
    var untaggedInputPlans: [String]?
    /// Whether any Run consumes Data and whether any plan has inputs, checked once per transaction so a
    /// Data query on a store without plans pays nothing for the links of each Data.
    var linkCounts: (consumers: Int, inputIndex: Int, untagged: Int)?

    init() {}

    /// The plan asked for last: the Data of one answer mostly share a plan (every upload has the same pseudo
    /// plan), and comparing one id is cheaper than hashing it for the dictionary each time.
    private var last: (planId: String, record: PlanRecord)?

    func record(_ store: KnitStore, _ txn: borrowing LMDBTransaction, _ planId: String) throws -> PlanRecord {
        if let last, last.planId == planId { return last.record }
        if let record = records[planId] {
            last = (planId, record)
            return record
        }
        let record = try store.plan(txn, planId)
        records[planId] = record
        last = (planId, record)
        return record
    }

    /// The validated plan, nil for a pseudo plan.
    func plan(_ store: KnitStore, _ txn: borrowing LMDBTransaction, _ planId: String) throws -> Plan? {
        if let plan = plans[planId] { return plan }
        guard let plan = try store.decodedPlan(txn, planId).plan else { return nil }
        plans[planId] = plan
        return plan
    }
}

/// One plan input a Data can be assigned to.
struct Nomination {
    let planId: String
    let inputIndex: Int
}

extension KnitStore {
    /// Plan inputs the resolved `record` can be assigned to now, in planId then input order. Only a Data
    /// whose producing Run is done is nominated; candidate plans come from `input_tag_index` (one lookup per
    /// user tag of the Data) plus the plans with an input asking for no user tag.
    func nominations(_ txn: borrowing LMDBTransaction, _ record: DataRecord, _ cache: PlanCache) throws
        -> [Nomination]
    {
        guard let producer = record.producer, producer.status == .done else { return [] }
        var planIds = Set<String>()
        for tag in record.userTags {
            try txn.forEachDuplicate(db.inputTagIndex, key: Self.indexKey(tag)) { value in
                planIds.insert(String(decoding: value, as: UTF8.self))
                return true
            }
        }
        planIds.formUnion(try untaggedInputPlans(txn, cache))
        guard !planIds.isEmpty else { return [] }
        let dataTags = TagSet(normalized: record.userTags)
        let timestamp = record.timestampMs.map(KnitTime.init(milliseconds:))
        var found: [Nomination] = []
        for planId in planIds.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
            guard let plan = try cache.plan(self, txn, planId) else { continue }
            for (index, input) in plan.inputs.enumerated()
            where isAssignable(
                dataTags: dataTags,
                knitId: record.knitId,
                timestamp: timestamp,
                producerDone: true,
                to: input
            ) {
                found.append(Nomination(planId: planId, inputIndex: index))
            }
        }
        return found
    }

    private func untaggedInputPlans(_ txn: borrowing LMDBTransaction, _ cache: PlanCache) throws -> [String] {
        if let known = cache.untaggedInputPlans { return known }
        var ids: [String] = []
        try txn.forEach(db.untaggedInputPlans) { key, _ in
            ids.append(String(decoding: key, as: UTF8.self))
            return true
        }
        cache.untaggedInputPlans = ids
        return ids
    }

    /// knitIds of every Data assignable to `input` now, in knitId order: from `knit#id`, else the tag
    /// index (smallest duplicate list first), else (an input pinned only to a timestamp) every Data.
    func assignableData(_ txn: borrowing LMDBTransaction, _ input: PlanInput) throws -> [String] {
        var candidates: [[UInt8]]
        var keys = input.userTags.map(Self.indexKey)
        if let knitId = input.knitId {
            candidates = [Array(knitId.utf8)]
        } else if !keys.isEmpty {
            guard let shortest = try shortestTagList(txn, keys) else { return [] }
            candidates = shortest.ids
            keys = shortest.others
        } else {
            candidates = []
            try txn.forEach(db.data) { key, _ in
                candidates.append(Array(key.bindMemory(to: UInt8.self)))
                return true
            }
        }
        var found: [String] = []
        for id in candidates {
            guard try keys.allSatisfy({ try txn.contains(db.tagIndex, key: $0, value: id) }),
                let record = try dataRecord(txn, id),
                isAssignable(
                    dataTags: TagSet(normalized: record.userTags),
                    knitId: record.knitId,
                    timestamp: record.timestampMs.map(KnitTime.init(milliseconds:)),
                    producerDone: record.producer?.status == .done,
                    to: input
                )
            else { continue }
            found.append(record.knitId)
        }
        return found.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Projects a Data that just became usable (or changed tags): for each input it is nominated to, the
    /// Data on that input crossed with what every other input can take now. Returns the Runs created.
    @discardableResult
    func projectData(_ txn: borrowing LMDBTransaction, _ record: DataRecord, now: Int64, cache: PlanCache) throws
        -> Int
    {
        var created = 0
        for nomination in try nominations(txn, record, cache) {
            guard let plan = try cache.plan(self, txn, nomination.planId) else { continue }
            var known: [[String]] = []
            for (index, input) in plan.inputs.enumerated() {
                known.append(index == nomination.inputIndex ? [] : try assignableData(txn, input))
            }
            let combinations = Projection.combinations(
                triggerInput: nomination.inputIndex,
                triggerKnitId: record.knitId,
                known: known
            )
            let planRecord = try cache.record(self, txn, nomination.planId)
            for knitIds in combinations {
                if try createRunIfNew(txn, planRecord: planRecord, plan: plan, knitIds: knitIds, now: now) {
                    created += 1
                }
            }
        }
        return created
    }

    /// Projects a newly registered plan against every Data its inputs can take now: the full Cartesian
    /// product. Returns the Runs created.
    @discardableResult
    func projectPlan(_ txn: borrowing LMDBTransaction, planRecord: PlanRecord, plan: Plan, now: Int64) throws -> Int {
        var known: [[String]] = []
        for input in plan.inputs {
            let ids = try assignableData(txn, input)
            if ids.isEmpty { return 0 }
            known.append(ids)
        }
        var created = 0
        for first in known[0] {
            for knitIds in Projection.combinations(triggerInput: 0, triggerKnitId: first, known: known)
            where try createRunIfNew(txn, planRecord: planRecord, plan: plan, knitIds: knitIds, now: now) {
                created += 1
            }
        }
        return created
    }

    /// The `run_by_combination` key: the combination key, or its SHA-256 when too long for an LMDB key.
    static func combinationIndexKey(planId: String, knitIds: [String]) -> [UInt8] {
        let key = Projection.combinationKey(planId: planId, knitIds: knitIds)
        if key.count <= 500 { return key }
        return [1] + Array(SHA256Digest.hex(of: key).utf8)
    }

    /// Creates the Run of `plan` over `knitIds` (one per input, in input order) unless some Run had that
    /// combination already: `waiting` (or `deactivated` under an inactive plan), with one new processing
    /// Data per output and one for the log, tagged as the plan says and indexed so they can be found.
    func createRunIfNew(
        _ txn: borrowing LMDBTransaction,
        planRecord: PlanRecord,
        plan: Plan,
        knitIds: [String],
        now: Int64
    ) throws -> Bool {
        precondition(knitIds.count == plan.inputs.count, "a combination needs one Data per input")
        let combination = Self.combinationIndexKey(planId: planRecord.planId, knitIds: knitIds)
        if try txn.get(db.runByCombination, key: combination) != nil { return false }

        let runId = KnitIdentifier.make()
        let creator = planRecord.creator ?? ""
        let snapshot = ProducerSnapshot(
            status: plan.active ? .waiting : .deactivated,
            updatedAtMs: now,
            planId: planRecord.planId,
            exit: nil
        )
        let made = Self.outputRecords(runId: runId, plan: plan, creator: creator, producer: snapshot)
        let logKnitId = made.first(where: \.isLog)?.knitId
        let run = RunRecord(
            runId: runId,
            planId: planRecord.planId,
            status: snapshot.status,
            updatedAtMs: now,
            exit: nil,
            outputs: made.map(\.knitId),
            creator: creator,
            assignments: zip(plan.inputs, knitIds).map { input, knitId in
                RunAssignmentRecord(path: input.path, tags: input.tags.tags, knitId: knitId)
            },
            logKnitId: logKnitId
        )
        try insertRun(txn, run)
        for record in made {
            try txn.put(db.data, key: Array(record.knitId.utf8), value: record.encoded(), flags: .noOverwrite)
            try countNewData(txn, record)
            try reindex(txn, knitId: record.knitId, from: [], to: record.userTags)
        }
        try txn.put(db.runByCombination, key: combination, value: Array(runId.utf8))
        for knitId in Set(knitIds) {
            try txn.put(db.consumers, key: Array(knitId.utf8), value: Array(runId.utf8))
        }
        logger.debug(
            "run created",
            metadata: ["run.id": "\(runId)", "plan.id": "\(planRecord.planId)", "run.status": "\(run.status)"]
        )
        return true
    }

    /// Fresh output and log records of a new (or retried) Run, with new knitIds, tagged as the plan's output
    /// and log points and carrying `producer` as their copy of the Run's state; the log comes last.
    static func outputRecords(runId: String, plan: Plan, creator: String, producer: ProducerSnapshot)
        -> [DataRecord]
    {
        var made: [DataRecord] = []
        for output in plan.outputs {
            made.append(
                DataRecord(
                    knitId: KnitIdentifier.make(),
                    runId: runId,
                    outputPath: output.path,
                    userTags: output.tags.tags,
                    timestampMs: nil,
                    sizeBytes: nil,
                    creator: creator,
                    producer: producer,
                    mountpointTags: output.tags.tags
                )
            )
        }
        if let log = plan.log {
            made.append(
                DataRecord(
                    knitId: KnitIdentifier.make(),
                    runId: runId,
                    outputPath: logPath,
                    userTags: log.tags,
                    timestampMs: nil,
                    sizeBytes: nil,
                    creator: creator,
                    producer: producer,
                    isLog: true,
                    mountpointTags: log.tags
                )
            )
        }
        return made
    }

    /// Mount path recorded for a log Data.
    static let logPath = "/log"

    /// Writes a new Run record with its `runs_by_plan` and `runs_by_status` entries. Its output Data are
    /// written by the caller with the producer copy already equal to the Run's.
    func insertRun(_ txn: borrowing LMDBTransaction, _ run: RunRecord) throws {
        let id = Array(run.runId.utf8)
        try txn.put(db.runs, key: id, value: run.encoded(), flags: .noOverwrite)
        try txn.put(db.runsByPlan, key: Array(run.planId.utf8), value: id)
        try txn.put(db.runsByStatus, key: Array(run.status.rawValue.utf8), value: id)
        try countRun(txn, run, from: nil, to: run.status)
    }

    /// Moves the plan's waiting Runs to deactivated (or back) after the plan was (de)activated.
    func applyPlanActive(_ txn: borrowing LMDBTransaction, planId: String, active: Bool, now: Int64) throws {
        for id in try txn.duplicates(db.runsByPlan, key: Array(planId.utf8)) {
            var run = try run(txn, String(decoding: id, as: UTF8.self))
            let next = run.status.afterPlan(active: active)
            guard next != run.status else { continue }
            run.status = next
            run.updatedAtMs = now
            try putRun(txn, run)
        }
    }
}
