// The Run state machine of Knitfab v1.6.1 and the preconditions of the user operations on Runs (abort,
// tear-off, retry, delete), as pure rules over facts the store reads in its transaction.

extension RunStatus {
    /// Whether a status change from `self` to `next` is allowed through the lifecycle (scheduler, plan
    /// activation, abort, tear-off). Changing to the same status is allowed and is a no-op. Retry
    /// (done/failed → waiting) and delete (→ invalidated) are not status changes; see ``RunOperation``.
    public func canTransition(to next: RunStatus) -> Bool {
        if next == self { return true }
        switch (self, next) {
        case (.deactivated, .waiting), (.deactivated, .aborting): return true
        case (.waiting, .deactivated), (.waiting, .ready), (.waiting, .aborting): return true
        case (.ready, .starting), (.ready, .running), (.ready, .completing), (.ready, .aborting): return true
        case (.starting, .running), (.starting, .completing), (.starting, .aborting): return true
        case (.running, .completing), (.running, .aborting): return true
        case (.completing, .done), (.aborting, .failed): return true
        default: return false
        }
    }

    /// Done, failed or invalidated: nothing will change it any more except retry or delete.
    public var isFinished: Bool { !isProcessing }

    /// The status after the plan is (de)activated: waiting Runs are parked as deactivated and back;
    /// Runs that already started carry on.
    public func afterPlan(active: Bool) -> RunStatus {
        switch (self, active) {
        case (.waiting, false): return .deactivated
        case (.deactivated, true): return .waiting
        default: return self
        }
    }
}

/// A status change a user operation asks for, with the exit it records.
public struct RunStatusChange: Sendable, Equatable {
    public let status: RunStatus
    public let exit: RunExitJSON
    public init(status: RunStatus, exit: RunExitJSON) {
        self.status = status
        self.exit = exit
    }
}

/// What the store knows about a Run when a user asks to retry or delete it.
public struct RunFacts: Sendable, Equatable {
    public var status: RunStatus
    /// A Run of a pseudo plan (`knit#uploaded`, `knit#imported`): a "root" Run with no image.
    public var isPseudo: Bool
    /// Whether the Run had inputs: deleting such a Run leaves a tombstone that blocks its combination.
    public var hasInputs: Bool
    /// Whether a Run that is not invalidated consumes any of this Run's outputs or log.
    public var hasLiveDownstreams: Bool
    /// Whether a container or transfer may still be touching the Run's Data.
    public var workerActive: Bool

    public init(
        status: RunStatus,
        isPseudo: Bool = false,
        hasInputs: Bool = true,
        hasLiveDownstreams: Bool = false,
        workerActive: Bool = false
    ) {
        self.status = status
        self.isPseudo = isPseudo
        self.hasInputs = hasInputs
        self.hasLiveDownstreams = hasLiveDownstreams
        self.workerActive = workerActive
    }
}

/// How a deleted Run leaves the store.
public enum RunDeletion: Sendable, Equatable {
    /// Becomes `invalidated`, keeping its assignments so the same combination never runs again.
    case tombstone
    /// Disappears (upload and import Runs, which have no inputs to block).
    case remove
}

/// Preconditions and effects of `abort`, `tearoff`, `retry` and `DELETE` on a Run. Each refusal is the
/// ``KnitAPIError`` the API answers with. An invalidated Run is a tombstone users never see, so every
/// operation on one is 404.
public enum RunOperation {
    public static let abortExit = RunExitJSON(code: 253, message: "aborted by user")
    public static let tearOffExit = RunExitJSON(code: 0, message: "stopped by user")

    /// `PUT /runs/{id}/abort`: to `aborting` with exit 253 from deactivated, waiting, ready, starting or
    /// running. Nil when the Run is already aborting (nothing to do, the answer is still 200).
    public static func abort(from status: RunStatus) throws(KnitAPIError) -> RunStatusChange? {
        switch status {
        case .aborting: return nil
        case .deactivated, .waiting, .ready, .starting, .running:
            return RunStatusChange(status: .aborting, exit: abortExit)
        case .invalidated: throw notFound
        case .completing, .done, .failed:
            throw prohibited("abort", status, allowed: "deactivated, waiting, ready, starting or running")
        }
    }

    /// `PUT /runs/{id}/tearoff`: to `completing` with exit 0 "stopped by user" from ready, starting or
    /// running; whatever was written so far becomes the output. Nil when already completing.
    public static func tearOff(from status: RunStatus) throws(KnitAPIError) -> RunStatusChange? {
        switch status {
        case .completing: return nil
        case .ready, .starting, .running: return RunStatusChange(status: .completing, exit: tearOffExit)
        case .invalidated: throw notFound
        case .deactivated, .waiting, .aborting, .done, .failed:
            throw prohibited("tear-off", status, allowed: "ready, starting or running")
        }
    }

    /// `PUT /runs/{id}/retry`: only a finished (done or failed) Run of an image plan, whose outputs no live
    /// Run consumes and that no worker touches any more. The Run then gets fresh output Data and `waiting`
    /// (even under an inactive plan, as in Knitfab).
    public static func checkRetry(_ facts: RunFacts) throws(KnitAPIError) {
        switch facts.status {
        case .invalidated: throw notFound
        case .done, .failed: break
        default:
            throw KnitAPIError.conflict(
                "the run has not finished yet",
                advice: "the run is \(facts.status.rawValue); stop it first (knit run stop [--fail])"
            )
        }
        if facts.isPseudo { throw KnitAPIError.conflict("Root run cannot be retried") }
        try checkNotInUse(facts)
    }

    /// `DELETE /runs/{id}`: only a finished (done or failed) Run whose outputs no live Run consumes. A Run
    /// with inputs becomes a tombstone; an upload or import Run is removed (deleting it deletes the Data).
    ///
    /// Knitfab lists waiting/deactivated as deletable but in practice refuses them (quirk 12); Knit refuses
    /// them openly and tells the user to abort first.
    public static func checkDelete(_ facts: RunFacts) throws(KnitAPIError) -> RunDeletion {
        switch facts.status {
        case .invalidated: throw notFound
        case .done, .failed: break
        default:
            throw KnitAPIError.conflict(
                "the run has not finished yet",
                advice: "the run is \(facts.status.rawValue); abort it first (knit run stop --fail)"
            )
        }
        try checkNotInUse(facts)
        return facts.hasInputs ? .tombstone : .remove
    }

    private static func checkNotInUse(_ facts: RunFacts) throws(KnitAPIError) {
        if facts.hasLiveDownstreams {
            throw KnitAPIError.conflict(
                "output of the run is in use",
                advice: "Delete all downstreams of the run first"
            )
        }
        if facts.workerActive {
            throw KnitAPIError.conflict("the run may not be finished", advice: "retry later")
        }
    }

    private static let notFound = KnitAPIError.notFound("run not found")

    private static func prohibited(_ operation: String, _ status: RunStatus, allowed: String) -> KnitAPIError {
        KnitAPIError.conflict(
            "prohibited operation",
            advice: "cannot \(operation) a \(status.rawValue) run; possible only while it is \(allowed)"
        )
    }
}
