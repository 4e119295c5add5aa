import KnitCore
import KnitTestSupport
import Testing

@Suite struct RunLifecycleTests {
    /// Knitfab v1.6.1 §3.2, written out as the full table of allowed changes (same-state aside).
    private static let allowed: [RunStatus: Set<RunStatus>] = [
        .deactivated: [.waiting, .aborting],
        .waiting: [.deactivated, .ready, .aborting],
        .ready: [.starting, .running, .completing, .aborting],
        .starting: [.running, .completing, .aborting],
        .running: [.completing, .aborting],
        .completing: [.done],
        .aborting: [.failed],
        .done: [],
        .failed: [],
        .invalidated: [],
    ]

    @Test(arguments: RunStatus.allCases)
    func transitionTable(from: RunStatus) {
        for to in RunStatus.allCases {
            let expected = from == to || Self.allowed[from]!.contains(to)
            #expect(from.canTransition(to: to) == expected, "\(from) → \(to)")
        }
    }

    @Test func planActivationParksAndWakesOnlyWaitingRuns() {
        #expect(RunStatus.waiting.afterPlan(active: false) == .deactivated)
        #expect(RunStatus.deactivated.afterPlan(active: true) == .waiting)
        #expect(RunStatus.waiting.afterPlan(active: true) == .waiting)
        #expect(RunStatus.running.afterPlan(active: false) == .running)
        #expect(RunStatus.ready.afterPlan(active: false) == .ready)
        for status in RunStatus.allCases {
            #expect(status.canTransition(to: status.afterPlan(active: false)))
            #expect(status.canTransition(to: status.afterPlan(active: true)))
        }
        #expect(RunStatus.allCases.filter(\.isFinished) == [.done, .failed, .invalidated])
    }

    @Test func abort() throws {
        for status in [RunStatus.deactivated, .waiting, .ready, .starting, .running] {
            let change = try RunOperation.abort(from: status)
            #expect(
                change == RunStatusChange(status: .aborting, exit: RunExitJSON(code: 253, message: "aborted by user"))
            )
            #expect(status.canTransition(to: .aborting))
        }
        #expect(try RunOperation.abort(from: .aborting) == nil)
        for status in [RunStatus.completing, .done, .failed] {
            #expect(throws: KnitAPIError.self) { try RunOperation.abort(from: status) }
            let error = try #require(throws: KnitAPIError.self) { try RunOperation.abort(from: status) }
            #expect(error.status == 409)
            #expect(error.reason == "prohibited operation")
        }
        let missing = try #require(throws: KnitAPIError.self) { try RunOperation.abort(from: .invalidated) }
        #expect(missing.status == 404)
    }

    @Test func tearOff() throws {
        for status in [RunStatus.ready, .starting, .running] {
            let change = try RunOperation.tearOff(from: status)
            #expect(
                change == RunStatusChange(status: .completing, exit: RunExitJSON(code: 0, message: "stopped by user"))
            )
        }
        #expect(try RunOperation.tearOff(from: .completing) == nil)
        for status in [RunStatus.deactivated, .waiting, .aborting, .done, .failed] {
            let error = try #require(throws: KnitAPIError.self) { try RunOperation.tearOff(from: status) }
            #expect(error.status == 409, "\(status)")
        }
        #expect(throws: KnitAPIError.notFound("run not found")) { try RunOperation.tearOff(from: .invalidated) }
    }

    @Test func retry() throws {
        try RunOperation.checkRetry(RunFacts(status: .done))
        try RunOperation.checkRetry(RunFacts(status: .failed))
        for status in [RunStatus.deactivated, .waiting, .ready, .starting, .running, .completing, .aborting] {
            let error = try #require(throws: KnitAPIError.self) {
                try RunOperation.checkRetry(RunFacts(status: status))
            }
            #expect(error.status == 409)
            #expect(error.reason == "the run has not finished yet")
        }
        let root = try #require(throws: KnitAPIError.self) {
            try RunOperation.checkRetry(RunFacts(status: .done, isPseudo: true, hasInputs: false))
        }
        #expect(root.reason == "Root run cannot be retried")
        let inUse = try #require(throws: KnitAPIError.self) {
            try RunOperation.checkRetry(RunFacts(status: .failed, hasLiveDownstreams: true))
        }
        #expect(inUse.reason == "output of the run is in use")
        #expect(inUse.advice == "Delete all downstreams of the run first")
        let busy = try #require(throws: KnitAPIError.self) {
            try RunOperation.checkRetry(RunFacts(status: .done, workerActive: true))
        }
        #expect(busy.status == 409)
        let gone = try #require(throws: KnitAPIError.self) {
            try RunOperation.checkRetry(RunFacts(status: .invalidated))
        }
        #expect(gone.status == 404)
    }

    @Test func delete() throws {
        #expect(try RunOperation.checkDelete(RunFacts(status: .done)) == .tombstone)
        #expect(try RunOperation.checkDelete(RunFacts(status: .failed)) == .tombstone)
        // Upload Runs have no inputs: deleting one removes it (and its Data); pseudo Runs may be deleted.
        #expect(try RunOperation.checkDelete(RunFacts(status: .done, isPseudo: true, hasInputs: false)) == .remove)
        for status in [RunStatus.deactivated, .waiting, .ready, .starting, .running, .completing, .aborting] {
            let error = try #require(throws: KnitAPIError.self) {
                try RunOperation.checkDelete(RunFacts(status: status))
            }
            #expect(error.status == 409)
        }
        let inUse = try #require(throws: KnitAPIError.self) {
            try RunOperation.checkDelete(RunFacts(status: .done, hasLiveDownstreams: true))
        }
        #expect(inUse.reason == "output of the run is in use")
        let gone = try #require(throws: KnitAPIError.self) {
            try RunOperation.checkDelete(RunFacts(status: .invalidated))
        }
        #expect(gone.status == 404)
    }
}
