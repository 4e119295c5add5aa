import ArgumentParser
import KnitCore
import KnitDaemon
import KnitScheduler
import KnitStore
import KnitSystem
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// knit-scheduler: drives Runs from `waiting` to `done`/`failed` on the local container runtime.
/// Wiring only; the lifecycle logic is KnitScheduler's RunDriver, the state is KnitStore's.
///
/// Threads: the main thread waits for signals (and collects garbage every 10 minutes meanwhile); the driver
/// runs on a thread of its own. A plain (not async) command, so that `run` is on the main thread, before any
/// other thread exists, when it blocks the stop signals.
@main
struct KnitSchedulerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "knit-scheduler",
        abstract: "Run Knit's Runs as podman containers on this machine."
    )

    @Option(help: "Instance directory (the store knitd serves). Default: $KNIT_HOME or /var/lib/knit.")
    var home: String = KnitStore.defaultHome()

    @Option(help: "containers.conf for podman (Knit ships containers/containers.conf).")
    var containersConf: String?

    @Option(help: "Path of the podman binary. Default: found on PATH.")
    var podman: String?

    @Option(help: "Label value telling this installation's containers apart from others on the host.")
    var instance: String = "knit"

    @Option(help: "CPU budget in millicores for running containers. Default: all cores.")
    var cpuBudget: Int?

    @Option(help: "Memory budget in bytes for running containers. Default: the machine's memory.")
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

    @OptionGroup var daemon: DaemonOptions

    func validate() throws {
        if let cpuBudget, cpuBudget <= 0 { throw ValidationError("--cpu-budget must be positive") }
        if let memoryBudget, memoryBudget <= 0 { throw ValidationError("--memory-budget must be positive") }
        if pullTimeout <= 0 { throw ValidationError("--pull-timeout must be positive") }
        if let registryAuthfile, access(registryAuthfile, R_OK) != 0 {
            throw ValidationError("--registry-authfile \(registryAuthfile) is not readable")
        }
        if let registryCertDir, access(registryCertDir + "/ca.crt", R_OK) != 0 {
            throw ValidationError("--registry-cert-dir \(registryCertDir) holds no readable ca.crt")
        }
    }

    func run() throws {
        daemon.bootstrapLogging()
        let logger = Logger(label: "knit-scheduler")
        // Before any other thread exists: they inherit the mask, and this thread alone takes the signals.
        let stopSignals = StopSignals.block()
        signal(SIGPIPE, SIG_IGN)

        guard let podmanPath = podman ?? findExecutable("podman") else {
            logger.critical("podman not found; install it (apt-get install podman runc) or pass --podman")
            throw ExitCode(2)
        }
        let store: KnitStore
        do { store = try KnitStore(home: home, logger: logger) } catch {
            logger.critical("cannot open the store", metadata: ["home": "\(home)", "error": "\(error)"])
            throw ExitCode(2)
        }
        defer { store.close() }
        let layout = store.layout

        let executor = PodmanExecutor(
            configuration: .init(
                podmanPath: podmanPath,
                containersConf: containersConf,
                instance: instance,
                runDirectory: layout.executor,
                registryAuthFile: registryAuthfile,
                registryCertDirectory: registryCertDir,
                pullTimeout: .seconds(pullTimeout)
            ),
            logger: logger
        )
        // Directories of dropped Data that knitd could not delete (made by an older scheduler as root, or a
        // crash between the records and the deletion): root can.
        store.collectGarbage()
        var driverConfiguration = RunDriver.Configuration()
        if let owner = store.dataOwner() { driverConfiguration.outputOwner = (owner.uid, owner.gid) }
        driverConfiguration.storageDirectory = layout.data
        let machine = Capacity.machine()
        driverConfiguration.capacity = Capacity(
            cpuMillis: cpuBudget ?? machine.cpuMillis,
            memoryBytes: memoryBudget ?? machine.memoryBytes
        )
        let driver = RunDriver(
            ledger: StoreLedger(store: store),
            executor: executor,
            configuration: driverConfiguration,
            logger: logger
        )
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
        logger.info(
            "knit-scheduler running",
            metadata: [
                "home": "\(home)", "podman": "\(podmanPath)",
                "cpu.millis": "\(driverConfiguration.capacity.cpuMillis)",
                "memory.bytes": "\(driverConfiguration.capacity.memoryBytes)",
            ]
        )
        let running = driver.start(wakeup: wakeup)
        // knitd cannot delete what an older scheduler left root-owned; such directories stay in `garbage` until
        // root collects them, so look again every 10 minutes rather than only at the next start.
        var received: Int32
        while true {
            if let signal = stopSignals.wait(seconds: 600) {
                received = signal
                break
            }
            store.collectGarbage()
        }
        logger.info("stopping: finishing the tick in progress", metadata: ["signal": "\(received)"])
        running.stop()
        running.join()
        logger.info("knit-scheduler stopped; running containers keep running and are adopted at the next start")
    }
}
