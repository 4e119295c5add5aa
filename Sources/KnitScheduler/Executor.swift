/// Runs the container of one Run and reports what happened to it. The scheduler owns the Run's
/// state machine; an executor only turns "start this", "how is it?", "stop it", "forget it" into
/// actions on a container runtime, reports raw facts (exit code, OOM) plus a human message, and
/// leaves Knitfab's exit-code policy (253, 254, 255…) to the caller.
///
/// Every container is findable by its Run id alone, so a restarted scheduler can reconcile with
/// ``list()`` and ``observe(runId:)`` without any state of its own.
public protocol Executor: Sendable {
    /// Creates and starts the Run's container, detached. Returns once the container process
    /// runs (or has already finished); it does not wait for it to exit.
    ///
    /// #### Errors
    /// ``ExecutorError`` with code `imageNotFound`, `alreadyExists`, `invalidLaunch` or
    /// `startFailed` (nothing is left behind, except for `alreadyExists`); `commandFailed` or
    /// `timedOut` when the runtime itself misbehaves.
    func start(_ launch: RunLaunch) async throws -> Void

    /// What the Run's container is doing now.
    func observe(runId: String) async throws -> ExecutorObservation

    /// What the containers of several Runs are doing now, in one round trip where the runtime allows
    /// it; every id gets an answer (`.notFound` when it has no container).
    func observe(runIds: [String]) async throws -> [String: ExecutorObservation]

    /// Whether a Run of `image` can be started now. An executor that has to fetch the image does so in
    /// the background and answers `.pending` meanwhile, so one slow download never holds up the Runs
    /// that could start; `.failed` carries why the image cannot be had (said once per failed attempt).
    func prepare(image: String) async -> ImagePreparation

    /// Asks the container to stop (SIGTERM), kills it after `grace`, and returns once it has
    /// exited. A Run without a container is not an error.
    func stop(runId: String, grace: Duration) async throws -> Void

    /// Removes the Run's container (killing it if it still runs). A Run without a container is
    /// not an error. The log file stays where ``RunLaunch/logPath`` put it.
    func cleanup(runId: String) async throws -> Void

    /// Run ids of every container of this executor, running or not, sorted.
    func list() async throws -> [String]
}

extension Executor {
    /// Executors that do not fetch images: every image is as ready as it will ever be.
    public func prepare(image: String) async -> ImagePreparation { .ready }

    /// One ``observe(runId:)`` after the other, for executors without a batch query.
    public func observe(runIds: [String]) async throws -> [String: ExecutorObservation] {
        var seen: [String: ExecutorObservation] = [:]
        for runId in runIds { seen[runId] = try await observe(runId: runId) }
        return seen
    }
}

/// Everything needed to start one Run's container.
public struct RunLaunch: Sendable, Equatable {
    /// A host directory (or file) bound into the container.
    public struct Mount: Sendable, Hashable {
        public var hostPath: String
        public var containerPath: String

        public init(hostPath: String, containerPath: String) {
            self.hostPath = hostPath
            self.containerPath = containerPath
        }
    }

    /// Names the container (`knit-run-<runId>`) and labels it (`knit.run=<runId>`).
    public var runId: String
    /// `[host[:port]/]name:tag`: from the runtime's local image store, or pulled from its registry when the
    /// name has a registry host part and the local store lacks it (see ``PodmanExecutor``).
    public var image: String
    /// Replaces the image's ENTRYPOINT when non-nil and non-empty.
    public var entrypoint: [String]?
    /// Replaces the image's CMD when non-nil and non-empty (an empty list keeps the image's CMD).
    public var args: [String]?
    /// Mounted read-only; each host path must exist.
    public var inputs: [Mount]
    /// Mounted read-write; each host path must be an existing, empty directory.
    public var outputs: [Mount]
    /// Host file that receives the container's stdout and stderr, merged in the order written,
    /// growing while the container runs (appended to when it exists). `nil` discards the output.
    public var logPath: String?
    /// CPU limit in thousandths of a core (Kubernetes `500m` → 500); `nil` = unlimited.
    public var cpuMillis: Int?
    /// Memory limit (swap included) in bytes; `nil` = unlimited.
    public var memoryBytes: Int64?
    /// Extra environment variables of the container process.
    public var environment: [String: String]

    public init(
        runId: String,
        image: String,
        entrypoint: [String]? = nil,
        args: [String]? = nil,
        inputs: [Mount] = [],
        outputs: [Mount] = [],
        logPath: String? = nil,
        cpuMillis: Int? = nil,
        memoryBytes: Int64? = nil,
        environment: [String: String] = [:]
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
        self.environment = environment
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
