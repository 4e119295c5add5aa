public import KnitCore
internal import KnitLMDB
internal import Logging

// Runs as the API shows them: one by id, and the `GET /api/runs` query answered from the run indexes.
// Invalidated Runs are tombstones: they block their combination but users never see them (Knitfab lists
// them in an unfiltered query, quirk 9; Knit does not).

extension KnitStore {
    /// The Run `runId` as the API shows it.
    /// - Throws: `.notFound` when there is no such Run or it is a tombstone.
    public func runDetail(runId: String) throws(StoreError) -> RunDetailJSON {
        try read("run detail") { txn in
            let found = try txn.withValue(db.runs, key: runId.utf8) { bytes throws(StoreError) in
                try bytes.map { bytes throws(StoreError) in try RunRecord(decoding: bytes) }
            }
            guard let found, found.status != .invalidated else {
                throw StoreError(.notFound, "run \(runId) not found")
            }
            return try runDetail(txn, found, PlanCache())
        }
    }

    /// Runs matching every given filter, ordered by last update, then runId (Knitfab's `GET /api/runs`).
    ///
    /// Each list is an OR (empty: no filter): `planIds` by plan, `inputKnitIds` by a Data assigned to an
    /// input, `outputKnitIds` by a Data the Run makes (outputs or log), `statuses` by status. `since` /
    /// `durationMs` keep Runs with `since <= updatedAt < since + duration`, `creator` the Runs of that user.
    /// Upload Runs are included.
    /// - Throws: `.invalid` when `statuses` holds `invalidated`.
    public func findRuns(
        planIds: [String] = [],
        inputKnitIds: [String] = [],
        outputKnitIds: [String] = [],
        statuses: [RunStatus] = [],
        since: KnitTime? = nil,
        durationMs: Int64? = nil,
        creator: String? = nil
    ) throws(StoreError) -> [RunDetailJSON] {
        if statuses.contains(.invalidated) {
            throw StoreError(.invalid, "status 'invalidated' cannot be searched; deleted runs are not shown")
        }
        let window: Range<Int64>? = since.map { start in
            let end = durationMs.map { start.milliseconds.addingReportingOverflow($0).partialValue } ?? Int64.max
            return start.milliseconds..<max(end, start.milliseconds)
        }
        let statusSet = Set(statuses)
        let inputSet = Set(inputKnitIds)
        let outputSet = Set(outputKnitIds)
        var found: [(updatedAtMs: Int64, detail: RunDetailJSON)] = try read("find runs") { txn in
            var candidates: Set<String>?
            func narrow(_ ids: Set<String>) {
                candidates = candidates.map { $0.intersection(ids) } ?? ids
            }
            if !planIds.isEmpty {
                narrow(try union(txn, db.runsByPlan, planIds))
            }
            if !statuses.isEmpty {
                narrow(try union(txn, db.runsByStatus, statuses.map(\.rawValue)))
            }
            if !inputKnitIds.isEmpty {
                narrow(try union(txn, db.consumers, inputKnitIds))
            }
            if !outputKnitIds.isEmpty {
                var producers = Set<String>()
                for knitId in outputKnitIds {
                    if let record = try dataRecord(txn, Array(knitId.utf8)) { producers.insert(record.runId) }
                }
                narrow(producers)
            }
            var runs: [RunRecord] = []
            if let candidates {
                for id in candidates {
                    let record = try txn.withValue(db.runs, key: id.utf8) { bytes throws(StoreError) in
                        try bytes.map { bytes throws(StoreError) in try RunRecord(decoding: bytes) }
                    }
                    if let record { runs.append(record) }
                }
            } else {
                try txn.forEach(db.runs) { _, value in
                    runs.append(try RunRecord(decoding: value))
                    return true
                }
            }
            // Indexes only narrow; every filter is checked again on the record itself.
            let cache = PlanCache()
            var out: [(updatedAtMs: Int64, detail: RunDetailJSON)] = []
            for run in runs {
                if run.status == .invalidated { continue }
                if !planIds.isEmpty, !planIds.contains(run.planId) { continue }
                if !statusSet.isEmpty, !statusSet.contains(run.status) { continue }
                if !inputSet.isEmpty, !run.assignments.contains(where: { inputSet.contains($0.knitId) }) { continue }
                if !outputSet.isEmpty, !run.outputs.contains(where: { outputSet.contains($0) }) { continue }
                if let window, !window.contains(run.updatedAtMs) { continue }
                if let creator, run.creator != creator { continue }
                out.append((run.updatedAtMs, try runDetail(txn, run, cache)))
            }
            return out
        }
        found.sort { a, b in
            a.updatedAtMs != b.updatedAtMs
                ? a.updatedAtMs < b.updatedAtMs : a.detail.runId.utf8.lexicographicallyPrecedes(b.detail.runId.utf8)
        }
        return found.map(\.detail)
    }

    /// runIds of every key's duplicates in a DUPSORT index.
    private func union(_ txn: borrowing LMDBTransaction, _ index: LMDBDatabase, _ keys: [String]) throws -> Set<String>
    {
        var ids = Set<String>()
        for key in keys {
            try txn.forEachDuplicate(index, key: Array(key.utf8)) { value in
                ids.insert(String(decoding: value, as: UTF8.self))
                return true
            }
        }
        return ids
    }

    /// The API's view of `run`: inputs from its assignments, outputs and log from the Data it makes.
    func runDetail(_ txn: borrowing LMDBTransaction, _ run: RunRecord, _ cache: PlanCache) throws -> RunDetailJSON {
        var outputs: [RunAssignmentJSON] = []
        var log: RunLogJSON?
        for knitId in run.outputs {
            guard let record = try dataRecord(txn, Array(knitId.utf8)) else {
                throw StoreError(.corrupted, "store: data \(knitId) of run \(run.runId) is missing")
            }
            let tags = TagSet(normalized: record.mountpointTags)
            if record.isLog {
                log = RunLogJSON(tags: tags, knitId: knitId)
            } else {
                outputs.append(RunAssignmentJSON(path: record.outputPath, tags: tags, knitId: knitId))
            }
        }
        return RunDetailJSON(
            runId: run.runId,
            status: run.status.rawValue,
            updatedAt: KnitTime(milliseconds: run.updatedAtMs).description,
            exit: run.exit,
            plan: try cache.record(self, txn, run.planId).summary,
            inputs: run.assignments.map {
                RunAssignmentJSON(path: $0.path, tags: TagSet(normalized: $0.tags), knitId: $0.knitId)
            },
            outputs: outputs,
            log: log,
            creator: run.creator.isEmpty ? nil : run.creator,
            waitingFor: run.waitingFor
        )
    }

    /// runIds of Runs in `status` (from `runs_by_status`), for the scheduler.
    public func runIds(status: RunStatus) throws(StoreError) -> [String] {
        try read("runs by status") { txn in
            try txn.duplicates(db.runsByStatus, key: Array(status.rawValue.utf8)).map {
                String(decoding: $0, as: UTF8.self)
            }
        }
    }
}
