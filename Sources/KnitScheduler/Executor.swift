public import KnitCore

/// Runs the worker of one Run (a container, a Kubernetes Job's pod…) and reports what happened to it. The
/// ``RunDriver`` owns the Run's state machine and Knitfab's exit-code policy (252-255); an executor only
/// turns "is the image there?", "start this", "how are they?", "stop it", "forget it" into actions on its
/// runtime, and reports raw facts (exit code, OOM kill) plus a message for humans. It never touches the
/// store, and the driver never names a runtime: everything runtime-specific is behind these methods.
///
/// Every worker is findable by its Run id alone (a name or label derived from it), so a restarted
/// scheduler reconciles through ``list()`` and ``observe(runIds:)`` with no state of its own: an executor
/// may remember things between calls only as hints whose loss costs precision, never correctness.
///
/// The driver calls these methods from one task, one at a time, in this order for a Run:
/// ``prepare(image:)`` until it answers `.ready`, then (after the ledger marked the Run `starting`)
/// ``start(_:)``, ``observe(runIds:)`` every tick until `.exited` or `.notFound`, perhaps ``stop(runId:grace:)``
/// (a user's stop request), and ``cleanup(runId:)`` once the ledger has finished the Run. ``list()`` runs on
/// the first tick and then now and then, to remove workers whose Run is no longer in flight.
public protocol Executor: Sendable {
    /// How messages name the Run's worker: `(container <name>) [Reason] …` in a failed Run's exit. Pure
    /// (no runtime call) and the same for a Run id every time: podman's container name, a Job's name.
    func workerName(runId: String) -> String

    /// Whether a Run of `image` can be started now. Never fails and never waits for a download: an
    /// executor that has to fetch the image does so in the background and answers `.pending` meanwhile
    /// (the driver passes the Run over without holding capacity and asks again next tick), so one slow
    /// download never holds up the Runs that could start. `.failed` carries why the image cannot be had,
    /// said once per failed attempt; the driver then ends the Run failed 255 `[ImageNotFound]`. An
    /// executor whose runtime fetches images itself (a kubelet) answers `.ready`.
    func prepare(image: String) async -> ImagePreparation

    /// Creates and starts the Run's worker, detached, and returns once its process runs (or has already
    /// finished; or, for an executor that ``startsBeforeRunning``, once the worker exists); it does not wait
    /// for it to exit. The ledger has marked the Run `starting` and created its
    /// output directories (empty) and its log's directory. From the start on, the process's stdout and
    /// stderr are appended to ``RunLaunch/logPath`` as they are written, and the file holds all of them by
    /// the time ``observe(runIds:)`` reports `.exited` (an executor whose runtime keeps logs elsewhere
    /// copies them before it says so).
    ///
    /// #### Errors
    /// ``ExecutorError`` with code `imageNotFound`, `invalidLaunch` or `startFailed`: nothing is left behind
    /// and the driver fails the Run with exit 255. `alreadyExists`: a worker of this Run id exists (left
    /// over from an earlier attempt); the driver cleans it up and starts once more. `commandFailed` or
    /// `timedOut`: the runtime itself misbehaved, or the worker exists but does not run yet (a pod no node
    /// can take); the Run stays `starting` and the next tick observes it.
    func start(_ launch: RunLaunch) async throws -> Void

    /// What the workers of several Runs are doing now; every id gets an answer (`.notFound` when it has no
    /// worker). Called every tick for every Run in flight, so it should be one round trip (or a watch's
    /// cache). Throws only when the runtime cannot answer at all; the driver then leaves every Run as is.
    func observe(runIds: [String]) async throws -> [String: ExecutorObservation]

    /// What one Run's worker is doing now, as ``observe(runIds:)``.
    func observe(runId: String) async throws -> ExecutorObservation

    /// Asks the worker to stop (SIGTERM), kills it after `grace`, and returns once it has exited; a later
    /// ``observe(runIds:)`` says `.exited` or `.notFound`. A Run without a worker is not an error, and a
    /// second call changes nothing more.
    func stop(runId: String, grace: Duration) async throws -> Void

    /// Removes the Run's worker (killing it if it still runs) and whatever the executor keeps for it. A Run
    /// without a worker is not an error. Never touches the output directories or the log file: they are
    /// the store's Data.
    func cleanup(runId: String) async throws -> Void

    /// Run ids of every worker of this executor (this installation's, not another's on the same host or
    /// cluster), running or not, sorted.
    func list() async throws -> [String]

    /// Whether the launch's ``ScheduledRun/onNode`` and ``ScheduledRun/serviceAccount`` reach the worker (a
    /// cluster's node placement and pod identity). False (the default) for a local runtime: the driver then
    /// logs that the plan's settings were ignored.
    var honoursPlacement: Bool { get }

    /// Whether ``start(_:)`` returns once the worker is created, before its process runs (a cluster's Job,
    /// whose pod the cluster schedules, pulls and starts in its own time). The driver then keeps the Run
    /// `starting` and marks it `running` when ``observe(runIds:)`` first says so, and goes on starting the next
    /// Runs meanwhile instead of waiting for each. False (the default): start returns once the process runs.
    var startsBeforeRunning: Bool { get }
}

extension Executor {
    public var honoursPlacement: Bool { false }

    public var startsBeforeRunning: Bool { false }

    /// Executors that do not fetch images: every image is as ready as it will ever be.
    public func prepare(image: String) async -> ImagePreparation { .ready }

    /// One ``observe(runId:)`` after the other, for executors without a batch query.
    public func observe(runIds: [String]) async throws -> [String: ExecutorObservation] {
        var seen: [String: ExecutorObservation] = [:]
        for runId in runIds { seen[runId] = try await observe(runId: runId) }
        return seen
    }
}

/// Everything needed to start one Run's worker: the Run as the store scheduled it, and what the driver adds.
///
/// Its fields are the ``ScheduledRun``'s (`launch.image`, `launch.inputs`, …), read through, so the hand-off
/// from the store reaches the executor without a copy of each field. For the executor:
/// * `runId` names and labels the worker (``Executor/workerName(runId:)``), so ``Executor/list()`` and
///   ``Executor/observe(runIds:)`` find it after a restart;
/// * `image` is ready by ``Executor/prepare(image:)``; a non-empty `entrypoint` or `args` replaces the
///   image's ENTRYPOINT or CMD;
/// * `inputs` are mounted read-only (each host path exists), `outputs` read-write (each an existing, empty
///   directory);
/// * `logPath` receives stdout and stderr merged in the order written, growing while the worker runs
///   (appended to when it exists); nil discards them;
/// * `cpuMillis` and `memoryBytes` (swap included) are limits; nil is none;
/// * `onNode` and `serviceAccount` place the Run on a cluster (``Executor/honoursPlacement``); a local
///   executor ignores them.
@dynamicMemberLookup
public struct RunLaunch: Sendable, Equatable {
    public var run: ScheduledRun
    /// Extra environment variables of the container process.
    public var environment: [String: String]

    public init(_ run: ScheduledRun, environment: [String: String] = [:]) {
        self.run = run
        self.environment = environment
    }

    public subscript<Value>(dynamicMember field: WritableKeyPath<ScheduledRun, Value>) -> Value {
        get { run[keyPath: field] }
        set { run[keyPath: field] = newValue }
    }
}

/// Whether an image can be used to start a Run now.
public enum ImagePreparation: Sendable, Equatable {
    case ready
    /// Being fetched; ask again later.
    case pending
    /// Cannot be had: the runtime's reason.
    case failed(String)
}

/// One look at a Run's container.
public enum ExecutorObservation: Sendable, Equatable {
    /// There is no container for the Run (never started, or cleaned up).
    case notFound
    /// The container exists but its process has not started yet.
    case starting
    /// The worker exists but cannot start for a reason outside the Run that may pass, e.g. a pod no node
    /// can take now (`Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.`). The Run stays
    /// `starting`; the driver records `reason` on it for `knit run show`.
    case pending(reason: String)
    /// The container process runs (or is paused, or being stopped).
    case running
    /// The container process ended. `code` is its exit status (128 + signal when killed);
    /// `oomKilled` says the kernel killed it for exceeding its memory limit; `message` is for
    /// humans, e.g. "exited with code 3" or "OOMKilled: exceeded its memory limit of 32 MiB".
    case exited(code: Int32, oomKilled: Bool, message: String)
}

/// A failure of an ``Executor`` operation: ``code`` says what kind, ``message`` names the Run,
/// image or path and carries the runtime's own words.
public struct ExecutorError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Kind: Sendable, Hashable {
            case imageNotFound, alreadyExists, invalidLaunch, startFailed, commandFailed, timedOut
        }
        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// The image is not in the local image store (podman exit 125 "image not known").
        public static let imageNotFound = Code(.imageNotFound)
        /// The Run already has a container (a second start, or one left from before a restart).
        public static let alreadyExists = Code(.alreadyExists)
        /// The launch itself is unusable: a missing input, a non-empty output, a bad path, or a
        /// Run id that cannot name a container (any operation).
        public static let invalidLaunch = Code(.invalidLaunch)
        /// The runtime could not start the process (entrypoint missing → 127, not executable →
        /// 126, other runtime errors → 125); ``ExecutorError/exitCode`` has that status.
        public static let startFailed = Code(.startFailed)
        /// A runtime command failed for a reason unrelated to the Run (storage, permissions…).
        public static let commandFailed = Code(.commandFailed)
        /// A runtime command did not finish in time and was killed.
        public static let timedOut = Code(.timedOut)

        public var description: String { "\(kind)" }
    }

    public var code: Code
    public var message: String
    /// Exit status of the failed runtime command, when there was one.
    public var exitCode: Int32?

    public init(_ code: Code, _ message: String, exitCode: Int32? = nil) {
        self.code = code
        self.message = message
        self.exitCode = exitCode
    }

    public var description: String { message }
}
