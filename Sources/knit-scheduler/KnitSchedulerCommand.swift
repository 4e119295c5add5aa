import ArgumentParser
import KnitCore
import KnitDaemon
import KnitKubernetesExecutor
import KnitScheduler
import KnitStore
import KnitSystem
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// knit-scheduler: drives Runs from `waiting` to `done`/`failed` on the local container runtime (podman) or as
/// Jobs on a Kubernetes cluster. Wiring only; the lifecycle logic is KnitScheduler's RunDriver, the state is
/// KnitStore's, the cluster's setup KnitKubernetesExecutor's.
///
/// Threads: the main thread waits for signals (and collects garbage every 10 minutes meanwhile); the driver
/// runs on a thread of its own. A plain (not async) command, so that `run` is on the main thread, before any
/// other thread exists, when it blocks the stop signals.
@main
struct KnitSchedulerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "knit-scheduler",
        abstract: "Run Knit's Runs as podman containers on this machine or as Jobs on a Kubernetes cluster."
    )

    enum ExecutorKind: String, ExpressibleByArgument, CaseIterable {
        case podman, kubernetes
    }

    @Option(help: "Where Runs run: podman (containers on this machine) or kubernetes (Jobs on a cluster).")
    var executor: ExecutorKind = .podman

    @Option(
        help: ArgumentHelp(
            "kubernetes: the kubeconfig to use (its current context). Default: the pod's service-account "
                + "credentials, when the scheduler itself runs in the cluster.",
            valueName: "file"
        )
    )
    var kubeconfig: String?

    @Option(help: "kubernetes: the namespace of the Runs' Jobs. Default: the kubeconfig context's, else default.")
    var namespace: String?

    @Option(
        help: ArgumentHelp(
            "kubernetes: how the nodes reach the store's data directory: hostpath (the same path on every "
                + "node) or nfs://SERVER/EXPORT (EXPORT is the data directory exported by SERVER).",
            valueName: "hostpath|nfs://SERVER/EXPORT"
        )
    )
    var volumes: String = "hostpath"

    @Option(
        help: "kubernetes: the Jobs' imagePullPolicy: Always, or IfNotPresent/Never for images preloaded on nodes."
    )
    var imagePullPolicy: String = "Always"

    @Option(
        help: "kubernetes: seconds a pod may fail to pull its image before its Run fails 255 [ImageNotFound]."
    )
    var pullFailureGrace: Int = 60

    @Option(help: "Instance directory (the store knitd serves). Default: $KNIT_HOME or /var/lib/knit.")
    var home: String = KnitStore.defaultHome()

    @Option(help: "containers.conf for podman (Knit ships containers/containers.conf).")
    var containersConf: String?

    @Option(help: "Path of the podman binary. Default: found on PATH.")
    var podman: String?

    @Option(
        help: """
            podman's cgroup manager for Runs: cgroupfs (hosts without systemd) or systemd (installer/knit-up \
            chooses it when systemd runs the machine).
            """
    )
    var cgroupManager: String = "cgroupfs"

    @Option(help: "Label value telling this installation's containers apart from others on the host.")
    var instance: String = "knit"

    @Option(
        help: ArgumentHelp(
            "CPU budget in millicores for running Runs. Default: all cores (podman); none (kubernetes: the "
                + "cluster queues pods)."
        )
    )
    var cpuBudget: Int?

    @Option(
        help: "Memory budget in bytes for running Runs. Default: the machine's memory (podman); none (kubernetes)."
    )
    var memoryBudget: Int64?

    @Option(
        help: ArgumentHelp(
            "podman auth file (JSON, {\"auths\":{\"HOST:PORT\":{\"auth\":\"base64(user:token)\"}}}) used to pull "
                + "images named HOST:PORT/name:tag that are not in the local store.",
            valueName: "file"
        )
    )
    var registryAuthfile: String?

    @Option(
        help: ArgumentHelp(
            "Directory holding the registry's CA as ca.crt, for those pulls. Default: /etc/containers/certs.d/HOST:PORT.",
            valueName: "dir"
        )
    )
    var registryCertDir: String?

    @Option(help: "Upper bound in seconds for one image pull.")
    var pullTimeout: Int = 600

    @Option(
        help: ArgumentHelp(
            "kubernetes: seconds between looks at --registry-authfile for the pull Secret (tests shorten it).",
            visibility: .hidden
        )
    )
    var pullSecretCheckSeconds: Int = 60

    @Option(
        help: ArgumentHelp(
            "Lifecycle hooks: a YAML file with `before:` and `after:` lists of URLs (or Knitfab's "
                + "`hooks: {lifecycle-hooks: …}`). Default: HOME/scheduler/hooks.yaml when it exists.",
            valueName: "file"
        )
    )
    var hooks: String?

    @OptionGroup var daemon: DaemonOptions

    func validate() throws {
        if let cpuBudget, cpuBudget <= 0 { throw ValidationError("--cpu-budget must be positive") }
        if let memoryBudget, memoryBudget <= 0 { throw ValidationError("--memory-budget must be positive") }
        if pullTimeout <= 0 { throw ValidationError("--pull-timeout must be positive") }
        guard ["cgroupfs", "systemd"].contains(cgroupManager) else {
            throw ValidationError("--cgroup-manager must be cgroupfs or systemd, not '\(cgroupManager)'")
        }
        if pullFailureGrace < 1 || pullFailureGrace > 3600 {
            throw ValidationError("--pull-failure-grace must be between 1 and 3600 seconds")
        }
        if pullSecretCheckSeconds <= 0 || pullSecretCheckSeconds > 600 {
            throw ValidationError("--pull-secret-check-seconds must be between 1 and 600")
        }
        if let registryAuthfile, access(registryAuthfile, R_OK) != 0 {
            throw ValidationError("--registry-authfile \(registryAuthfile) is not readable")
        }
        if let registryCertDir, access(registryCertDir + "/ca.crt", R_OK) != 0 {
            throw ValidationError("--registry-cert-dir \(registryCertDir) holds no readable ca.crt")
        }
        switch executor {
        case .podman:
            let kubernetesOnly: [(String, Bool)] = [
                ("--kubeconfig", kubeconfig != nil), ("--namespace", namespace != nil),
                ("--volumes", volumes != "hostpath"), ("--image-pull-policy", imagePullPolicy != "Always"),
                ("--pull-failure-grace", pullFailureGrace != 60),
            ]
            for (flag, given) in kubernetesOnly where given {
                throw ValidationError("\(flag) needs --executor kubernetes")
            }
        case .kubernetes:
            let podmanOnly = [
                ("--podman", podman != nil), ("--containers-conf", containersConf != nil),
                ("--cgroup-manager", cgroupManager != "cgroupfs"),
            ]
            for (flag, given) in podmanOnly where given {
                throw ValidationError("\(flag) needs --executor podman")
            }
        }
    }

    func run() throws {
        daemon.bootstrapLogging()
        let logger = Logger(label: "knit-scheduler")
        // Before any other thread exists: they inherit the mask, and this thread alone takes the signals.
        let stopSignals = StopSignals.block()
        signal(SIGPIPE, SIG_IGN)

        let podmanPath: String?
        if executor == .podman {
            guard let found = podman ?? findExecutable("podman") else {
                logger.critical("podman not found; install it (apt-get install podman runc) or pass --podman")
                throw ExitCode(2)
            }
            podmanPath = found
        } else {
            podmanPath = nil
        }
        let store: KnitStore
        do { store = try KnitStore(home: home, logger: logger) } catch {
            logger.critical("cannot open the store", metadata: ["home": "\(home)", "error": "\(error)"])
            throw ExitCode(2)
        }
        defer { store.close() }
        let layout = store.layout
        let defaultHookFile = home + "/scheduler/hooks.yaml"
        let hookFile = hooks ?? (access(defaultHookFile, F_OK) == 0 ? defaultHookFile : nil)
        var hookConfiguration = LifecycleHookConfiguration()
        if let hookFile {
            do {
                hookConfiguration = try LifecycleHookConfiguration.parse(try readTextFile(hookFile), file: hookFile)
            } catch {
                logger.critical("cannot use the hooks file", metadata: ["error": "\(error)"])
                throw ExitCode(2)
            }
        }

        let runExecutor: any Executor
        let capacity: Capacity
        // Work the main thread does every minute (--pull-secret-check-seconds) between signals, beside the
        // 10-minute garbage collection.
        var upkeep: (() -> Void)?
        var described: Logger.Metadata = ["home": "\(home)", "executor": "\(executor.rawValue)"]
        if let podmanPath {
            runExecutor = PodmanExecutor(
                configuration: .init(
                    podmanPath: podmanPath,
                    containersConf: containersConf,
                    cgroupManager: cgroupManager,
                    instance: instance,
                    runDirectory: layout.executor,
                    registryAuthFile: registryAuthfile,
                    registryCertDirectory: registryCertDir,
                    pullTimeout: .seconds(pullTimeout)
                ),
                logger: logger
            )
            described["podman"] = "\(podmanPath)"
            let machine = Capacity.machine()
            capacity = Capacity(
                cpuMillis: cpuBudget ?? machine.cpuMillis,
                memoryBytes: memoryBudget ?? machine.memoryBytes
            )
        } else {
            let setup: KubernetesSetup
            do {
                setup = try KubernetesSetup(
                    kubeconfig: kubeconfig,
                    namespace: namespace,
                    volumes: volumes,
                    imagePullPolicy: imagePullPolicy,
                    pullFailureGrace: .seconds(pullFailureGrace),
                    instance: instance,
                    dataDirectory: layout.data,
                    registryAuthFile: registryAuthfile,
                    environment: processEnvironment()
                )
            } catch {
                logger.critical("cannot use the Kubernetes cluster", metadata: ["error": "\(error)"])
                throw ExitCode(2)
            }
            guard try waitForCluster(setup, stopSignals: stopSignals, logger: logger) else { return }
            runExecutor = setup.executor
            if let pullSecret = setup.pullSecret {
                // At start and then every minute: a rotated registry token reaches the cluster within a
                // minute, and a Secret deleted by hand comes back.
                Self.keep(pullSecret, logger: logger)
                upkeep = { Self.keep(pullSecret, logger: logger) }
                described["kubernetes.pull-secret"] = "\(pullSecret.name)"
            }
            described["kubernetes.server"] = "\(setup.server)"
            described["kubernetes.namespace"] = "\(setup.namespace)"
            // The cluster's own scheduler queues pods that do not fit its nodes (the Run waits as `starting`);
            // this host's cores and memory say nothing about the cluster's, so there is no budget unless given.
            capacity = Capacity(
                cpuMillis: cpuBudget ?? Capacity.unbounded.cpuMillis,
                memoryBytes: memoryBudget ?? Capacity.unbounded.memoryBytes
            )
        }
        // Directories of dropped Data that knitd could not delete (made by an older scheduler as root, or a
        // crash between the records and the deletion): root can.
        store.collectGarbage()
        var driverConfiguration = RunDriver.Configuration()
        if let owner = store.dataOwner() { driverConfiguration.outputOwner = (owner.uid, owner.gid) }
        driverConfiguration.storageDirectory = layout.data
        driverConfiguration.capacity = capacity
        // After hooks: every status change the driver makes writes its deliveries into the store's outbox in the
        // same transaction; the sender (a thread of its own) posts them. Deliveries an earlier configuration left
        // for a URL that is still configured go out; those for URLs taken out of it are dropped, with a warning.
        store.recordLifecycleEvents(for: hookConfiguration.after)
        do {
            for (url, count) in try store.discardLifecycleEvents(notFor: hookConfiguration.after) {
                logger.warning(
                    "after-hook deliveries dropped: the URL is no longer configured",
                    metadata: ["hook.url": "\(url)", "hook.events": "\(count)"]
                )
            }
        } catch {
            logger.error("cannot prune the hook outbox", metadata: ["error": "\(error)"])
        }
        let runHooks: (any RunHooks)? =
            hookConfiguration.before.isEmpty
            ? nil
            : HTTPRunHooks(urls: hookConfiguration.before, logger: logger) { runId in
                let detail: RunDetailJSON
                do {
                    detail = try store.runDetail(runId: runId)
                } catch let error as StoreError where error.code == .notFound {
                    return nil
                }
                return try KnitJSON.encode(detail)
            }
        if let hookFile {
            described["hooks.file"] = "\(hookFile)"
            described["hooks.before"] = "\(hookConfiguration.before.count)"
            described["hooks.after"] = "\(hookConfiguration.after.count)"
        }
        let driver = RunDriver(
            ledger: store,
            executor: runExecutor,
            configuration: driverConfiguration,
            hooks: runHooks,
            logger: logger
        )
        let sender = LifecycleHookSender(outbox: store, logger: logger).start()
        _ = mkdir(layout.run, 0o755)
        let wakeupPath = layout.schedulerSocket
        let wakeup: Wakeup?
        do {
            wakeup = try Wakeup(path: wakeupPath)
            // knitd (the instance's OS user) rings this socket: hand it to the group that owns the home.
            var homeInfo = stat()
            if stat(home, &homeInfo) == 0 { _ = chown(wakeupPath, uid_t.max, homeInfo.st_gid) }
        } catch {
            logger.warning("no wake-up socket; polling only", metadata: ["path": "\(wakeupPath)", "error": "\(error)"])
            wakeup = nil
        }
        described["cpu.millis"] = "\(capacity.cpuMillis)"
        described["memory.bytes"] = "\(capacity.memoryBytes)"
        logger.info("knit-scheduler running", metadata: described)
        let running = driver.start(wakeup: wakeup)
        // knitd cannot delete what an older scheduler left root-owned; such directories stay in `garbage` until
        // root collects them, so look again every 10 minutes rather than only at the next start.
        var received: Int32
        let interval = upkeep == nil ? 600 : pullSecretCheckSeconds
        var sinceGarbage = 0
        while true {
            if let signal = stopSignals.wait(seconds: interval) {
                received = signal
                break
            }
            sinceGarbage += interval
            if sinceGarbage >= 600 {
                store.collectGarbage()
                sinceGarbage = 0
            }
            upkeep?()
        }
        logger.info("stopping: finishing the tick in progress", metadata: ["signal": "\(received)"])
        running.stop()
        sender.stop()
        running.join()
        sender.join()
        logger.info("knit-scheduler stopped; running containers keep running and are adopted at the next start")
    }

    /// Makes the pull Secret match the auth file; a failure is logged and tried again at the next call.
    private static func keep(_ pullSecret: RegistryPullSecret, logger: Logger) {
        let secret = "\(pullSecret.namespace)/\(pullSecret.name)"
        do {
            let outcome = try pullSecret.sync()
            if outcome != .unchanged {
                logger.info("registry pull Secret written", metadata: ["secret": "\(secret)", "outcome": "\(outcome)"])
            }
        } catch {
            logger.error(
                "cannot keep the registry pull Secret up to date; trying again in a minute",
                metadata: ["secret": "\(secret)", "error": "\(error)"]
            )
        }
    }

    /// Asks the API server until it answers, as the podman path lives with a misbehaving runtime: the scheduler
    /// does not exit over something that may come back (the server restarting, the network), it says so in the
    /// log and tries again, 1 s after the first failure and at most every 30 s after. False when a stop signal
    /// came meanwhile. A missing namespace or refused credentials will not come back: exit 2.
    private func waitForCluster(_ setup: KubernetesSetup, stopSignals: StopSignals, logger: Logger) throws -> Bool {
        var delay = 1
        while true {
            let probe: KubernetesSetup.Probe
            do { probe = try setup.probe() } catch {
                logger.critical("cannot use the Kubernetes cluster", metadata: ["error": "\(error)"])
                throw ExitCode(2)
            }
            switch probe {
            case .ready:
                return true
            case .namespaceUnchecked(let reason):
                logger.warning(
                    "cannot read the namespace; whether it exists shows at the first Run",
                    metadata: ["kubernetes.namespace": "\(setup.namespace)", "error": "\(reason)"]
                )
                return true
            case .unreachable(let reason):
                logger.warning(
                    "the Kubernetes API server does not answer; trying again",
                    metadata: [
                        "kubernetes.server": "\(setup.server)", "error": "\(reason)",
                        "retry.seconds": "\(delay)",
                    ]
                )
                if stopSignals.wait(seconds: delay) != nil {
                    logger.info("stopped before the Kubernetes API server answered")
                    return false
                }
                delay = min(delay * 2, 30)
            }
        }
    }
}

/// A file's text; a missing or unreadable file is an error naming it.
private func readTextFile(_ path: String) throws -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileProblem(description: "\(path): cannot read: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw FileProblem(description: "\(path): cannot read: \(String(cString: strerror(errno)))")
        }
        if count == 0 { break }
        bytes += buffer[..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

private struct FileProblem: Error, CustomStringConvertible { let description: String }

/// The process environment, for in-cluster credentials (`KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT`).
private func processEnvironment() -> [String: String] {
    var environment: [String: String] = [:]
    var entry = environ
    while let pointer = entry.pointee {
        let text = String(cString: pointer)
        if let equals = text.firstIndex(of: "=") {
            environment[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        entry += 1
    }
    return environment
}
