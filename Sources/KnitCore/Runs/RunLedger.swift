/// What the scheduler's run driver needs from the store: KnitStore conforms (each method one LMDB transaction,
/// so the driver never sees a half-made change), the driver's tests use a dictionary. Here rather than beside
/// the driver so the store can conform without knowing the scheduler. The driver calls these from its one
/// thread, one at a time, and knitd may change the same Runs in between (abort, tear-off, plan deactivation).
///
/// The driver moves a Run ready → starting → running and then straight to done/failed through
/// ``finish(runId:exit:succeeded:writtenBytes:)``; it never leaves a Run in `completing` or `aborting`. So a
/// Run in one of those two states was put there by a user (tear-off or abort) and carries its
/// ``RunInFlight/stopRequest``.
public protocol RunLedger: Sendable {
    /// Runs that may start now, oldest first (FIFO by the time they became startable), at most
    /// `limit` of them: `ready` Runs, and `waiting` Runs of active plans (``markStarting(runId:)``
    /// takes those through `ready`). Everything a container needs is in each entry.
    func readyToStart(limit: Int) throws -> [ScheduledRun]

    /// `ready` (or `waiting`) → `starting`, creating the Run's output directories and its log's directory
    /// (empty; the ledger is their one creator). Returns false, changing nothing, when the Run is not
    /// startable any more (aborted, torn off, deactivated or deleted since ``readyToStart(limit:)``
    /// read it); the driver then does not start its container.
    func markStarting(runId: String) throws -> Bool

    /// `starting` → `running` once the container process runs. Returns false, changing nothing,
    /// when the Run is no longer `starting` (a user stop came in between; the next
    /// ``runsInFlight()`` reports it).
    func markRunning(runId: String) throws -> Bool

    /// Every Run in `starting`, `running`, `completing` or `aborting`, sorted by Run id, with the
    /// resources it holds and, for `aborting` (exit 253 "aborted by user") and `completing` (exit 0
    /// "stopped by user"), the user's stop request with the exit the API recorded. The driver reads it
    /// once per tick and takes from it the stops to honour, the containers to keep, the capacity held and
    /// the Runs to observe.
    func runsInFlight() throws -> [RunInFlight]

    /// Ends a Run in one transaction: records `exit`, writes `knit#timestamp` on its outputs and
    /// log, sets `done` (succeeded) or `failed`, and nominates the outputs of a done Run (which
    /// creates the next Runs of a chain). `writtenBytes`, by knitId of an output or the log, is what the
    /// Run wrote there (regular files, measured by the driver's check of the outputs); the ledger records it
    /// as those Data's sizes in the plan owner's usage. Returns false, changing nothing, when the Run is not
    /// in flight any more (finished already, or deleted): finishing happens at most once.
    func finish(runId: String, exit: RunExitJSON, succeeded: Bool, writtenBytes: [String: Int64]) throws -> Bool

    /// Where a Run's container wrote: its output directories and log file. The driver checks and cleans
    /// them (its output sanitiser) before it finishes the Run. Nil for a Run the ledger does not know.
    func outputs(runId: String) throws -> RunOutputs?

    /// Records why a `starting` Run's worker cannot start yet (the executor's `pending(reason:)`), or
    /// nil when it no longer waits; the store shows it on the Run until its status changes. Returns false
    /// when the Run is not `starting`.
    func markWaiting(runId: String, reason: String?) throws -> Bool

    /// Records why a lifecycle before hook keeps a `waiting`, `ready`, `starting` or `running` Run where it is
    /// (nil: no longer); the store shows it as the Run's `waitingFor` until the Run's status changes. Returns
    /// false when the Run is in none of those statuses.
    func markHeld(runId: String, reason: String?) throws -> Bool
}

extension RunLedger {
    /// A ledger that cannot show why a Run waits keeps it `starting` all the same.
    public func markWaiting(runId: String, reason: String?) throws -> Bool { false }

    /// A ledger that cannot show why a hook holds a Run back holds it all the same.
    public func markHeld(runId: String, reason: String?) throws -> Bool { false }
}
