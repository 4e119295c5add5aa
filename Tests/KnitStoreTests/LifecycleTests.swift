import KnitCore
import KnitSystem
import KnitTestSupport
import Testing

@testable import KnitStore

#if canImport(Glibc)
    import Glibc
#endif

// The store side of the Run lifecycle: the scheduler's transitions, the user's stop requests and the one
// transaction that finishes a Run and creates the next Runs of a chain.

private let stageA = planSpec(inputs: [["stage:x"]], outputs: [["stage:y"]], log: ["type:log"])
private let stageB = planSpec(image: "repo/eval:v1", inputs: [["stage:y"]], outputs: [["stage:z"]])

/// A store with plans A (x → y, with log) and B (y → z), and one upload tagged x: A's Run is waiting.
private final class Chain {
    let dir = TemporaryDirectory()
    let clock = TestClock()
    let store: KnitStore
    let planA: String
    let planB: String
    let runA: RunDetailJSON

    init() throws {
        store = try openStore(dir.path, clock: clock)
        planA = try store.registerPlan(stageA, creator: "alice").planId
        planB = try store.registerPlan(stageB, creator: "alice").planId
        _ = try upload(store, tags: ["stage:x"])
        let runs = try store.findRuns(planIds: [planA])
        try #require(runs.count == 1)
        runA = runs[0]
        clock.advance(1000)
    }

    func runToRunning() throws {
        #expect(try store.markReady(runId: runA.runId))
        clock.advance(10)
        #expect(try store.markStarting(runId: runA.runId))
        clock.advance(10)
        #expect(try store.markRunning(runId: runA.runId))
        clock.advance(10)
    }

    func status(_ runId: String) throws -> String { try store.runDetail(runId: runId).status }
}

@Suite struct LifecycleTests {
    @Test func aStartingRunShowsWhatItWaitsForUntilItsStatusChanges() throws {
        let chain = try Chain()
        let runId = chain.runA.runId
        let reason = "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."
        // Only a starting Run waits for its worker.
        #expect(!(try chain.store.markWaiting(runId: runId, reason: reason)))
        #expect(try chain.store.markStarting(runId: runId))
        let before = try chain.store.runDetail(runId: runId)
        #expect(before.waitingFor == nil)
        #expect(!String(decoding: try KnitJSON.encode(before), as: UTF8.self).contains("waitingFor"))
        chain.clock.advance(10)
        #expect(try chain.store.markWaiting(runId: runId, reason: reason))
        let waiting = try chain.store.runDetail(runId: runId)
        #expect(waiting.status == "starting")
        #expect(waiting.waitingFor == reason)
        #expect(waiting.updatedAt == before.updatedAt)
        // An additive field of the Run's JSON: Knitfab's clients skip what they do not know.
        let json = try KnitJSON.encode(waiting)
        #expect(JSONValue.parse(json)?["waitingFor"] == .string(reason))
        #expect(JSONValue.parse(json)?["status"] == .string("starting"))
        #expect(try chain.store.markWaiting(runId: runId, reason: nil))
        #expect(try chain.store.runDetail(runId: runId).waitingFor == nil)
        #expect(try chain.store.markWaiting(runId: runId, reason: reason))
        #expect(try chain.store.markRunning(runId: runId))
        #expect(try chain.store.runDetail(runId: runId).waitingFor == nil)
        #expect(!(try chain.store.markWaiting(runId: runId, reason: reason)))
    }

    @Test func finishingDoneStampsOutputsAndCreatesTheNextRunInTheSameTransaction() throws {
        let chain = try Chain()
        try chain.runToRunning()
        #expect(try chain.status(chain.runA.runId) == "running")
        #expect(try chain.store.findRuns(planIds: [chain.planB]).isEmpty)

        #expect(
            try chain.store.finishRun(runId: chain.runA.runId, exit: RunExitJSON(code: 0, message: ""), succeeded: true)
        )
        let finishedAt = KnitTime(milliseconds: chain.clock.milliseconds).description
        let run = try chain.store.runDetail(runId: chain.runA.runId)
        #expect(run.status == "done")
        #expect(run.exit == RunExitJSON(code: 0, message: ""))
        #expect(run.updatedAt == finishedAt)
        for knitId in [run.outputs[0].knitId, try #require(run.log).knitId] {
            let data = try chain.store.dataDetail(knitId: knitId)
            #expect(data.tags.values(of: "knit#timestamp") == [finishedAt])
            #expect(data.tags.values(of: "knit#transient").isEmpty)
            #expect(data.upstream.run.status == "done")
        }
        let downstream = try chain.store.findRuns(planIds: [chain.planB])
        #expect(downstream.count == 1)
        #expect(downstream.first?.status == "waiting")
        #expect(downstream.first?.inputs.map(\.knitId) == [run.outputs[0].knitId])
        #expect(downstream.first?.updatedAt == finishedAt)
        // The output's detail already names the Run that consumes it.
        #expect(try chain.store.dataDetail(knitId: run.outputs[0].knitId).downstreams.count == 1)

        // Finishing twice changes nothing.
        chain.clock.advance(5)
        #expect(
            !(try chain.store.finishRun(
                runId: chain.runA.runId,
                exit: RunExitJSON(code: 1, message: "x"),
                succeeded: false
            ))
        )
        #expect(try chain.store.runDetail(runId: chain.runA.runId) == run)
    }

    @Test func finishingFailedMarksOutputsFailedAndStartsNothingDownstream() throws {
        let chain = try Chain()
        try chain.runToRunning()
        let exit = RunExitJSON(code: 3, message: "container exited with 3")
        #expect(try chain.store.finishRun(runId: chain.runA.runId, exit: exit, succeeded: false))
        let run = try chain.store.runDetail(runId: chain.runA.runId)
        #expect(run.status == "failed")
        #expect(run.exit == exit)
        let output = try chain.store.dataDetail(knitId: run.outputs[0].knitId)
        #expect(output.tags.values(of: "knit#transient") == ["failed"])
        #expect(output.tags.values(of: "knit#timestamp").count == 1)
        #expect(output.downstreams.isEmpty)
        #expect(try chain.store.findRuns(planIds: [chain.planB]).isEmpty)
        #expect(try chain.store.runIds(status: .failed) == [chain.runA.runId])
        #expect(try chain.store.runIds(status: .running).isEmpty)
    }

    @Test func abortingAWaitingRunFailsItAtOnce() throws {
        let chain = try Chain()
        let detail = try chain.store.requestStop(runId: chain.runA.runId, fail: true)
        #expect(detail.status == "failed")
        #expect(detail.exit == RunExitJSON(code: 253, message: "aborted by user"))
        #expect(try chain.store.runDetail(runId: chain.runA.runId) == detail)
        let output = try chain.store.dataDetail(knitId: detail.outputs[0].knitId)
        #expect(output.tags.values(of: "knit#transient") == ["failed"])
        #expect(try chain.store.runsToStart(limit: 10).isEmpty)
        #expect(try chain.store.runsInFlight().isEmpty)
        #expect(!(try chain.store.markStarting(runId: chain.runA.runId)))
    }

    @Test func abortingADeactivatedRunFailsItAtOnce() throws {
        let chain = try Chain()
        _ = try chain.store.setPlanActive(planId: chain.planA, active: false)
        #expect(try chain.status(chain.runA.runId) == "deactivated")
        let detail = try chain.store.requestStop(runId: chain.runA.runId, fail: true)
        #expect(detail.status == "failed")
        #expect(detail.exit?.code == 253)
    }

    @Test func abortingARunningRunWaitsForTheSchedulerAndKeeps253() throws {
        let chain = try Chain()
        try chain.runToRunning()
        let aborting = try chain.store.requestStop(runId: chain.runA.runId, fail: true)
        #expect(aborting.status == "aborting")
        #expect(aborting.exit == RunExitJSON(code: 253, message: "aborted by user"))
        // A second abort is a no-op, still answered with the Run.
        #expect(try chain.store.requestStop(runId: chain.runA.runId, fail: true) == aborting)
        let inFlight = try #require(try chain.store.runsInFlight().first { $0.runId == chain.runA.runId })
        #expect(inFlight.status == .aborting)
        #expect(
            inFlight.stopRequest
                == RunStopRequest(kind: .abort, exit: RunExitJSON(code: 253, message: "aborted by user"))
        )
        // The container's own ending does not override the abort.
        #expect(!(try chain.store.markRunning(runId: chain.runA.runId)))
        #expect(
            try chain.store.finishRun(
                runId: chain.runA.runId,
                exit: RunExitJSON(code: 137, message: "killed"),
                succeeded: true
            )
        )
        let run = try chain.store.runDetail(runId: chain.runA.runId)
        #expect(run.status == "failed")
        #expect(run.exit == RunExitJSON(code: 253, message: "aborted by user"))
        #expect(try chain.store.findRuns(planIds: [chain.planB]).isEmpty)
    }

    @Test func tearingOffARunningRunEndsDoneAndOutputsPropagate() throws {
        let chain = try Chain()
        try chain.runToRunning()
        let completing = try chain.store.requestStop(runId: chain.runA.runId, fail: false)
        #expect(completing.status == "completing")
        #expect(completing.exit == RunExitJSON(code: 0, message: "stopped by user"))
        #expect(try chain.store.requestStop(runId: chain.runA.runId, fail: false) == completing)
        #expect(
            try chain.store.finishRun(
                runId: chain.runA.runId,
                exit: RunExitJSON(code: 143, message: "stopped"),
                succeeded: true
            )
        )
        let run = try chain.store.runDetail(runId: chain.runA.runId)
        #expect(run.status == "done")
        #expect(run.exit == RunExitJSON(code: 0, message: "stopped by user"))
        let output = try chain.store.dataDetail(knitId: run.outputs[0].knitId)
        #expect(output.tags.values(of: "knit#transient").isEmpty)
        #expect(try chain.store.findRuns(planIds: [chain.planB]).count == 1)
    }

    @Test func illegalStopsAreConflictsAndUnknownRunsNotFound() throws {
        let chain = try Chain()
        #expect(throws: StoreError.self) { try chain.store.requestStop(runId: chain.runA.runId, fail: false) }
        do {
            _ = try chain.store.requestStop(runId: chain.runA.runId, fail: false)
        } catch {
            #expect(error.code == .conflict)
            #expect(error.message == "prohibited operation")
            #expect(error.advice?.hasPrefix("cannot tear-off a waiting run") == true)
        }
        #expect(try chain.status(chain.runA.runId) == "waiting")

        try chain.runToRunning()
        _ = try chain.store.finishRun(runId: chain.runA.runId, exit: RunExitJSON(code: 0, message: ""), succeeded: true)
        for fail in [true, false] {
            do {
                _ = try chain.store.requestStop(runId: chain.runA.runId, fail: fail)
                Issue.record("stopping a done run must fail")
            } catch {
                #expect(error.code == .conflict)
                #expect(error.message.hasPrefix("prohibited operation"))
            }
        }
        #expect(try chain.status(chain.runA.runId) == "done")

        do {
            _ = try chain.store.requestStop(runId: "no-such-run", fail: true)
            Issue.record("unknown run must be not found")
        } catch { #expect(error.code == .notFound) }

        // An upload's Run cannot be stopped from outside.
        let ticket = try chain.store.beginUpload(creator: "alice")
        do {
            _ = try chain.store.requestStop(runId: ticket.runId, fail: true)
            Issue.record("an upload run must not be stoppable")
        } catch { #expect(error.code == .conflict) }
        chain.store.abandonUpload(ticket)
    }

    /// F2: the scheduler failed every upload still streaming when it ticked, because the upload's running
    /// `knit#uploaded` Run was handed to it as a Run that should have a container.
    @Test func uploadsInProgressAreNotInFlightForTheScheduler() throws {
        let chain = try Chain()
        try chain.runToRunning()
        let ticket = try chain.store.beginUpload(creator: "alice")
        defer { chain.store.abandonUpload(ticket) }
        #expect(try chain.store.runDetail(runId: ticket.runId).status == "running")
        let inFlight = try chain.store.runsInFlight()
        #expect(!inFlight.contains { $0.runId == ticket.runId })
        #expect(inFlight.first { $0.runId == chain.runA.runId }?.status == .running)
    }

    @Test func schedulerTransitionsRefuseRunsThatAreNotStartable() throws {
        let chain = try Chain()
        #expect(!(try chain.store.markRunning(runId: chain.runA.runId)))
        #expect(
            !(try chain.store.finishRun(
                runId: chain.runA.runId,
                exit: RunExitJSON(code: 0, message: ""),
                succeeded: true
            ))
        )
        #expect(!(try chain.store.markReady(runId: "no-such-run")))
        _ = try chain.store.setPlanActive(planId: chain.planA, active: false)
        #expect(!(try chain.store.markReady(runId: chain.runA.runId)))
        #expect(!(try chain.store.markStarting(runId: chain.runA.runId)))
        #expect(try chain.status(chain.runA.runId) == "deactivated")
        _ = try chain.store.setPlanActive(planId: chain.planA, active: true)
        // waiting → starting goes through ready, creating the directories.
        #expect(try chain.store.markStarting(runId: chain.runA.runId))
        #expect(try chain.status(chain.runA.runId) == "starting")
        #expect(isDirectory(chain.store.dataDirectory(knitId: chain.runA.outputs[0].knitId)))
        // Torn off while starting: the scheduler may no longer mark it running.
        _ = try chain.store.requestStop(runId: chain.runA.runId, fail: false)
        #expect(!(try chain.store.markRunning(runId: chain.runA.runId)))
        #expect(try chain.status(chain.runA.runId) == "completing")
    }

    @Test func runsToStartAreFIFOAndCarryWhatAContainerNeeds() throws {
        let dir = TemporaryDirectory()
        let clock = TestClock()
        let store = try openStore(dir.path, clock: clock)
        let spec = planSpec(
            inputs: [["stage:x"]],
            outputs: [["stage:y"]],
            log: ["type:log"],
            resources: ["cpu": "500m", "memory": "256Mi"]
        )
        let planId = try store.registerPlan(spec, creator: "alice").planId
        var inputs: [String] = []
        for index in 0..<3 {
            inputs.append(try upload(store, tags: ["stage:x", "n:\(index)"]).knitId)
            clock.advance(100)
        }
        let runs = try store.findRuns(planIds: [planId])
        let byInput = Dictionary(uniqueKeysWithValues: runs.map { ($0.inputs[0].knitId, $0) })

        var scheduled = try store.runsToStart(limit: 10)
        #expect(scheduled.map(\.runId) == inputs.map { byInput[$0]!.runId })
        #expect(try store.runsToStart(limit: 2).count == 2)
        #expect(try store.runsToStart(limit: 0).isEmpty)

        let first = scheduled[0]
        let run = byInput[inputs[0]]!
        #expect(first.planId == planId)
        #expect(try store.runDetail(runId: first.runId).status == "waiting")
        #expect(first.image == "repo/train:v1")
        #expect(first.entrypoint == nil && first.args == nil)
        #expect(
            first.inputs
                == [RunMount(knitId: inputs[0], hostPath: dir.path + "/data/" + inputs[0], containerPath: "/in/0")]
        )
        let outputId = run.outputs[0].knitId
        #expect(
            first.outputs
                == [RunMount(knitId: outputId, hostPath: dir.path + "/data/" + outputId, containerPath: "/out/0")]
        )
        let logId = try #require(run.log).knitId
        #expect(first.logPath == dir.path + "/data/" + logId + "/log")
        #expect(first.cpuMillis == 500)
        #expect(first.memoryBytes == 256 << 20)
        #expect(first.planActive)
        #expect(first.onNode.isEmpty && first.serviceAccount == nil && first.placementSettings.isEmpty)
        #expect(!isDirectory(first.outputs[0].hostPath))

        // The last one made ready goes first: ready Runs were waiting before any still waiting.
        let original = scheduled.map(\.runId)
        let last = original[2]
        #expect(try store.markReady(runId: last))
        #expect(try store.markReady(runId: last))  // idempotent
        scheduled = try store.runsToStart(limit: 10)
        #expect(scheduled.map(\.runId) == [last, original[0], original[1]])
        #expect(try store.runDetail(runId: scheduled[0].runId).status == "ready")
        for path in scheduled[0].outputs.map(\.hostPath) + [scheduled[0].logPath!] {
            let directory = path.hasSuffix("/log") ? String(path.dropLast(4)) : path
            #expect(isDirectory(directory))
            #expect(listDirectory(directory).isEmpty)
            var info = stat()
            #expect(stat(directory, &info) == 0 && (info.st_mode & 0o777) == 0o755 & ~umaskValue())
        }

        // A ready Run has no container yet: the scheduler marks it starting before it starts one.
        #expect(try store.runsInFlight().isEmpty)
        #expect(try store.markStarting(runId: scheduled[1].runId))
        #expect(try store.markRunning(runId: scheduled[1].runId))
        #expect(
            try store.runsInFlight()
                == [RunInFlight(runId: scheduled[1].runId, status: .running, cpuMillis: 500, memoryBytes: 256 << 20)]
        )
        #expect(try store.runsToStart(limit: 10).map(\.runId) == [last, scheduled[2].runId])
    }

    /// The scheduler reads the Runs in flight once per round and takes the users' stop requests from that read:
    /// each aborting or completing Run carries its request with the exit the API recorded, the others none.
    @Test func runsInFlightCarryEachUsersStopRequestWithTheRecordedExit() throws {
        let dir = TemporaryDirectory()
        let clock = TestClock()
        let store = try openStore(dir.path, clock: clock)
        let spec = planSpec(inputs: [["stage:x"]], outputs: [["stage:y"]], resources: ["cpu": "250m"])
        _ = try store.registerPlan(spec, creator: "alice")
        for index in 0..<4 {
            _ = try upload(store, tags: ["stage:x", "n:\(index)"])
            clock.advance(100)
        }
        let ids = try store.runsToStart(limit: 10).map(\.runId)
        #expect(ids.count == 4)
        for id in ids {
            #expect(try store.markStarting(runId: id))
            #expect(try store.markRunning(runId: id))
        }
        _ = try store.requestStop(runId: ids[0], fail: true)
        _ = try store.requestStop(runId: ids[1], fail: false)
        _ = try store.requestStop(runId: ids[3], fail: true)
        #expect(try store.finishRun(runId: ids[3], exit: RunExitJSON(code: 137, message: "killed"), succeeded: false))

        let inFlight = try store.runsInFlight()
        #expect(inFlight.map(\.runId) == ids.prefix(3).sorted())
        let byId = Dictionary(uniqueKeysWithValues: inFlight.map { ($0.runId, $0) })
        #expect(byId[ids[0]]?.status == .aborting)
        #expect(
            byId[ids[0]]?.stopRequest
                == RunStopRequest(kind: .abort, exit: RunExitJSON(code: 253, message: "aborted by user"))
        )
        #expect(byId[ids[1]]?.status == .completing)
        #expect(
            byId[ids[1]]?.stopRequest
                == RunStopRequest(kind: .tearOff, exit: RunExitJSON(code: 0, message: "stopped by user"))
        )
        #expect(byId[ids[2]] == RunInFlight(runId: ids[2], status: .running, cpuMillis: 250, memoryBytes: 1 << 30))
        // What a finished stop leaves: the Run is out of flight, and the recorded exit is the one it kept.
        #expect(try store.runDetail(runId: ids[3]).exit == RunExitJSON(code: 253, message: "aborted by user"))
    }
}

private func umaskValue() -> mode_t {
    let old = umask(0o022)
    umask(old)
    return old
}
