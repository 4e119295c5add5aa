import Foundation
import KnitCore
import Synchronization

@testable import KnitScheduler

/// Stands in for the store: the ``RunLedger`` contract over a dictionary, plus a record of what
/// the driver did (start order, how often each Run was finished, peak concurrency).
final class InMemoryLedger: RunLedger {
    struct Entry {
        var run: ScheduledRun
        var status: RunStatus
        var exit: RunExitJSON?
        var finishCount = 0
        /// What the driver said the Run wrote, by knitId, when it finished it.
        var writtenBytes: [String: Int64] = [:]
        /// As the store keeps it: set while `starting`, cleared by any change of status.
        var waitingFor: String?
        var waitingWrites = 0
    }

    private struct State {
        var order: [String] = []
        var entries: [String: Entry] = [:]
        var startOrder: [String] = []
        var peakInFlight = 0
        var inFlightReads = 0
        var callerThreads: Set<String> = []
    }

    private let state = Mutex(State())

    func add(_ run: ScheduledRun, status: RunStatus = .ready) {
        state.withLock {
            $0.order.append(run.runId)
            $0.entries[run.runId] = Entry(run: run, status: status)
        }
    }

    /// What a user's abort or tear-off does through the API.
    func requestStop(_ runId: String, _ request: RunStopRequest) {
        state.withLock {
            $0.entries[runId]?.status = request.kind == .abort ? .aborting : .completing
            $0.entries[runId]?.exit = request.exit
        }
    }

    func entry(_ runId: String) -> Entry? { state.withLock { $0.entries[runId] } }
    func status(_ runId: String) -> RunStatus? { entry(runId)?.status }
    var startOrder: [String] { state.withLock { $0.startOrder } }
    var peakInFlight: Int { state.withLock { $0.peakInFlight } }
    /// How many times the driver read the Runs in flight.
    var inFlightReads: Int { state.withLock { $0.inFlightReads } }
    /// Which kinds of thread the driver called the ledger from.
    var callerThreads: Set<String> { state.withLock { $0.callerThreads } }

    private func noteCaller() {
        let thread = DriverThread.isCurrent ? "driver thread" : "other thread"
        state.withLock { _ = $0.callerThreads.insert(thread) }
    }

    func allFinished(_ ids: [String]) -> Bool {
        ids.allSatisfy { status($0)?.isFinished == true }
    }

    // MARK: RunLedger

    func readyToStart(limit: Int) throws -> [ScheduledRun] {
        noteCaller()
        return state.withLock { state in
            Array(
                state.order.compactMap { id -> ScheduledRun? in
                    guard let entry = state.entries[id], entry.status == .ready || entry.status == .waiting else {
                        return nil
                    }
                    return entry.run
                }
                .prefix(limit)
            )
        }
    }

    func markStarting(runId: String) throws -> Bool {
        state.withLock { state in
            guard let status = state.entries[runId]?.status, status == .ready || status == .waiting else {
                return false
            }
            state.entries[runId]?.status = .starting
            state.startOrder.append(runId)
            // As the store does: the ledger makes the Run's directories when it becomes startable.
            if let run = state.entries[runId]?.run {
                var directories = run.outputs.map(\.hostPath)
                if let logPath = run.logPath { directories.append((logPath as NSString).deletingLastPathComponent) }
                for directory in directories {
                    try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                }
            }
            let inFlight = state.entries.values.filter { $0.status == .starting || $0.status == .running }.count
            state.peakInFlight = max(state.peakInFlight, inFlight)
            return true
        }
    }

    func markRunning(runId: String) throws -> Bool {
        state.withLock { state in
            guard state.entries[runId]?.status == .starting else { return false }
            state.entries[runId]?.status = .running
            state.entries[runId]?.waitingFor = nil
            return true
        }
    }

    func runsInFlight() throws -> [RunInFlight] {
        noteCaller()
        return state.withLock { state in
            state.inFlightReads += 1
            return state.order.compactMap { id in
                guard let entry = state.entries[id] else { return nil }
                switch entry.status {
                case .starting, .running, .completing, .aborting:
                    return RunInFlight(
                        runId: id,
                        status: entry.status,
                        cpuMillis: entry.run.cpuMillis,
                        memoryBytes: entry.run.memoryBytes,
                        stopRequest: RunStopRequest(status: entry.status, recordedExit: entry.exit)
                    )
                default: return nil
                }
            }
        }
    }

    func markWaiting(runId: String, reason: String?) throws -> Bool {
        state.withLock { state in
            guard state.entries[runId]?.status == .starting else { return false }
            state.entries[runId]?.waitingFor = reason
            state.entries[runId]?.waitingWrites += 1
            return true
        }
    }

    func outputs(runId: String) throws -> RunOutputs? {
        state.withLock { state in
            state.entries[runId].map { entry in
                // As in the store's layout, the log file sits in its Data's directory: `…/<logKnitId>/log`.
                let logKnitId = entry.run.logPath.flatMap { $0.split(separator: "/").dropLast().last.map(String.init) }
                return RunOutputs(outputs: entry.run.outputs, logPath: entry.run.logPath, logKnitId: logKnitId)
            }
        }
    }

    func finish(runId: String, exit: RunExitJSON, succeeded: Bool, writtenBytes: [String: Int64]) throws -> Bool {
        noteCaller()
        return state.withLock { state in
            guard let entry = state.entries[runId] else { return false }
            switch entry.status {
            case .starting, .running, .completing, .aborting: break
            default: return false
            }
            state.entries[runId]?.status = succeeded ? .done : .failed
            state.entries[runId]?.exit = exit
            state.entries[runId]?.finishCount += 1
            state.entries[runId]?.writtenBytes = writtenBytes
            state.entries[runId]?.waitingFor = nil
            return true
        }
    }
}
