import KnitCore
import KnitLMDB
import KnitSystem
import KnitTestSupport
import Testing

@testable import KnitStore

#if canImport(Glibc)
    import Glibc
#endif

// Retry and delete of finished Runs: what the transaction changes in records and indexes, what it leaves
// on disk, and what it refuses.

private let stageA = planSpec(inputs: [["stage:x"]], outputs: [["stage:y"]], log: ["type:log"])
private let stageB = planSpec(image: "repo/eval:v1", inputs: [["stage:y"]], outputs: [["stage:z"]])

private let ok = RunExitJSON(code: 0, message: "")
private let crashed = RunExitJSON(code: 1, message: "crashed")

/// Plans A (x → y, with log) and B (y → z) and one upload tagged x, so A has one waiting Run.
private final class Chain {
    let dir = TemporaryDirectory()
    let clock = TestClock()
    let store: KnitStore
    let planA: String
    let planB: String
    let upload: DataDetailJSON
    let runA: String

    init() throws {
        store = try openStore(dir.path, clock: clock)
        planA = try store.registerPlan(stageA, creator: "alice").planId
        planB = try store.registerPlan(stageB, creator: "alice").planId
        upload = try KnitStoreTests.upload(store, tags: ["stage:x"])
        let runs = try store.findRuns(planIds: [planA])
        try #require(runs.count == 1)
        runA = runs[0].runId
        clock.advance(1000)
    }

    /// Runs `runId` through the scheduler's steps, writes a file into each output and the log, finishes it.
    func finish(_ runId: String, succeeded: Bool) throws {
        #expect(try store.markStarting(runId: runId))
        #expect(try store.markRunning(runId: runId))
        let detail = try store.runDetail(runId: runId)
        for output in detail.outputs {
            writeFile(store.dataDirectory(knitId: output.knitId) + "/result", "r")
        }
        if let log = detail.log { writeFile(store.logFilePath(logKnitId: log.knitId), "log line\n") }
        clock.advance(10)
        #expect(try store.finishRun(runId: runId, exit: succeeded ? ok : crashed, succeeded: succeeded))
        clock.advance(10)
    }

    func runsOfB() throws -> [RunDetailJSON] { try store.findRuns(planIds: [planB]) }

    /// The raw record, tombstones included.
    func rawRun(_ runId: String) throws -> RunRecord? {
        try store.env.read { txn in
            try txn.withValue(store.db.runs, key: runId.utf8) { bytes throws(StoreError) in
                try bytes.map { bytes throws(StoreError) in try RunRecord(decoding: bytes) }
            }
        }
    }

    func indexHas(_ db: LMDBDatabase, _ key: [UInt8], _ value: String) throws -> Bool {
        try store.env.read { txn in try txn.contains(db, key: key, value: Array(value.utf8)) }
    }

    func statusIndexHas(_ status: RunStatus, _ runId: String) throws -> Bool {
        try indexHas(store.db.runsByStatus, Array(status.rawValue.utf8), runId)
    }

    func tagIndexHas(_ text: String, _ knitId: String) throws -> Bool {
        try indexHas(store.db.tagIndex, KnitStore.indexKey(tag(text)), knitId)
    }

    func consumersOf(_ knitId: String) throws -> [String] {
        try store.env.read { txn in
            try txn.duplicates(store.db.consumers, key: Array(knitId.utf8)).map { String(decoding: $0, as: UTF8.self) }
        }
    }

    func combinationOwner(plan: String, knitIds: [String]) throws -> String? {
        try store.env.read { txn in
            try txn.get(store.db.runByCombination, key: KnitStore.combinationIndexKey(planId: plan, knitIds: knitIds))
                .map { String(decoding: $0, as: UTF8.self) }
        }
    }

    /// Directories under `data/` and records in `data`: after any retry or delete the two must match.
    func directoriesAndRecords() throws -> (directories: Int, records: Int) {
        let records = try store.env.read { txn in try txn.count(store.db.data) }
        return (listDirectory(dir.path + "/data").count, records)
    }

    func dataExists(_ knitId: String) -> Bool {
        do {
            _ = try store.dataDetail(knitId: knitId)
            return true
        } catch {
            #expect(error.code == .notFound)
            return false
        }
    }
}

private func storeError(_ body: () throws(StoreError) -> Void) -> StoreError? {
    do {
        try body()
        return nil
    } catch { return error }
}

@Suite struct RunRemovalTests {
    // MARK: retry

    @Test func retryReplacesTheOutputsAndMakesTheRunWaitingAgain() throws {
        let chain = try Chain()
        try chain.finish(chain.runA, succeeded: false)
        let before = try chain.store.runDetail(runId: chain.runA)
        #expect(before.status == "failed")
        let oldOutput = before.outputs[0].knitId
        let oldLog = try #require(before.log).knitId
        #expect(pathExists(chain.store.dataDirectory(knitId: oldOutput) + "/result"))
        #expect(pathExists(chain.store.logFilePath(logKnitId: oldLog)))

        chain.clock.advance(500)
        let retried = try chain.store.retryRun(runId: chain.runA)
        #expect(retried.runId == chain.runA)
        #expect(retried.status == "waiting")
        #expect(retried.exit == nil)
        #expect(retried.updatedAt == KnitTime(milliseconds: chain.clock.milliseconds).description)
        #expect(retried.inputs.map(\.knitId) == [chain.upload.knitId])
        let newOutput = retried.outputs[0].knitId
        let newLog = try #require(retried.log).knitId
        #expect(Set([newOutput, newLog]).isDisjoint(with: [oldOutput, oldLog]))
        #expect(retried.outputs[0].tags == TagSet([tag("stage:y")]))
        #expect(retried == (try chain.store.runDetail(runId: chain.runA)))

        // The old Data are gone: records, tag index entries, directories.
        #expect(!chain.dataExists(oldOutput) && !chain.dataExists(oldLog))
        #expect(try !chain.tagIndexHas("stage:y", oldOutput))
        #expect(try !chain.tagIndexHas("type:log", oldLog))
        #expect(!pathExists(chain.store.dataDirectory(knitId: oldOutput)))
        #expect(!pathExists(chain.store.dataDirectory(knitId: oldLog)))
        #expect(
            try chain.store.findData(tags: [tag("stage:y")], since: nil, durationMs: nil).map(\.knitId) == [newOutput]
        )

        // The new ones are processing, tagged as the plan says, without timestamp or content yet.
        let fresh = try chain.store.dataDetail(knitId: newOutput)
        #expect(fresh.tags.values(of: "knit#transient") == ["processing"])
        #expect(fresh.tags.values(of: "knit#timestamp").isEmpty)
        #expect(fresh.tags.values(of: "stage") == ["y"])
        #expect(fresh.upstream.run.status == "waiting")
        #expect(try chain.store.dataDetail(knitId: newLog).tags.values(of: "type") == ["log"])
        #expect(try chain.tagIndexHas("stage:y", newOutput))

        // Status index moved; the combination still belongs to the Run.
        #expect(try chain.statusIndexHas(.waiting, chain.runA))
        #expect(try !chain.statusIndexHas(.failed, chain.runA))
        #expect(try chain.combinationOwner(plan: chain.planA, knitIds: [chain.upload.knitId]) == chain.runA)
        #expect(try chain.consumersOf(chain.upload.knitId) == [chain.runA])

        // The scheduler takes it like any waiting Run, and it ends done, feeding B with the new output.
        let startable = try chain.store.runsToStart(limit: 10)
        #expect(startable.map(\.runId) == [chain.runA])
        #expect(startable.first?.outputs.map(\.knitId) == [newOutput])
        #expect(startable.first?.logPath == chain.store.logFilePath(logKnitId: newLog))
        #expect(try chain.store.markReady(runId: chain.runA))
        #expect(pathExists(chain.store.dataDirectory(knitId: newOutput)))
        try chain.finish(chain.runA, succeeded: true)
        #expect(try chain.store.runDetail(runId: chain.runA).status == "done")
        #expect(try chain.runsOfB().map { $0.inputs.map(\.knitId) } == [[newOutput]])
    }

    @Test func retryUnderAnInactivePlanWaitsButIsNotStarted() throws {
        let chain = try Chain()
        try chain.finish(chain.runA, succeeded: true)
        // B's Run consumes A's output; take it out of the way first.
        let runB = try #require(try chain.runsOfB().first).runId
        _ = try chain.store.requestStop(runId: runB, fail: true)
        try chain.store.removeRun(runId: runB)
        _ = try chain.store.setPlanActive(planId: chain.planA, active: false)

        let retried = try chain.store.retryRun(runId: chain.runA)
        #expect(retried.status == "waiting")
        let startable = try chain.store.runsToStart(limit: 10)
        #expect(startable.map(\.runId) == [chain.runA])
        #expect(startable.first?.planActive == false)
    }

    @Test func retryIsRefusedWhileALiveRunConsumesAnOutput() throws {
        let chain = try Chain()
        try chain.finish(chain.runA, succeeded: true)
        let before = try chain.store.runDetail(runId: chain.runA)
        let runB = try #require(try chain.runsOfB().first).runId

        let refused = storeError { () throws(StoreError) in _ = try chain.store.retryRun(runId: chain.runA) }
        #expect(refused?.code == .conflict)
        #expect(refused?.message == "output of the run is in use")
        #expect(refused?.advice == "Delete all downstreams of the run first")
        #expect(try chain.store.runDetail(runId: chain.runA) == before)
        #expect(pathExists(chain.store.dataDirectory(knitId: before.outputs[0].knitId) + "/result"))

        // Delete is refused the same way; B itself cannot go while it waits.
        let inUse = storeError { () throws(StoreError) in try chain.store.removeRun(runId: chain.runA) }
        #expect(inUse?.code == .conflict)
        #expect(inUse?.message.hasPrefix("output of the run is in use") == true)
        let waiting = storeError { () throws(StoreError) in try chain.store.removeRun(runId: runB) }
        #expect(waiting?.code == .conflict)
        #expect(waiting?.message.hasPrefix("the run has not finished yet") == true)

        // Once B is a tombstone, A may be retried, and B's tombstone goes with A's old output.
        _ = try chain.store.requestStop(runId: runB, fail: true)
        #expect(try chain.store.removeRun(runId: runB) == .tombstone)
        let oldOutput = before.outputs[0].knitId
        #expect(try chain.combinationOwner(plan: chain.planB, knitIds: [oldOutput]) == runB)
        _ = try chain.store.retryRun(runId: chain.runA)
        #expect(try chain.rawRun(runB) == nil)
        #expect(try chain.combinationOwner(plan: chain.planB, knitIds: [oldOutput]) == nil)
        #expect(try chain.consumersOf(oldOutput).isEmpty)
        #expect(try !chain.statusIndexHas(.invalidated, runB))
        #expect(try !chain.indexHas(chain.store.db.runsByPlan, Array(chain.planB.utf8), runB))
    }

    @Test func retryRefusesUploadsUnfinishedAndUnknownRuns() throws {
        let chain = try Chain()
        let root = storeError { () throws(StoreError) in
            _ = try chain.store.retryRun(runId: chain.upload.upstream.run.runId)
        }
        #expect(root?.code == .conflict)
        #expect(root?.message == "Root run cannot be retried")

        let waiting = storeError { () throws(StoreError) in _ = try chain.store.retryRun(runId: chain.runA) }
        #expect(waiting?.code == .conflict)
        #expect(waiting?.description.hasPrefix("the run has not finished yet: the run is waiting") == true)
        #expect(try chain.store.runDetail(runId: chain.runA).status == "waiting")

        let unknown = storeError { () throws(StoreError) in _ = try chain.store.retryRun(runId: "no-such-run") }
        #expect(unknown?.code == .notFound)
    }

    // MARK: delete

    @Test func deletingARunWithInputsLeavesAnInvisibleTombstoneThatBlocksItsCombination() throws {
        let chain = try Chain()
        try chain.finish(chain.runA, succeeded: true)
        let outputA = try chain.store.runDetail(runId: chain.runA).outputs[0].knitId
        let runB = try #require(try chain.runsOfB().first).runId
        try chain.finish(runB, succeeded: true)
        let outputB = try chain.store.runDetail(runId: runB).outputs[0].knitId
        #expect(try chain.store.dataDetail(knitId: outputA).downstreams.count == 1)

        #expect(try chain.store.removeRun(runId: runB) == .tombstone)

        // Invisible everywhere.
        #expect(storeError { () throws(StoreError) in _ = try chain.store.runDetail(runId: runB) }?.code == .notFound)
        #expect(try chain.runsOfB().isEmpty)
        #expect(try chain.store.findRuns().map(\.runId).contains(runB) == false)
        #expect(try chain.store.findRuns(inputKnitIds: [outputA]).isEmpty)
        #expect(try chain.store.dataDetail(knitId: outputA).downstreams.isEmpty)
        // Its output is gone: record, tag index, directory.
        #expect(!chain.dataExists(outputB))
        #expect(try chain.store.findData(tags: [tag("stage:z")], since: nil, durationMs: nil).isEmpty)
        #expect(try !chain.tagIndexHas("stage:z", outputB))
        #expect(!pathExists(chain.store.dataDirectory(knitId: outputB)))

        // The tombstone: invalidated, no outputs, still owning its combination and consuming A's output.
        let tombstone = try #require(try chain.rawRun(runB))
        #expect(tombstone.status == .invalidated)
        #expect(tombstone.outputs.isEmpty)
        #expect(try chain.statusIndexHas(.invalidated, runB))
        #expect(try !chain.statusIndexHas(.done, runB))
        #expect(try chain.combinationOwner(plan: chain.planB, knitIds: [outputA]) == runB)
        #expect(try chain.consumersOf(outputA) == [runB])

        // Retagging A's output does not run the combination again.
        _ = try chain.store.updateTags(knitId: outputA, change: TagChangeJSON(remove: [tag("stage:y")]))
        _ = try chain.store.updateTags(knitId: outputA, change: TagChangeJSON(add: [tag("stage:y")]))
        #expect(try chain.runsOfB().isEmpty)
        #expect(try chain.store.runsToStart(limit: 10).isEmpty)

        // A second delete or a retry of the tombstone: 404.
        #expect(storeError { () throws(StoreError) in try chain.store.removeRun(runId: runB) }?.code == .notFound)
        #expect(storeError { () throws(StoreError) in _ = try chain.store.retryRun(runId: runB) }?.code == .notFound)

        // A tombstone does not hold A: deleting A drops B's tombstone (its input can never come back).
        #expect(try chain.store.removeRun(runId: chain.runA) == .tombstone)
        #expect(try chain.rawRun(runB) == nil)
        #expect(try chain.combinationOwner(plan: chain.planB, knitIds: [outputA]) == nil)
        #expect(try chain.combinationOwner(plan: chain.planA, knitIds: [chain.upload.knitId]) == chain.runA)
        #expect(!chain.dataExists(outputA))
        #expect(try chain.store.dataDetail(knitId: chain.upload.knitId).downstreams.isEmpty)
    }

    @Test func deletingAFailedRunRemovesItsLogToo() throws {
        let chain = try Chain()
        try chain.finish(chain.runA, succeeded: false)
        let detail = try chain.store.runDetail(runId: chain.runA)
        let log = try #require(detail.log).knitId
        #expect(try chain.store.removeRun(runId: chain.runA) == .tombstone)
        #expect(!chain.dataExists(log) && !chain.dataExists(detail.outputs[0].knitId))
        #expect(!pathExists(chain.store.dataDirectory(knitId: log)))
        #expect(try chain.store.findData(tags: [tag("type:log")], since: nil, durationMs: nil).isEmpty)
        #expect(try chain.store.findRuns(statuses: [.failed]).isEmpty)
    }

    @Test func deletingAnUploadRunRemovesItAndItsData() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let data = try upload(store, tags: ["kind:raw"])
        let runId = data.upstream.run.runId
        let uploadedPlan = data.upstream.run.plan.planId
        #expect(pathExists(store.dataDirectory(knitId: data.knitId) + "/file.txt"))

        #expect(try store.removeRun(runId: runId) == .remove)
        #expect(storeError { () throws(StoreError) in _ = try store.runDetail(runId: runId) }?.code == .notFound)
        #expect(
            storeError { () throws(StoreError) in _ = try store.dataDetail(knitId: data.knitId) }?.code == .notFound
        )
        #expect(try store.findData(tags: [tag("kind:raw")], since: nil, durationMs: nil).isEmpty)
        #expect(try store.findRuns().isEmpty)
        #expect(!pathExists(store.dataDirectory(knitId: data.knitId)))
        #expect(store.dataCount() == 0)
        let leftovers = try store.env.read { txn throws -> [Bool] in
            [
                try txn.get(store.db.runs, key: Array(runId.utf8)) != nil,
                try txn.contains(store.db.runsByPlan, key: Array(uploadedPlan.utf8), value: Array(runId.utf8)),
                try txn.contains(store.db.runsByStatus, key: Array("done".utf8), value: Array(runId.utf8)),
                try !txn.duplicates(store.db.tagIndex, key: KnitStore.indexKey(tag("kind:raw"))).isEmpty,
            ]
        }
        #expect(leftovers == [false, false, false, false])
        #expect(storeError { () throws(StoreError) in try store.removeRun(runId: runId) }?.code == .notFound)

        // A plan registered afterwards finds nothing to run on the deleted Data.
        let plan = try store.registerPlan(planSpec(inputs: [["kind:raw"]], outputs: [["kind:out"]]), creator: "alice")
        #expect(try store.findRuns(planIds: [plan.planId]).isEmpty)
    }

    @Test func anUploadConsumedByALiveRunCannotBeDeleted() throws {
        let chain = try Chain()
        let uploadRun = chain.upload.upstream.run.runId
        let refused = storeError { () throws(StoreError) in try chain.store.removeRun(runId: uploadRun) }
        #expect(refused?.code == .conflict)
        #expect(refused?.message == "output of the run is in use")
        #expect(refused?.advice == "Delete all downstreams of the run first")
        #expect(chain.dataExists(chain.upload.knitId))

        // After A is done and deleted (its tombstone does not count), the upload may go, and A's tombstone
        // with it.
        try chain.finish(chain.runA, succeeded: false)
        #expect(try chain.store.removeRun(runId: chain.runA) == .tombstone)
        #expect(try chain.store.removeRun(runId: uploadRun) == .remove)
        #expect(try chain.rawRun(chain.runA) == nil)
        #expect(try chain.combinationOwner(plan: chain.planA, knitIds: [chain.upload.knitId]) == nil)
        #expect(try chain.store.findRuns().isEmpty)
        #expect(chain.store.dataCount() == 0)
    }

    @Test func unfinishedRunsCannotBeDeleted() throws {
        let chain = try Chain()
        #expect(try chain.store.markStarting(runId: chain.runA))
        #expect(try chain.store.markRunning(runId: chain.runA))
        let refused = storeError { () throws(StoreError) in try chain.store.removeRun(runId: chain.runA) }
        #expect(refused?.code == .conflict)
        #expect(refused?.description.hasPrefix("the run has not finished yet: the run is running") == true)
        #expect(try chain.store.runDetail(runId: chain.runA).status == "running")
        #expect(storeError { () throws(StoreError) in try chain.store.removeRun(runId: "nope") }?.code == .notFound)
    }

    // MARK: F10: directories of dropped Data

    /// The scheduler (root) creates a Run's directories; knitd (the store's owner) must be able to delete them.
    @Test(.enabled(if: getuid() == 0, "handing directories to another user needs root"))
    func F10RunDirectoriesBelongToTheStoreOwner() throws {
        let chain = try Chain()
        let nobody: uid_t = 65534
        try #require(chown(chain.dir.path + "/data", nobody, nobody) == 0)
        #expect(chain.store.dataOwner() == StoreOwner(uid: nobody, gid: nobody))
        #expect(try chain.store.markStarting(runId: chain.runA))
        let detail = try chain.store.runDetail(runId: chain.runA)
        for knitId in detail.outputs.map(\.knitId) + [try #require(detail.log).knitId] {
            var info = stat()
            #expect(lstat(chain.store.dataDirectory(knitId: knitId), &info) == 0)
            #expect(info.st_uid == nobody && info.st_gid == nobody, "\(knitId) is owned by \(info.st_uid)")
            #expect((info.st_mode & S_IFMT) == S_IFDIR)
        }
    }

    /// Retry and delete leave no directory without a record, also when a deletion fails at first: the
    /// directory stays named in `garbage` until a later collection deletes it.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func F10RetryAndDeleteLeaveNoDirectoryBehind() throws {
        let chain = try Chain()
        try chain.finish(chain.runA, succeeded: true)
        let runB = try #require(try chain.runsOfB().first).runId
        try chain.finish(runB, succeeded: true)
        var counts = try chain.directoriesAndRecords()
        #expect(counts.directories == counts.records)

        // A mount inside B's output makes its deletion fail (EBUSY), as root-owned files did for knitd.
        let outputB = try chain.store.runDetail(runId: runB).outputs[0].knitId
        let blocker = chain.store.dataDirectory(knitId: outputB) + "/busy"
        try #require(mkdir(blocker, 0o755) == 0)
        try #require(mount("tmpfs", blocker, "tmpfs", 0, "size=1m") == 0)
        var mounted = true
        defer { if mounted { umount2(blocker, Int32(MNT_DETACH)) } }
        let retried = try chain.store.retryRun(runId: runB)
        #expect(retried.status == "waiting")
        #expect(pathExists(chain.store.dataDirectory(knitId: outputB)))
        #expect(try chain.store.pendingGarbage() == [outputB])

        // Once nothing blocks it, the next collection (knitd's start) deletes it and forgets it.
        #expect(umount2(blocker, Int32(MNT_DETACH)) == 0)
        mounted = false
        #expect(chain.store.collectGarbage() == 1)
        #expect(!pathExists(chain.store.dataDirectory(knitId: outputB)))
        #expect(try chain.store.pendingGarbage().isEmpty)

        // The retried Run runs again; then both Runs are deleted.
        try chain.finish(runB, succeeded: true)
        #expect(try chain.store.removeRun(runId: runB) == .tombstone)
        #expect(try chain.store.removeRun(runId: chain.runA) == .tombstone)
        counts = try chain.directoriesAndRecords()
        #expect(counts.directories == counts.records)
        #expect(counts.records == 1, "only the upload is left")
        #expect(try chain.store.pendingGarbage().isEmpty)
    }

    /// A crash after the transaction that dropped the records and before the directories were deleted: the
    /// `garbage` entry written in that transaction lets the next start finish the job.
    @Test func F10ACrashBeforeTheDeletionIsCleanedUpAtTheNextStart() throws {
        let dir = TemporaryDirectory()
        var store: KnitStore? = try openStore(dir.path)
        let data = try upload(try #require(store), tags: ["kind:x"])
        let directory = try #require(store).dataDirectory(knitId: data.knitId)
        // What `removeRun` commits, without the deletion that follows it: records gone, entry written.
        try #require(store).env.write { txn in
            _ = try txn.delete(store!.db.data, key: Array(data.knitId.utf8))
            try store!.markGarbage(txn, [data.knitId], runId: data.upstream.run.runId)
        }
        store?.close()
        store = nil
        #expect(pathExists(directory + "/file.txt"))

        let reopened = try openStore(dir.path)
        defer { reopened.close() }
        #expect(try reopened.pendingGarbage() == [data.knitId])
        #expect(reopened.collectGarbage() == 1)
        #expect(!pathExists(directory))
        #expect(try reopened.pendingGarbage().isEmpty)
        #expect(reopened.collectGarbage() == 0)
    }
}
