public import KnitCore

/// The store is the scheduler's ``RunLedger``: both speak KnitCore's Run hand-off types, so each requirement
/// is the store call of the same meaning, one transaction each.
extension KnitStore: RunLedger {
    public func readyToStart(limit: Int) throws -> [ScheduledRun] { try runsToStart(limit: limit) }

    public func finish(runId: String, exit: RunExitJSON, succeeded: Bool, writtenBytes: [String: Int64]) throws
        -> Bool
    {
        try finishRun(runId: runId, exit: exit, succeeded: succeeded, writtenBytes: writtenBytes)
    }

    public func outputs(runId: String) throws -> RunOutputs? { try runOutputs(runId: runId) }
}
