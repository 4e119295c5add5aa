import KnitCore
import Synchronization
import Testing

@testable import KnitScheduler

/// An executor whose one worker says what the test tells it to: no runtime offers a pod no node can take
/// as cheaply (the Kubernetes executor's suite shows the real one on a cluster).
private final class ScriptedExecutor: Executor {
    let seen = Mutex<ExecutorObservation>(.starting)

    func workerName(runId: String) -> String { "worker-" + runId }
    /// As the Kubernetes executor does when the pod does not run by the end of its wait.
    func start(_ launch: RunLaunch) async throws {
        guard case .running = seen.withLock({ $0 }) else { throw ExecutorError(.timedOut, "not running yet") }
    }
    func observe(runId: String) async throws -> ExecutorObservation { seen.withLock { $0 } }
    func stop(runId: String, grace: Duration) async throws {}
    func cleanup(runId: String) async throws {}
    func list() async throws -> [String] { [] }
}

@Suite("RunDriver and a pending worker")
struct RunDriverWaitingTests {
    @Test("a pending worker keeps its Run starting with the reason recorded once, cleared when it moves on")
    func pendingKeepsStartingWithTheReason() async throws {
        let ledger = InMemoryLedger()
        let executor = ScriptedExecutor()
        let driver = RunDriver(
            ledger: ledger,
            executor: executor,
            configuration: .init(capacity: Capacity(cpuMillis: 2000, memoryBytes: 4 << 30))
        )
        let run = ScheduledRun(runId: "pending-1", planId: "plan", image: "img:1")
        ledger.add(run)
        let reason = "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."
        executor.seen.withLock { $0 = .pending(reason: reason) }
        for _ in 0..<3 { _ = await driver.tick() }
        #expect(ledger.status(run.runId) == .starting)
        #expect(ledger.entry(run.runId)?.waitingFor == reason)
        // Written on a change only, not every tick.
        #expect(ledger.entry(run.runId)?.waitingWrites == 1)

        executor.seen.withLock { $0 = .starting }
        _ = await driver.tick()
        #expect(ledger.status(run.runId) == .starting)
        #expect(ledger.entry(run.runId)?.waitingFor == nil)

        executor.seen.withLock { $0 = .pending(reason: reason) }
        _ = await driver.tick()
        #expect(ledger.entry(run.runId)?.waitingFor == reason)
        executor.seen.withLock { $0 = .running }
        _ = await driver.tick()
        #expect(ledger.status(run.runId) == .running)
        #expect(ledger.entry(run.runId)?.waitingFor == nil)
        executor.seen.withLock { $0 = .exited(code: 0, oomKilled: false, message: "exited with code 0") }
        _ = await driver.tick()
        #expect(ledger.status(run.runId) == .done)
    }
}
