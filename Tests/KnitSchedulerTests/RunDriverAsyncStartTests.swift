import KnitCore
import Synchronization
import Testing

@testable import KnitScheduler

/// An executor whose `start` only creates the worker, as the Kubernetes executor does for knit-scheduler: the
/// test says when each worker's process runs.
private final class CreatingExecutor: Executor {
    let running = Mutex<Set<String>>([])
    let created = Mutex<[String]>([])

    var startsBeforeRunning: Bool { true }
    func workerName(runId: String) -> String { "worker-" + runId }
    func start(_ launch: RunLaunch) async throws { created.withLock { $0.append(launch.runId) } }
    func observe(runId: String) async throws -> ExecutorObservation {
        guard created.withLock({ $0.contains(runId) }) else { return .notFound }
        return running.withLock { $0.contains(runId) } ? .running : .starting
    }
    func stop(runId: String, grace: Duration) async throws {}
    func cleanup(runId: String) async throws {}
    func list() async throws -> [String] { created.withLock { $0.sorted() } }
}

@Suite("RunDriver and an executor that starts before the process runs")
struct RunDriverAsyncStartTests {
    @Test("every startable Run is created in one tick, stays starting, and is running once observed so")
    func createdRunsStayStartingUntilObservedRunning() async throws {
        let ledger = InMemoryLedger()
        let executor = CreatingExecutor()
        let driver = RunDriver(
            ledger: ledger,
            executor: executor,
            configuration: .init(capacity: Capacity(cpuMillis: 20_000, memoryBytes: 64 << 30))
        )
        let ids = (1...5).map { "async-\($0)" }
        for id in ids { ledger.add(ScheduledRun(runId: id, planId: "plan", image: "img:1")) }

        _ = await driver.tick()
        #expect(executor.created.withLock { $0 } == ids, "one tick creates all five, none waits for another")
        for id in ids { #expect(ledger.status(id) == .starting, "\(id) is not running before it is seen so") }

        executor.running.withLock { _ = $0.insert("async-2") }
        _ = await driver.tick()
        #expect(ledger.status("async-2") == .running)
        #expect(ledger.status("async-1") == .starting)
        #expect(executor.created.withLock { $0.count } == 5, "nothing was created twice")
    }
}
