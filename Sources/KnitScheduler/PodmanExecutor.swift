internal import Glibc
internal import KnitCore
internal import KnitSystem
public import Logging
internal import Synchronization

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// The local ``Executor``: one podman container per Run, driven through the `podman` binary.
///
/// Containers are started detached (`podman run -d`) with `--log-driver passthrough` and with
/// podman's own stdout and stderr pointing at the Run's log file, so the container process
/// inherits that one open file as both its stdout and stderr. That gives what the log Data
/// needs and the other drivers do not: stdout and stderr merged in exactly the order written
/// (one shared file offset, no copier in between), plain text (k8s-file prefixes every line
/// with a timestamp and stream and splits long lines), readable and followable while the
/// container runs, and independent of this process (nothing to pump, nothing lost when the
/// scheduler restarts). The cost: `podman logs` shows nothing, and podman's own error text for a
/// failed start lands in that file too — ``start(_:)`` moves it into the thrown error and
/// truncates the log back.
///
/// Facts about podman 4.3 with runc on a cgroup v1 host, measured on Debian 12, that shape this type:
/// * `State.OOMKilled` is never set, although conmon notices the kill: it drops an empty file
///   named `oom` into its working directory, which is the directory podman was started in. So
///   each Run's `podman run` starts in its own directory under
///   ``Configuration/runDirectory``, and that file is the OOM evidence (it outlives the cgroup
///   and this process). Backups: the memory cgroup's `oom_kill` counter, sampled whenever a
///   limited container is seen running, and "exit 137 with a memory limit, not stopped by this
///   executor".
/// * `podman run --timeout` ends with exit -1, so timeouts are the caller's `stop(runId:grace:)`.
/// * a missing image with `--pull=never` is exit 125 "image not known".
///
/// Images: `podman run` never pulls (`--pull=never`), so a Run uses what the local store holds
/// (`podman load`, `knit image load` through the registry, a local build). A name with a registry
/// host part (`host:port/name:tag`, a host with a dot, not podman's own `localhost/` prefix) is
/// fetched by ``prepare(image:)`` before the Run starts, in a background task, with
/// ``Configuration/registryAuthFile`` and ``Configuration/registryCertDirectory``, bounded by
/// ``Configuration/pullTimeout``, so a long pull holds up no other Run. Should the image vanish
/// from the store later, `start` pulls it once itself on "image not known"; a failed pull ends
/// the Run as image-not-found with podman's reason.
public final class PodmanExecutor: Executor {
    public struct Configuration: Sendable {
        /// Absolute path of the podman binary (see `findExecutable(_:onPath:)` in KnitSystem).
        public var podmanPath: String
        /// A containers.conf given to podman as `CONTAINERS_CONF` (Knit ships
        /// `containers/containers.conf`); nil keeps whatever the environment says.
        public var containersConf: String?
        public var runtime: String
        public var cgroupManager: String
        /// `--network` of every container; "none" unless a deployment decides otherwise.
        public var network: String
        /// Value of the `knit.executor` label: one host can serve several Knit installations
        /// (or test runs), and ``PodmanExecutor/list()`` sees only its own.
        public var instance: String
        /// Upper bound for one quick podman command (inspect, rm, ps).
        public var commandTimeout: Duration
        /// Upper bound for `podman run -d` (image layers may need mounting the first time).
        public var startTimeout: Duration
        /// Working directories of the podman commands: one subdirectory per Run (where conmon
        /// leaves its `oom` marker), removed by ``PodmanExecutor/cleanup(runId:)``. Must survive
        /// a scheduler restart; `KNIT_HOME/executor` is the natural place.
        public var runDirectory: String
        /// `podman pull --authfile`: credentials for Knit's registry (`{"auths":{"HOST:PORT":
        /// {"auth":"base64(user:token)"}}}`); nil lets podman use its default auth file.
        public var registryAuthFile: String?
        /// `podman pull --cert-dir`: a directory holding the registry's CA as `ca.crt`; nil lets
        /// podman use /etc/containers/certs.d/HOST:PORT/.
        public var registryCertDirectory: String?
        /// Upper bound for one `podman pull` (layers can be GiBs).
        public var pullTimeout: Duration

        public init(
            podmanPath: String,
            containersConf: String? = nil,
            runtime: String = "runc",
            cgroupManager: String = "cgroupfs",
            network: String = "none",
            instance: String = "knit",
            commandTimeout: Duration = .seconds(30),
            startTimeout: Duration = .seconds(120),
            runDirectory: String? = nil,
            registryAuthFile: String? = nil,
            registryCertDirectory: String? = nil,
            pullTimeout: Duration = .seconds(600)
        ) {
            self.podmanPath = podmanPath
            self.containersConf = containersConf
            self.runtime = runtime
            self.cgroupManager = cgroupManager
            self.network = network
            self.instance = instance
            self.commandTimeout = commandTimeout
            self.startTimeout = startTimeout
            self.runDirectory = runDirectory ?? "/tmp/knit-executor-\(instance)"
            self.registryAuthFile = registryAuthFile
            self.registryCertDirectory = registryCertDirectory
            self.pullTimeout = pullTimeout
        }
    }

    /// What this process remembers about a Run between calls. Losing it (a restart) only
    /// weakens OOM inference for containers this process stopped.
    struct RunMemory {
        var oomKills = 0
        var stoppedByExecutor = false
    }

    public let configuration: Configuration
    private let environment: [String]
    let logger: Logger
    let runs = Mutex<[String: RunMemory]>([:])
    /// Registry images known to be in the local store, and pulls in flight or just failed, by image.
    private let images = Mutex<ImageStates>(ImageStates())

    private struct ImageStates {
        var present: Set<String> = []
        var pulling: Set<String> = []
        var failed: [String: String] = [:]
    }

    public init(configuration: Configuration, logger: Logger = Logger(label: "knit.executor.podman")) {
        self.configuration = configuration
        self.logger = logger
        var environment: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if !(configuration.containersConf != nil && text.hasPrefix("CONTAINERS_CONF=")) {
                environment.append(text)
            }
            entry += 1
        }
        if let conf = configuration.containersConf { environment.append("CONTAINERS_CONF=\(conf)") }
        self.environment = environment
    }

    /// The container name of a Run.
    public static func containerName(runId: String) -> String { RunConfinement.workerName(runId: runId) }

    public func workerName(runId: String) -> String { Self.containerName(runId: runId) }

    // MARK: - Executor

    public func start(_ launch: RunLaunch) async throws {
        try Self.validate(launch)
        let name = Self.containerName(runId: launch.runId)
        // Caught here, a second start never reaches podman, whose complaint would land in the
        // log file the first container is writing.
        guard runs.withLock({ $0[launch.runId] }) == nil else {
            throw ExecutorError(.alreadyExists, "run \(launch.runId): container \(name) was started already")
        }
        let arguments = try runArguments(for: launch)
        let directory = try prepareRunDirectory(runId: launch.runId)

        var result = try await runDetached(arguments, launch: launch, directory: directory)
        var pullFailure: String?
        if result.status != 0, Self.podmanError(result.stderr).contains("image not known"),
            Self.registryHost(of: launch.image) != nil
        {
            pullFailure = await pull(launch)
            if pullFailure == nil {
                images.withLock { _ = $0.present.insert(launch.image) }
                result = try await runDetached(arguments, launch: launch, directory: directory)
            }
        }
        guard result.status != 0 else {
            runs.withLock { $0[launch.runId] = RunMemory() }
            logger.debug(
                "container started",
                metadata: ["run.id": "\(launch.runId)", "container.image": "\(launch.image)"]
            )
            return
        }

        let detail = Self.podmanError(result.stderr)
        if detail.contains("already in use") {
            throw ExecutorError(
                .alreadyExists,
                "run \(launch.runId): container \(name) exists already: \(detail)",
                exitCode: result.status
            )
        }
        // 126/127 leave a created container behind; the name must be free for a retry.
        _ = try? await podman(
            ["rm", "--force", "--ignore", "--time", "0", name],
            timeout: configuration.commandTimeout
        )
        try? FileManager.default.removeItem(atPath: directory)
        if let pullFailure {
            throw ExecutorError(
                .imageNotFound,
                "run \(launch.runId): image \(launch.image) is not in the local image store and pulling it "
                    + "failed: \(pullFailure)",
                exitCode: result.status
            )
        }
        if detail.contains("image not known") {
            throw ExecutorError(
                .imageNotFound,
                "run \(launch.runId): image \(launch.image) is not in the local image store "
                    + "(load or build it first; only names with a registry host are pulled): \(detail)",
                exitCode: result.status
            )
        }
        throw ExecutorError(
            .startFailed,
            "run \(launch.runId): cannot start image \(launch.image) (podman exit \(result.status)): \(detail)",
            exitCode: result.status
        )
    }

    public func stop(runId: String, grace: Duration) async throws {
        try Self.checkRunId(runId)
        let name = Self.containerName(runId: runId)
        runs.withLock { $0[runId, default: RunMemory()].stoppedByExecutor = true }
        let seconds = max(0, grace.components.seconds + (grace.components.attoseconds > 0 ? 1 : 0))
        do {
            let result = try await podman(
                ["stop", "--ignore", "--time", "\(seconds)", name],
                timeout: .seconds(seconds) + configuration.commandTimeout
            )
            if result.status == 0 || result.stderr.contains("no such container") { return }
            logger.info(
                "container did not stop, killing it",
                metadata: ["run.id": "\(runId)", "podman.error": "\(Self.podmanError(result.stderr))"]
            )
        } catch let error as ExecutorError where error.code == .timedOut {
            logger.info("container did not stop, killing it", metadata: ["run.id": "\(runId)"])
        }
        let killed = try await podman(["kill", "--signal", "KILL", name], timeout: configuration.commandTimeout)
        if killed.status != 0 && !killed.stderr.contains("no such container") {
            // "not running" is the only other benign answer: it exited meanwhile.
            if !killed.stderr.contains("not running") { throw commandError("kill", runId: runId, killed) }
        }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: configuration.commandTimeout)
        while clock.now < deadline {
            switch try await observe(runId: runId) {
            case .exited, .notFound: return
            case .starting, .pending, .running: try await Task.sleep(for: .milliseconds(50))
            }
        }
        throw ExecutorError(.timedOut, "run \(runId): container \(name) still runs after SIGKILL")
    }

    public func cleanup(runId: String) async throws {
        try Self.checkRunId(runId)
        let name = Self.containerName(runId: runId)
        let result = try await podman(
            ["rm", "--force", "--ignore", "--time", "0", name],
            timeout: configuration.commandTimeout
        )
        guard result.status == 0 || result.stderr.contains("no such container") else {
            throw commandError("rm", runId: runId, result)
        }
        runs.withLock { _ = $0.removeValue(forKey: runId) }
        try? FileManager.default.removeItem(atPath: runDirectory(runId: runId))
        logger.debug("container removed", metadata: ["run.id": "\(runId)"])
    }

    // MARK: - Helpers

    /// `podman run --detach …` with podman's output in the Run's log file (when it has one); on
    /// failure podman's complaint is moved from the log file into the result's stderr.
    private func runDetached(_ arguments: [String], launch: RunLaunch, directory: String) async throws
        -> CommandOutput
    {
        guard let logPath = launch.logPath else {
            return try await podman(arguments, directory: directory, timeout: configuration.startTimeout)
        }
        // Read-write only so a failed start can take podman's complaint back out of the file.
        let fd = open(logPath, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw ExecutorError(
                .invalidLaunch,
                "run \(launch.runId): cannot open log file \(logPath): \(Errno.current)"
            )
        }
        defer { close(fd) }
        let offset = lseek(fd, 0, SEEK_END)
        var output = try await podman(
            arguments,
            output: .descriptor(fd),
            directory: directory,
            timeout: configuration.startTimeout
        )
        if output.status != 0 {
            output.stderr = readAll(fd, from: Int(offset))
            // The container never ran, so only podman wrote there: take that back out. Not
            // when the name is taken, though: that container may be writing this very file.
            if !output.stderr.contains("already in use") { _ = ftruncate(fd, offset) }
        }
        return output
    }

    /// A registry image not in the local store is pulled in a background task; until it is there the
    /// answer is `.pending`, and a failed pull is answered `.failed` once (the next ask pulls again).
    /// Names without a registry host are `.ready`: they are never pulled, and a missing one fails the
    /// start with ImageNotFound. One `podman image exists` per registry image per process, at most.
    public func prepare(image: String) async -> ImagePreparation {
        guard Self.registryHost(of: image) != nil else { return .ready }
        let known: ImagePreparation? = images.withLock { state in
            if state.present.contains(image) { return .ready }
            if state.pulling.contains(image) { return .pending }
            if let reason = state.failed.removeValue(forKey: image) { return .failed(reason) }
            return nil
        }
        if let known { return known }
        if let exists = try? await podman(["image", "exists", image], timeout: configuration.commandTimeout),
            exists.status == 0
        {
            images.withLock { _ = $0.present.insert(image) }
            return .ready
        }
        let first = images.withLock { $0.pulling.insert(image).inserted }
        guard first else { return .pending }
        Task {
            let failure = await pull(image: image, runId: nil)
            images.withLock { state in
                state.pulling.remove(image)
                if let failure { state.failed[image] = failure } else { state.present.insert(image) }
            }
        }
        return .pending
    }

    /// Pulls the Run's image from its registry; nil when it worked, else why not (podman's
    /// message, or the timeout).
    private func pull(_ launch: RunLaunch) async -> String? {
        await pull(image: launch.image, runId: launch.runId)
    }

    private func pull(image: String, runId: String?) async -> String? {
        var arguments = ["pull", "--quiet"]
        if let file = configuration.registryAuthFile { arguments += ["--authfile", file] }
        if let directory = configuration.registryCertDirectory { arguments += ["--cert-dir", directory] }
        arguments.append(image)
        let clock = ContinuousClock()
        let started = clock.now
        do {
            let result = try await podman(arguments, timeout: configuration.pullTimeout)
            guard result.status == 0 else {
                logger.info(
                    "image pull failed",
                    metadata: ["run.id": "\(runId ?? "-")", "container.image": "\(image)"]
                )
                return Self.podmanError(result.stderr)
            }
            logger.info(
                "image pulled",
                metadata: [
                    "run.id": "\(runId ?? "-")", "container.image": "\(image)",
                    "pull.seconds": "\((clock.now - started).components.seconds)",
                ]
            )
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// The registry part of an image reference (`host:port` or `registry.example.org`), or nil
    /// when the name has none or names podman's local namespace (`localhost/…`). Follows the
    /// docker reference rule: the first component is a host when it contains `.` or `:`.
    static func registryHost(of image: String) -> String? {
        guard let slash = image.firstIndex(of: "/") else { return nil }
        let first = image[..<slash]
        guard first.contains(".") || first.contains(":") else { return nil }
        return String(first)
    }

    func podman(
        _ arguments: [String],
        output: ChildOutput = .capture,
        directory: String? = nil,
        timeout: Duration
    ) async throws -> CommandOutput {
        let argv =
            [
                configuration.podmanPath, "--runtime", configuration.runtime, "--cgroup-manager",
                configuration.cgroupManager,
            ]
            + arguments
        let directory = try directory ?? prepareRunDirectory(runId: nil)
        return try await runChild(
            argv,
            environment: environment,
            directory: directory,
            output: output,
            timeout: timeout
        )
    }

    func runDirectory(runId: String) -> String {
        configuration.runDirectory + "/" + runId
    }

    /// Creates (if needed) the working directory of a Run's podman commands, or the base
    /// directory for commands about no Run in particular. A stale `oom` marker cannot be there:
    /// cleanup removes the directory, and without a cleanup the start fails (name in use).
    private func prepareRunDirectory(runId: String?) throws -> String {
        let path = runId.map(runDirectory(runId:)) ?? configuration.runDirectory
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw ExecutorError(.commandFailed, "cannot create the executor's directory \(path): \(error)")
        }
        return path
    }

    func commandError(_ verb: String, runId: String?, _ result: CommandOutput) -> ExecutorError {
        let subject = runId.map { "run \($0): " } ?? ""
        return ExecutorError(
            .commandFailed,
            "\(subject)podman \(verb) failed (exit \(result.status)): \(Self.podmanError(result.stderr))",
            exitCode: result.status
        )
    }

    /// podman's complaint without log noise: its `Error:` lines, else all of its output.
    static func podmanError(_ text: String) -> String {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        let lines = text.split(separator: "\n").map { line in
            String(String(line.drop(while: isBlank).reversed().drop(while: isBlank)).reversed())
        }
        let errors = lines.filter { $0.hasPrefix("Error: ") }.map { String($0.dropFirst("Error: ".count)) }
        let chosen = errors.isEmpty ? lines.filter { !$0.isEmpty } : errors
        return chosen.isEmpty ? "(no output)" : chosen.joined(separator: "; ")
    }
}
