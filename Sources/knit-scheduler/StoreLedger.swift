import KnitCore
import KnitScheduler
import KnitStore

/// The store's run lifecycle, seen as the driver's ``RunLedger``: a field-for-field translation, no logic.
struct StoreLedger: RunLedger {
    let store: KnitStore

    func readyToStart(limit: Int) throws -> [ScheduledRun] {
        try store.runsToStart(limit: limit).map { run in
            ScheduledRun(
                runId: run.runId,
                image: run.image,
                entrypoint: run.entrypoint.isEmpty ? nil : run.entrypoint,
                args: run.args.isEmpty ? nil : run.args,
                inputs: run.inputs.map { RunLaunch.Mount(hostPath: $0.hostPath, containerPath: $0.containerPath) },
                outputs: run.outputs.map { RunLaunch.Mount(hostPath: $0.hostPath, containerPath: $0.containerPath) },
                logPath: run.log?.hostPath,
                cpuMillis: run.cpuMillicores.map { Int($0) },
                memoryBytes: run.memoryBytes,
                planActive: run.planActive,
                ignoredSettings: run.ignoredSettings
            )
        }
    }

    func markStarting(runId: String) throws -> Bool { try store.markStarting(runId: runId) }

    func markRunning(runId: String) throws -> Bool { try store.markRunning(runId: runId) }

    func runsInFlight() throws -> [RunInFlight] {
        try store.runsInFlight()
            .filter { $0.value.status != .ready }
            .map { runId, info in
                RunInFlight(
                    runId: runId,
                    status: info.status,
                    cpuMillis: info.cpuMillicores.map { Int($0) },
                    memoryBytes: info.memoryBytes
                )
            }
            .sorted { $0.runId < $1.runId }
    }

    func requestedStops() throws -> [(runId: String, request: RunStopRequest)] {
        try store.runsInFlight()
            .compactMap { runId, info -> (runId: String, request: RunStopRequest)? in
                switch info.status {
                case .aborting:
                    return (runId, RunStopRequest(kind: .abort, exit: info.exit ?? RunOperation.abortExit))
                case .completing:
                    return (runId, RunStopRequest(kind: .tearOff, exit: info.exit ?? RunOperation.tearOffExit))
                default:
                    return nil
                }
            }
            .sorted { $0.runId < $1.runId }
    }

    func finish(runId: String, exit: RunExitJSON, succeeded: Bool) throws -> Bool {
        try store.finishRun(runId: runId, exit: exit, succeeded: succeeded)
    }

    func outputs(runId: String) throws -> RunOutputs? {
        try store.runOutputs(runId: runId).map { found in
            RunOutputs(
                outputs: found.outputs.map { RunLaunch.Mount(hostPath: $0.hostPath, containerPath: $0.containerPath) },
                logPath: found.log?.hostPath
            )
        }
    }
}
