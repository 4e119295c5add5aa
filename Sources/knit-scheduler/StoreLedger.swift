import KnitCore
import KnitScheduler
import KnitStore

/// The store's Run lifecycle as the driver's ``RunLedger``: both speak KnitCore's Run hand-off types, so each
/// method is the store call of the same meaning.
struct StoreLedger: RunLedger {
    let store: KnitStore

    func readyToStart(limit: Int) throws -> [ScheduledRun] { try store.runsToStart(limit: limit) }

    func markStarting(runId: String) throws -> Bool { try store.markStarting(runId: runId) }

    func markRunning(runId: String) throws -> Bool { try store.markRunning(runId: runId) }

    func runsInFlight() throws -> [RunInFlight] { try store.runsInFlight() }

    func finish(runId: String, exit: RunExitJSON, succeeded: Bool) throws -> Bool {
        try store.finishRun(runId: runId, exit: exit, succeeded: succeeded)
    }

    func outputs(runId: String) throws -> RunOutputs? { try store.runOutputs(runId: runId) }

    func markWaiting(runId: String, reason: String?) throws -> Bool {
        try store.markWaiting(runId: runId, reason: reason)
    }
}
