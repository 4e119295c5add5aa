// The Run hand-off between the store and the scheduler: what the store says about Runs to start, Runs in
// flight and where a Run writes. The store builds these values in its transactions and the scheduler's
// driver and executors read them as they are; neither side has a type of its own for the same thing.

/// A Data directory bound into a Run's container: the Data, where the store keeps it, where the Run sees it.
public struct RunMount: Sendable, Hashable {
    /// The Data's knitId: what names it outside this host (a volume claim of a cluster executor).
    public var knitId: String
    /// The Data's directory on the host (`data/<knitId>` under the home).
    public var hostPath: String
    /// The mount point inside the container (the plan's input or output path).
    public var containerPath: String

    public init(knitId: String, hostPath: String, containerPath: String) {
        self.knitId = knitId
        self.hostPath = hostPath
        self.containerPath = containerPath
    }
}

/// A Run that may start, with everything its container needs.
public struct ScheduledRun: Sendable, Equatable {
    public var runId: String
    public var planId: String
    /// `[host[:port]/]name:tag`.
    public var image: String
    /// The plan's entrypoint; nil or empty keeps the image's.
    public var entrypoint: [String]?
    /// The plan's args; nil or empty keeps the image's CMD.
    public var args: [String]?
    /// Each input's Data, mounted read-only, in plan order.
    public var inputs: [RunMount]
    /// Each output's Data, mounted read-write, in plan order. The store creates these directories (empty)
    /// when it marks the Run starting.
    public var outputs: [RunMount]
    /// Host path of the log Data's file `log`; nil when the plan has no log. The store creates its
    /// directory when it marks the Run starting.
    public var logPath: String?
    /// Plan resource `cpu` in millicores; nil = no limit.
    public var cpuMillis: Int?
    /// Plan resource `memory` in bytes; nil = no limit.
    public var memoryBytes: Int64?
    /// Whether the Run's plan is active now. Runs of inactive plans are not started.
    public var planActive: Bool
    /// The plan's `on_node` labels, sorted: where a cluster executor may, prefers to or must place the Run.
    public var onNode: [OnNodeLabel]
    /// The plan's `service_account`: the identity a cluster executor runs the Run's pod as; nil for none.
    public var serviceAccount: String?

    /// The placement settings the plan sets (`on_node`, `service_account`), named for the log line an executor
    /// that cannot honour them (podman) has written when the Run starts.
    public var placementSettings: [String] {
        (onNode.isEmpty ? [] : ["on_node"]) + (serviceAccount == nil ? [] : ["service_account"])
    }

    public init(
        runId: String,
        planId: String,
        image: String,
        entrypoint: [String]? = nil,
        args: [String]? = nil,
        inputs: [RunMount] = [],
        outputs: [RunMount] = [],
        logPath: String? = nil,
        cpuMillis: Int? = nil,
        memoryBytes: Int64? = nil,
        planActive: Bool = true,
        onNode: [OnNodeLabel] = [],
        serviceAccount: String? = nil
    ) {
        self.runId = runId
        self.planId = planId
        self.image = image
        self.entrypoint = entrypoint
        self.args = args
        self.inputs = inputs
        self.outputs = outputs
        self.logPath = logPath
        self.cpuMillis = cpuMillis
        self.memoryBytes = memoryBytes
        self.planActive = planActive
        self.onNode = onNode
        self.serviceAccount = serviceAccount
    }
}

/// A Run whose container may exist: `starting`, `running`, `completing` or `aborting`.
public struct RunInFlight: Sendable, Equatable {
    public var runId: String
    public var status: RunStatus
    /// Plan resources, as in ``ScheduledRun``: what the Run holds while it is in flight. They come from
    /// the store, so a restarted scheduler accounts for the containers that kept running.
    public var cpuMillis: Int?
    public var memoryBytes: Int64?
    /// The user's request to end the Run early: set exactly when the status is `aborting` or `completing`.
    public var stopRequest: RunStopRequest?

    public init(
        runId: String,
        status: RunStatus,
        cpuMillis: Int? = nil,
        memoryBytes: Int64? = nil,
        stopRequest: RunStopRequest? = nil
    ) {
        self.runId = runId
        self.status = status
        self.cpuMillis = cpuMillis
        self.memoryBytes = memoryBytes
        self.stopRequest = stopRequest
    }
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
    /// The exit the API recorded, which finishing the Run keeps.
    public var exit: RunExitJSON

    public init(kind: Kind, exit: RunExitJSON) {
        self.kind = kind
        self.exit = exit
    }

    public static let abort = RunStopRequest(kind: .abort, exit: RunOperation.abortExit)
    public static let tearOff = RunStopRequest(kind: .tearOff, exit: RunOperation.tearOffExit)

    /// The request a Run in `status` stands for, with the exit the API recorded (nil: the default one):
    /// `aborting` is an abort, `completing` a tear-off, any other status none.
    public init?(status: RunStatus, recordedExit: RunExitJSON?) {
        switch status {
        case .aborting: self.init(kind: .abort, exit: recordedExit ?? RunOperation.abortExit)
        case .completing: self.init(kind: .tearOff, exit: recordedExit ?? RunOperation.tearOffExit)
        default: return nil
        }
    }
}

/// Where a Run's container writes: its output directories and its log file.
public struct RunOutputs: Sendable, Equatable {
    /// Each output's Data, with its mount path.
    public var outputs: [RunMount]
    /// Host path of the log file; nil when the plan has no log.
    public var logPath: String?
    /// The log's Data, whose directory holds ``logPath``; nil when the plan has no log.
    public var logKnitId: String?

    public init(outputs: [RunMount], logPath: String? = nil, logKnitId: String? = nil) {
        self.outputs = outputs
        self.logPath = logPath
        self.logKnitId = logKnitId
    }
}
