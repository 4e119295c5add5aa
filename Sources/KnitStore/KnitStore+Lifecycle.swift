public import KnitCore
internal import KnitLMDB
internal import KnitSystem
internal import Logging

#if canImport(Glibc)
    internal import Glibc
#endif

// The store side of the Run lifecycle: what the scheduler reads to start containers, the
// status changes it makes, the user's stop requests (abort, tear-off) and the one transaction that ends a
// Run. Every change goes through `putRun`, so the producer copies in the Run's Data records stay in step.
//
// The scheduler (the only worker) drives waiting → ready → starting → running and then calls `finishRun`.
// A user stop moves the Run to aborting / completing with its exit; the scheduler then stops the container
// and calls `finishRun`, which keeps that exit. A waiting or deactivated Run has no container, so aborting
// it finishes it in the same transaction (Knitfab leaves that to its finishing loop; Knit has no loop and
// no worker to wait for).

extension KnitStore {
    // MARK: Reading for the scheduler

    /// Runs that may start, oldest first, at most `limit`: `ready` Runs (they were waiting before any
    /// waiting Run is now), then `waiting` Runs, each group by (updatedAt, runId). Only image plans. Runs of
    /// a user with a Runs quota are listed only while fewer than that many of their Runs are in flight,
    /// counting the ones listed before them.
    public func runsToStart(limit: Int) throws(StoreError) -> [ScheduledRun] {
        guard limit > 0 else { return [] }
        return try read("runs to start") { txn in
            var found: [ScheduledRun] = []
            let cache = PlanCache()
            var slots = try runSlots(txn)
            for status in [RunStatus.ready, .waiting] {
                var runs: [RunRecord] = []
                for id in try txn.duplicates(db.runsByStatus, key: Array(status.rawValue.utf8)) {
                    runs.append(try run(txn, String(decoding: id, as: UTF8.self)))
                }
                runs.sort { a, b in
                    a.updatedAtMs != b.updatedAtMs
                        ? a.updatedAtMs < b.updatedAtMs : a.runId.utf8.lexicographicallyPrecedes(b.runId.utf8)
                }
                for run in runs {
                    guard found.count < limit else { return found }
                    guard let plan = try cache.plan(self, txn, run.planId) else { continue }
                    // A user at their Runs quota keeps theirs waiting; the Runs of others behind them go.
                    guard try !plan.active || slots.take(run.creator, self, txn) else { continue }
                    found.append(scheduledRun(run, plan))
                }
            }
            return found
        }
    }

    private func scheduledRun(_ run: RunRecord, _ plan: Plan) -> ScheduledRun {
        ScheduledRun(
            runId: run.runId,
            planId: run.planId,
            image: plan.imageReference,
            entrypoint: plan.entrypoint.isEmpty ? nil : plan.entrypoint,
            args: plan.args.isEmpty ? nil : plan.args,
            inputs: run.assignments.map { mount(knitId: $0.knitId, at: $0.path) },
            outputs: outputMounts(run, plan),
            logPath: run.logKnitId.map { layout.logFile(logKnitId: $0) },
            cpuMillis: plan.cpuMillicores.map { Int($0) },
            memoryBytes: plan.memoryBytes,
            planActive: plan.active,
            onNode: plan.onNode,
            serviceAccount: plan.serviceAccount
        )
    }

    /// Where a Run's container writes: each output's directory and mount path, and the log file; nil for an
    /// unknown Run or a tombstone. The scheduler checks and cleans them when the Run ends.
    public func runOutputs(runId: String) throws(StoreError) -> RunOutputs? {
        try read("run outputs") { txn -> RunOutputs? in
            guard let run = try existingRun(txn, runId), let plan = try PlanCache().plan(self, txn, run.planId) else {
                return nil
            }
            let logPath = run.logKnitId.map { layout.logFile(logKnitId: $0) }
            return RunOutputs(outputs: outputMounts(run, plan), logPath: logPath, logKnitId: run.logKnitId)
        }
    }

    /// `home/data/<logKnitId>/log`: the file a Run's stdout and stderr go to.
    public func logFilePath(logKnitId: String) -> String { layout.logFile(logKnitId: logKnitId) }

    /// The Run's outputs (not its log, the last of `run.outputs`) with the plan's mount paths.
    private func outputMounts(_ run: RunRecord, _ plan: Plan) -> [RunMount] {
        zip(run.outputs, plan.outputs).map { knitId, output in mount(knitId: knitId, at: output.path) }
    }

    private func mount(knitId: String, at path: String) -> RunMount {
        RunMount(knitId: knitId, hostPath: dataDirectory(knitId: knitId), containerPath: path)
    }

    /// Every image-plan Run in starting, running, completing or aborting, sorted by runId, with the resources
    /// its plan reserves (so a restarted scheduler knows what running containers hold) and, for completing
    /// and aborting, the user's stop request with the exit the API recorded. One read transaction: the
    /// scheduler reads it once per round and takes both its Runs to follow and its stops from it.
    ///
    /// Runs of pseudo plans (an upload in progress is a running `knit#uploaded` Run) are not listed: they
    /// have no container, knitd drives them, and a scheduler that saw one would find no worker for it and
    /// fail an upload that is still streaming. Ready Runs are not listed either: no container is started
    /// before a Run is starting.
    public func runsInFlight() throws(StoreError) -> [RunInFlight] {
        try read("runs in flight") { txn in
            var found: [RunInFlight] = []
            let cache = PlanCache()
            for status in [RunStatus.starting, .running, .completing, .aborting] {
                for id in try txn.duplicates(db.runsByStatus, key: Array(status.rawValue.utf8)) {
                    let run = try run(txn, String(decoding: id, as: UTF8.self))
                    guard let plan = try cache.plan(self, txn, run.planId) else { continue }
                    found.append(
                        RunInFlight(
                            runId: run.runId,
                            status: run.status,
                            cpuMillis: plan.cpuMillicores.map { Int($0) },
                            memoryBytes: plan.memoryBytes,
                            stopRequest: RunStopRequest(status: run.status, recordedExit: run.exit)
                        )
                    )
                }
            }
            return found.sorted { $0.runId < $1.runId }
        }
    }

    // MARK: Scheduler transitions

    /// waiting → ready: the outputs are allocated. Creates each output directory and the log's directory
    /// (mode 0755, empty, owned by ``dataOwner()`` so knitd can delete them), also when the Run is ready
    /// already, so a retried call repairs a half-done one. A directory that cannot be made is logged; the
    /// executor then refuses the Run with that reason.
    /// - Returns: false, changing nothing, when the Run is not waiting or ready (deactivated, aborted,
    ///   deleted…) or does not exist.
    @discardableResult
    public func markReady(runId: String) throws(StoreError) -> Bool {
        try advance(runId: runId, to: .ready, from: [.waiting, .ready], operation: "mark ready")
    }

    /// waiting or ready → starting (through ready, creating the directories as ``markReady(runId:)``).
    /// - Returns: false, changing nothing, when the Run is not startable any more.
    @discardableResult
    public func markStarting(runId: String) throws(StoreError) -> Bool {
        try advance(runId: runId, to: .starting, from: [.waiting, .ready, .starting], operation: "mark starting")
    }

    /// Records why a `starting` Run's worker cannot start yet (nil: it no longer waits); shown as the Run's
    /// `waitingFor` until the Run changes status. Neither the status nor `updatedAt` changes.
    /// - Returns: false, changing nothing, when the Run is not `starting`.
    @discardableResult
    public func markWaiting(runId: String, reason: String?) throws(StoreError) -> Bool {
        try write("mark waiting") { txn -> Bool in
            guard var run = try existingRun(txn, runId), run.status == .starting else { return false }
            if run.waitingFor != reason {
                run.waitingFor = reason
                try putRun(txn, run)
            }
            return true
        }
    }

    /// Records why a lifecycle before hook keeps a `waiting`, `ready`, `starting` or `running` Run where it is
    /// (nil: no longer); shown as the Run's `waitingFor` until the Run changes status, as ``markWaiting(runId:reason:)``.
    /// - Returns: false, changing nothing, when the Run is in none of those statuses.
    @discardableResult
    public func markHeld(runId: String, reason: String?) throws(StoreError) -> Bool {
        try write("mark held") { txn -> Bool in
            let held: Set<RunStatus> = [.waiting, .ready, .starting, .running]
            guard var run = try existingRun(txn, runId), held.contains(run.status) else { return false }
            if run.waitingFor != reason {
                run.waitingFor = reason
                try putRun(txn, run)
            }
            return true
        }
    }

    /// starting (or ready) → running, once the container runs.
    /// - Returns: false, changing nothing, when the Run is no longer starting (a user stopped it).
    @discardableResult
    public func markRunning(runId: String) throws(StoreError) -> Bool {
        try advance(runId: runId, to: .running, from: [.ready, .starting, .running], operation: "mark running")
    }

    private func advance(runId: String, to next: RunStatus, from allowed: Set<RunStatus>, operation: String)
        throws(StoreError) -> Bool
    {
        let now = clock()
        let directories: [String]? = try write(operation) { txn -> [String]? in
            guard var run = try existingRun(txn, runId), allowed.contains(run.status) else { return nil }
            // The Run after each change, for the after hooks: waiting → starting is two of them, as in Knitfab.
            var states: [RunRecord] = []
            if run.status == .waiting, next != .ready {
                precondition(RunStatus.waiting.canTransition(to: .ready), "waiting → ready")
                run.status = .ready
                run.updatedAtMs = now
                states.append(run)
            }
            guard run.status.canTransition(to: next) else { return nil }
            if run.status != next {
                run.status = next
                run.updatedAtMs = now
                try putRun(txn, run)
                states.append(run)
            }
            try recordLifecycleEvents(txn, states, cache: PlanCache())
            return next == .running ? [] : run.outputs.map { dataDirectory(knitId: $0) }
        }
        guard let directories else { return false }
        for directory in directories {
            // The Run is committed as startable whatever happens here: the executor refuses to start a Run
            // whose output directory is missing and fails it with that reason, which says more than a
            // scheduler error would.
            do { try makeRunDirectory(directory) } catch {
                logger.error(
                    "cannot create a run directory",
                    metadata: ["run.id": "\(runId)", "path": "\(directory)", "store.error": "\(error)"]
                )
            }
        }
        logger.debug("run advanced", metadata: ["run.id": "\(runId)", "run.status": "\(next)"])
        return true
    }

    /// The Run record, or nil when there is none or it is a tombstone.
    private func existingRun(_ txn: borrowing LMDBTransaction, _ runId: String) throws -> RunRecord? {
        let found = try txn.withValue(db.runs, key: runId.utf8) { bytes throws(StoreError) in
            try bytes.map { bytes throws(StoreError) in try RunRecord(decoding: bytes) }
        }
        guard let found, found.status != .invalidated else { return nil }
        return found
    }

    // MARK: User stop requests

    /// `PUT /api/runs/{id}/abort` (`fail`) or `…/tearoff`: abort → aborting with exit 253 "aborted by
    /// user" (from deactivated, waiting, ready, starting, running; already aborting: unchanged); tear-off →
    /// completing with exit 0 "stopped by user" (from ready, starting, running; already completing:
    /// unchanged). An aborted deactivated or waiting Run never started, so it is failed at once, in the
    /// same transaction, as ``finishRun(runId:exit:succeeded:)`` would.
    /// - Throws: `.notFound` for an unknown or deleted Run; `.conflict` "prohibited operation" (advice: why) for a
    ///   status the operation is not allowed from, or a Run of a pseudo plan (an upload ends by itself).
    public func requestStop(runId: String, fail: Bool) throws(StoreError) -> RunDetailJSON {
        let now = clock()
        let detail = try write(fail ? "abort run" : "tear off run") { txn in
            guard var run = try existingRun(txn, runId) else { throw StoreError(.notFound, "run \(runId) not found") }
            let cache = PlanCache()
            if try cache.record(self, txn, run.planId).pseudoName != nil {
                throw StoreError(
                    .conflict,
                    "prohibited operation",
                    advice: "run \(runId) is an upload; it ends when the upload does"
                )
            }
            let change = try Self.stopChange(runId: runId, from: run.status, fail: fail)
            if let change {
                let neverStarted = run.status == .waiting || run.status == .deactivated
                run.status = change.status
                run.exit = change.exit
                run.updatedAtMs = now
                if neverStarted {
                    try finish(txn, &run, succeeded: false, now: now, cache: cache)
                } else {
                    try putRun(txn, run)
                }
            }
            return try runDetail(txn, run, cache)
        }
        logger.info("run stop requested", metadata: ["run.id": "\(runId)", "run.status": "\(detail.status)"])
        return detail
    }

    /// The change ``RunOperation`` allows, its refusals as store errors.
    private static func stopChange(runId: String, from status: RunStatus, fail: Bool) throws(StoreError)
        -> RunStatusChange?
    {
        do {
            return fail ? try RunOperation.abort(from: status) : try RunOperation.tearOff(from: status)
        } catch {
            if error.status == 404 { throw StoreError(.notFound, "run \(runId) not found") }
            throw StoreError(.conflict, "prohibited operation", advice: error.advice ?? error.reason)
        }
    }

    // MARK: Finishing

    /// Ends a Run in one transaction: `done` (succeeded) or `failed`, `exit` recorded unless a stop request
    /// recorded one already (a torn-off Run keeps 0 "stopped by user", an aborted one 253), updatedAt and
    /// every output's and the log's `knit#timestamp` set to now; a done Run's outputs and log are nominated,
    /// so the next Runs of a chain exist when this returns. A completing Run (torn off) always ends done and
    /// an aborting one always failed, whatever `succeeded` says: those are the only ways out of them.
    /// `writtenBytes`, by knitId of an output or the log, is what the Run wrote there (regular files, as the
    /// scheduler's check of the outputs measured them): it becomes the Data's size and moves the plan owner's
    /// usage, so Runs meet the bytes quota as uploads do. A Data missing from it keeps its size.
    /// - Returns: false, changing nothing, when the Run is not in ready, starting, running, completing or
    ///   aborting (finished already, never started, deleted or unknown): a Run finishes at most once.
    @discardableResult
    public func finishRun(
        runId: String,
        exit: RunExitJSON,
        succeeded: Bool,
        writtenBytes: [String: Int64] = [:]
    ) throws(StoreError) -> Bool {
        let now = clock()
        let finished: RunStatus? = try write("finish run") { txn -> RunStatus? in
            guard var run = try existingRun(txn, runId) else { return nil }
            var states: [RunRecord] = []
            if run.exit == nil { run.exit = exit }
            run.updatedAtMs = now
            switch run.status {
            case .ready, .starting, .running:
                let via: RunStatus = succeeded ? .completing : .aborting
                precondition(run.status.canTransition(to: via), "\(run.status) → \(via)")
                run.status = via
                states.append(run)
            case .completing, .aborting: break
            default: return nil
            }
            let cache = PlanCache()
            try finish(
                txn,
                &run,
                succeeded: run.status == .completing,
                now: now,
                cache: cache,
                sizes: writtenBytes
            )
            states.append(run)
            try recordLifecycleEvents(txn, states, cache: cache)
            return run.status
        }
        guard let finished else { return false }
        logger.info(
            "run finished",
            metadata: ["run.id": "\(runId)", "run.status": "\(finished)", "run.exit": "\(exit.code)"]
        )
        return true
    }

    /// completing → done or aborting → failed for `run` (its exit already set), timestamps on its Data (and
    /// their sizes, `sizes` by knitId, kept in the owner's usage), and for done the nomination of each of them
    /// (creating downstream Runs).
    private func finish(
        _ txn: borrowing LMDBTransaction,
        _ run: inout RunRecord,
        succeeded: Bool,
        now: Int64,
        cache: PlanCache,
        sizes: [String: Int64] = [:]
    ) throws {
        let next: RunStatus = succeeded ? .done : .failed
        guard run.status.canTransition(to: next) else {
            throw StoreError(
                .conflict,
                "prohibited operation",
                advice: "cannot finish a \(run.status.rawValue) run as \(next)"
            )
        }
        run.status = next
        run.updatedAtMs = now
        try putRun(txn, run)
        var made: [DataRecord] = []
        for knitId in run.outputs {
            let key = Array(knitId.utf8)
            guard var record = try dataRecord(txn, key) else {
                throw StoreError(.corrupted, "store: data \(knitId) of run \(run.runId) is missing")
            }
            record.timestampMs = now
            if let size = sizes[knitId], size != record.sizeBytes {
                try addUsage(txn, user: record.creator, data: 0, bytes: size - (record.sizeBytes ?? 0))
                record.sizeBytes = size
            }
            try txn.put(db.data, key: key, value: record.encoded())
            made.append(record)
        }
        guard succeeded else { return }
        for record in made { try projectData(txn, record, now: now, cache: cache) }
    }
}
