import KnitCore
import Synchronization
import Testing

@testable import KnitScheduler

/// An executor whose one worker says what the test tells it to, and which records every cleanup: a worker that
/// is gone may still leave things behind (on Kubernetes a deleted Job leaves the Run's claims and volumes).
private final class VanishingExecutor: Executor {
    let seen = Mutex<ExecutorObservation>(.running)
    let cleaned = Mutex<[String]>([])

    func workerName(runId: String) -> String { "worker-" + runId }
    func start(_ launch: RunLaunch) async throws {}
    func observe(runId: String) async throws -> ExecutorObservation { seen.withLock { $0 } }
    func stop(runId: String, grace: Duration) async throws {}
    func cleanup(runId: String) async throws { cleaned.withLock { $0.append(runId) } }
    func list() async throws -> [String] { [] }
}

@Suite("RunDriver and a worker deleted behind its back")
struct RunDriverMissingWorkerTests {
    @Test("a running Run whose worker is gone fails 254 and what is left of it is removed in the same tick")
    func aMissingWorkerFails254AndIsCleanedUpAtOnce() async throws {
        let ledger = InMemoryLedger()
        let executor = VanishingExecutor()
        // The sweep (which would remove the leftovers a minute later) cannot be what cleans up here.
        let driver = RunDriver(
            ledger: ledger,
            executor: executor,
            configuration: .init(
                capacity: Capacity(cpuMillis: 2000, memoryBytes: 4 << 30),
                sweepInterval: .seconds(3600)
            )
        )
        let run = ScheduledRun(runId: "vanished-1", planId: "plan", image: "img:1")
        ledger.add(run)
        _ = await driver.tick()
        #expect(ledger.status(run.runId) == .running)
        #expect(executor.cleaned.withLock { $0 }.isEmpty)

        executor.seen.withLock { $0 = .notFound }
        _ = await driver.tick()
        #expect(ledger.status(run.runId) == .failed)
        #expect(ledger.entry(run.runId)?.exit == RunExitJSON(code: 254, message: "worker for the run is not found"))
        #expect(executor.cleaned.withLock { $0 } == [run.runId])
    }
}
