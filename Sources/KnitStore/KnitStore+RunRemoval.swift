public import KnitCore
internal import KnitLMDB
internal import Logging

// Retry and delete of a finished Run. Both read the facts ``RunOperation`` judges and
// apply its verdict in one write transaction, so no projection or scheduler step sees half of it.
//
// Knitfab moves the dropped Data to a `garbage` table and deletes their volumes from a loop. Knit does the
// same with plain directories: the records and index entries go in the transaction, which also names the
// directories in `garbage`; the directories are deleted right after it commits, and then their entries. A
// crash or a failed deletion in between leaves the entry, and `collectGarbage()` finishes at the next start
// (KnitStore+Garbage.swift).
//
// Dropped Data take their nominations with them: nominations are computed from the Data records and the
// tag index, so a Data without a record is assignable to nothing. Tombstones downstream of dropped Data
// are removed as well (Knitfab does so on retry): their combination names a knitId that can never be
// seen again, so they have nothing left to block.

extension KnitStore {
    /// `PUT /api/runs/{id}/retry`: a done or failed Run of an image plan, whose outputs and log no live Run
    /// consumes, gets fresh output and log Data (new knitIds, the plan's tags, processing) in place of the
    /// old ones, loses its exit and becomes `waiting` (also under an inactive plan, as in Knitfab; the
    /// scheduler starts it once the plan is active). The runId and the assignments stay. The old Data's
    /// directories are deleted after the transaction.
    /// - Returns: the Run Detail after the retry.
    /// - Throws: `.notFound` for an unknown or deleted Run; `.conflict` with the reason and advice of
    ///   ``RunOperation/checkRetry(_:)`` (not finished, a root Run, in use).
    public func retryRun(runId: String) throws(StoreError) -> RunDetailJSON {
        let now = clock()
        let (detail, dropped) = try write("retry run") { txn throws -> (RunDetailJSON, [String]) in
            var run = try liveRun(txn, runId)
            let cache = PlanCache()
            let planRecord = try cache.record(self, txn, run.planId)
            let facts = try facts(txn, run, planRecord)
            try Self.judge(runId: runId) { () throws(KnitAPIError) in try RunOperation.checkRetry(facts) }
            guard let plan = try cache.plan(self, txn, run.planId) else {
                preconditionFailure("checkRetry lets only image plans through")
            }
            let dropped = run.outputs
            try dropDownstreamTombstones(txn, of: dropped)
            try dropData(txn, dropped)
            try markGarbage(txn, dropped, runId: runId)

            run.status = .waiting
            run.exit = nil
            run.updatedAtMs = now
            let made = Self.outputRecords(runId: run.runId, plan: plan, creator: run.creator, producer: run.snapshot)
            run.outputs = made.map(\.knitId)
            run.logKnitId = made.last(where: \.isLog)?.knitId
            for record in made {
                try txn.put(db.data, key: Array(record.knitId.utf8), value: record.encoded(), flags: .noOverwrite)
                try countNewData(txn, record)
                try reindex(txn, knitId: record.knitId, from: [], to: record.userTags)
            }
            try putRun(txn, run)
            return (try runDetail(txn, run, cache), dropped)
        }
        removeGarbage(dropped)
        logger.info("run retried", metadata: ["run.id": "\(runId)", "run.dropped": "\(dropped.count)"])
        return detail
    }

    /// `DELETE /api/runs/{id}`: a done or failed Run whose outputs and log no live Run consumes loses its
    /// Data (records, tag index entries, then directories). A Run with inputs stays as an `invalidated`
    /// tombstone in `run_by_combination`, so its combination never runs again, and is invisible to every
    /// query; a Run without inputs (an upload) is removed with all its index entries.
    /// - Returns: which of the two happened.
    /// - Throws: `.notFound` for an unknown or already deleted Run; `.conflict` with the reason and advice of
    ///   ``RunOperation/checkDelete(_:)`` (not finished, in use).
    @discardableResult
    public func removeRun(runId: String) throws(StoreError) -> RunDeletion {
        let now = clock()
        let (deletion, dropped) = try write("delete run") { txn throws -> (RunDeletion, [String]) in
            var run = try liveRun(txn, runId)
            let planRecord = try plan(txn, run.planId)
            let facts = try facts(txn, run, planRecord)
            let deletion = try Self.judge(runId: runId) { () throws(KnitAPIError) in
                try RunOperation.checkDelete(facts)
            }
            let dropped = run.outputs
            try dropDownstreamTombstones(txn, of: dropped)
            try dropData(txn, dropped)
            try markGarbage(txn, dropped, runId: runId)
            switch deletion {
            case .tombstone:
                // A tombstone needs only its plan and assignments (the combination). Its consumers entries
                // stay, so retrying or deleting an upstream Run later finds and drops it.
                run.status = .invalidated
                run.updatedAtMs = now
                run.outputs = []
                run.logKnitId = nil
                try putRun(txn, run)
            case .remove:
                try dropRunRecord(txn, run)
            }
            return (deletion, dropped)
        }
        removeGarbage(dropped)
        logger.info(
            "run deleted",
            metadata: ["run.id": "\(runId)", "run.deletion": "\(deletion)", "run.dropped": "\(dropped.count)"]
        )
        return deletion
    }

    // MARK: Internals

    /// The Run, unless it is unknown or a tombstone (both are 404 to users).
    private func liveRun(_ txn: borrowing LMDBTransaction, _ runId: String) throws -> RunRecord {
        let found = try txn.withValue(db.runs, key: runId.utf8) { bytes throws(StoreError) in
            try bytes.map { bytes throws(StoreError) in try RunRecord(decoding: bytes) }
        }
        guard let found, found.status != .invalidated else { throw StoreError(.notFound, "run \(runId) not found") }
        return found
    }

    /// What ``RunOperation`` needs to know about `run`.
    ///
    /// `workerActive` is false: a Run is done or failed only after the scheduler saw its container exit,
    /// and Knit has no data agents, so nothing writes to a finished Run's Data any more. (A container may
    /// still be waiting for removal; it has exited, and its directories are not reused: a retry makes new
    /// knitIds.) For an unfinished Run the status alone already refuses the operation.
    private func facts(_ txn: borrowing LMDBTransaction, _ run: RunRecord, _ planRecord: PlanRecord) throws
        -> RunFacts
    {
        RunFacts(
            status: run.status,
            isPseudo: planRecord.pseudoName != nil,
            hasInputs: !run.assignments.isEmpty,
            hasLiveDownstreams: try hasLiveConsumer(txn, of: run.outputs),
            workerActive: false
        )
    }

    /// Whether a Run that is not a tombstone has any of `knitIds` as an input.
    private func hasLiveConsumer(_ txn: borrowing LMDBTransaction, of knitIds: [String]) throws -> Bool {
        for knitId in knitIds {
            for id in try txn.duplicates(db.consumers, key: Array(knitId.utf8)) {
                if try run(txn, String(decoding: id, as: UTF8.self)).status != .invalidated { return true }
            }
        }
        return false
    }

    /// Runs a ``RunOperation`` rule, its refusal as a store error: 404 as `.notFound`, 409 as `.conflict`
    /// with the rule's reason and advice.
    private static func judge<T>(runId: String, _ rule: () throws(KnitAPIError) -> T) throws(StoreError) -> T {
        do { return try rule() } catch {
            if error.status == 404 { throw StoreError(.notFound, "run \(runId) not found") }
            throw StoreError(.conflict, error.reason, advice: error.advice)
        }
    }

    /// Deletes the records of `knitIds` and their tag index entries.
    private func dropData(_ txn: borrowing LMDBTransaction, _ knitIds: [String]) throws {
        for knitId in knitIds {
            let key = Array(knitId.utf8)
            guard let record = try dataRecord(txn, key) else { continue }
            try reindex(txn, knitId: knitId, from: record.userTags, to: [])
            try txn.delete(db.data, key: key)
            try uncountData(txn, record)
            try dropDownloadDigests(txn, knitId: knitId)
        }
    }

    /// Removes every tombstone consuming any of `knitIds` (which are about to disappear), with its entries
    /// in `runs_by_plan`, `runs_by_status`, `run_by_combination` and `consumers`. Callers have checked that
    /// no live Run consumes them.
    private func dropDownstreamTombstones(_ txn: borrowing LMDBTransaction, of knitIds: [String]) throws {
        var seen = Set<String>()
        for knitId in knitIds {
            for id in try txn.duplicates(db.consumers, key: Array(knitId.utf8)) {
                let runId = String(decoding: id, as: UTF8.self)
                guard seen.insert(runId).inserted else { continue }
                let tombstone = try run(txn, runId)
                precondition(tombstone.status == .invalidated, "a live run consumes data being dropped")
                try dropRunRecord(txn, tombstone)
            }
        }
    }

    /// Deletes a Run record (its Data already dropped) and every index entry naming it.
    private func dropRunRecord(_ txn: borrowing LMDBTransaction, _ run: RunRecord) throws {
        let id = Array(run.runId.utf8)
        try txn.delete(db.runsByPlan, key: Array(run.planId.utf8), value: id)
        try txn.delete(db.runsByStatus, key: Array(run.status.rawValue.utf8), value: id)
        if !run.assignments.isEmpty {
            let combination = Self.combinationIndexKey(planId: run.planId, knitIds: run.assignments.map(\.knitId))
            if try txn.get(db.runByCombination, key: combination) == id {
                try txn.delete(db.runByCombination, key: combination)
            }
        }
        for knitId in Set(run.assignments.map(\.knitId)) {
            try txn.delete(db.consumers, key: Array(knitId.utf8), value: id)
        }
        try txn.delete(db.openUploads, key: id)
        try txn.delete(db.runs, key: id)
        try countRun(txn, run, from: run.status, to: nil)
    }

}
