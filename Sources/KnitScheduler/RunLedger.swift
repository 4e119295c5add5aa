public import KnitCore

/// What the ``RunDriver`` needs from the store. Each method is one transaction of the real store
/// (LMDB), so the driver never sees a half-made change; the driver calls them from one task at a
/// time, and knitd may change the same Runs in between (abort, tear-off, plan deactivation).
///
/// The driver moves a Run ready → starting → running and then straight to done/failed through
/// ``finish(runId:exit:succeeded:)``; it never leaves a Run in `completing` or `aborting`. So a
/// Run in one of those two states was put there by a user (tear-off or abort) and is reported by
/// ``requestedStops()``.
public protocol RunLedger: Sendable {
    /// Runs that may start now, oldest first (FIFO by the time they became startable), at most
    /// `limit` of them: `ready` Runs, and `waiting` Runs of active plans (``markStarting(runId:)``
    /// takes those through `ready`). Everything a container needs is in each entry.
    func readyToStart(limit: Int) throws -> [ScheduledRun]

    /// `ready` (or `waiting`) → `starting`. Returns false, changing nothing, when the Run is not
    /// startable any more (aborted, torn off, deactivated or deleted since ``readyToStart(limit:)``
    /// read it); the driver then does not start its container.
    func markStarting(runId: String) throws -> Bool

    /// `starting` → `running` once the container process runs. Returns false, changing nothing,
    /// when the Run is no longer `starting` (a user stop came in between; the next
    /// ``requestedStops()`` reports it).
    func markRunning(runId: String) throws -> Bool

    /// Every Run in `starting`, `running`, `completing` or `aborting`, with the resources it holds:
    /// the driver compares them with the executor's containers and reserves their capacity.
    func runsInFlight() throws -> [RunInFlight]

    /// Runs a user asked to stop: `aborting` (exit 253 "aborted by user") and `completing`
    /// (exit 0 "stopped by user"), each with the exit the API recorded.
    func requestedStops() throws -> [(runId: String, request: RunStopRequest)]

    /// Ends a Run in one transaction: records `exit`, writes `knit#timestamp` on its outputs and
    /// log, sets `done` (succeeded) or `failed`, and nominates the outputs of a done Run (which
    /// creates the next Runs of a chain). Returns false, changing nothing, when the Run is not in
    /// flight any more (finished already, or deleted): finishing happens at most once.
    func finish(runId: String, exit: RunExitJSON, succeeded: Bool) throws -> Bool

    /// Where a Run's container wrote: its output directories and log file. The driver checks and cleans
    /// them (``OutputSanitizer``) before it finishes the Run. Nil for a Run the ledger does not know.
    func outputs(runId: String) throws -> RunOutputs?
}

/// The host paths a Run writes to.
public struct RunOutputs: Sendable, Equatable {
    /// Host directory of each output Data → its mount path in the container.
    public var outputs: [RunLaunch.Mount]
    /// Host path of the log file; nil when the plan has no log.
    public var logPath: String?

    public init(outputs: [RunLaunch.Mount], logPath: String? = nil) {
        self.outputs = outputs
        self.logPath = logPath
    }
}

/// A Run that may start, with what its container needs.
public struct ScheduledRun: Sendable, Equatable {
    public var runId: String
    /// `[host[:port]/]name:tag`.
    public var image: String
    /// The plan's entrypoint; nil or empty keeps the image's.
    public var entrypoint: [String]?
    /// The plan's args; nil or empty keeps the image's CMD.
    public var args: [String]?
    /// Host directory of each input's Data → its mount path in the container (read-only).
    public var inputs: [RunLaunch.Mount]
    /// Host directory of each output Data → its mount path (read-write). The ledger creates these
    /// directories when it marks the Run starting; they must not have content.
    public var outputs: [RunLaunch.Mount]
    /// Host path of the log Data's file `log`; nil when the plan has no log. The ledger creates
    /// its directory when it marks the Run starting.
    public var logPath: String?
    /// Plan resource `cpu` in millicores; nil = unlimited (it reserves ``Capacity/unlimitedDemand``'s cpu).
    public var cpuMillis: Int?
    /// Plan resource `memory` in bytes; nil = unlimited (it reserves ``Capacity/unlimitedDemand``'s memory).
    public var memoryBytes: Int64?
    /// Whether the Run's plan is active now. The driver does not start Runs of inactive plans.
    public var planActive: Bool
    /// Plan settings this executor accepts but cannot honour (locally: `on_node`,
    /// `service_account`), named for the log line the driver writes when it starts the Run.
    public var ignoredSettings: [String]

    public init(
        runId: String,
        image: String,
        entrypoint: [String]? = nil,
        args: [String]? = nil,
        inputs: [RunLaunch.Mount] = [],
        outputs: [RunLaunch.Mount] = [],
        logPath: String? = nil,
        cpuMillis: Int? = nil,
        memoryBytes: Int64? = nil,
        planActive: Bool = true,
        ignoredSettings: [String] = []
    ) {
        self.runId = runId
        self.image = image
        self.entrypoint = entrypoint
        self.args = args
        self.inputs = inputs
        self.outputs = outputs
        self.logPath = logPath
        self.cpuMillis = cpuMillis
        self.memoryBytes = memoryBytes
        self.planActive = planActive
        self.ignoredSettings = ignoredSettings
    }

    /// What the run holds of the capacity while it is in flight.
    public var demand: Capacity.Demand { Capacity.Demand(cpuMillis: cpuMillis, memoryBytes: memoryBytes) }
}

/// A Run whose container may exist: `starting`, `running`, `completing` or `aborting`.
public struct RunInFlight: Sendable, Equatable {
    public var runId: String
    public var status: RunStatus
    /// Plan resources, as in ``ScheduledRun``: what the Run holds of the capacity. They come from
    /// the store so a restarted driver reserves what running containers hold.
    public var cpuMillis: Int?
    public var memoryBytes: Int64?

    public init(runId: String, status: RunStatus, cpuMillis: Int? = nil, memoryBytes: Int64? = nil) {
        self.runId = runId
        self.status = status
        self.cpuMillis = cpuMillis
        self.memoryBytes = memoryBytes
    }

    public var demand: Capacity.Demand { Capacity.Demand(cpuMillis: cpuMillis, memoryBytes: memoryBytes) }
}

/// A user's request to end a Run early.
public struct RunStopRequest: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// `PUT /runs/{id}/abort`: the Run ends `failed`.
        case abort
        /// `PUT /runs/{id}/tearoff`: the Run ends `done`; what it wrote so far is its output.
        case tearOff
    }

    public var kind: Kind
    /// The exit the API recorded, which ``RunLedger/finish(runId:exit:succeeded:)`` keeps.
    public var exit: RunExitJSON

    public init(kind: Kind, exit: RunExitJSON) {
        self.kind = kind
        self.exit = exit
    }

    public static let abort = RunStopRequest(kind: .abort, exit: RunOperation.abortExit)
    public static let tearOff = RunStopRequest(kind: .tearOff, exit: RunOperation.tearOffExit)
}
