internal import Glibc
public import KnitCore
public import KnitSystem
public import Logging
internal import Synchronization

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// Drives Runs between a ``RunLedger`` (the store) and an ``Executor`` (the containers). All of
/// its state is in those two: a new driver after a crash picks up where the old one stopped.
///
/// One ``tick()``:
/// 1. honours stop requests: stops the container (SIGTERM, SIGKILL after the grace), finishes
///    the Run with the exit the API recorded (abort → failed 253, tear-off → done 0, outputs
///    kept), removes the container;
/// 2. on the first tick and then every ``Configuration/sweepInterval``: removes containers whose
///    Run is not in flight (finished, deleted, unknown, or not started by the ledger's account);
/// 3. starts startable Runs, oldest first, while they fit the ``Capacity`` beside every Run in
///    flight (strict FIFO: the first one that does not fit waits and so does everything behind it);
///    new work goes first because the next step costs a runtime call per container. A Run whose
///    image is still being fetched (``Executor/prepare(image:)``) is passed over without holding
///    capacity; a failed fetch ends it failed 255 `[ImageNotFound]`;
/// 4. observes every `starting`/`running` Run: running → `running`; exited 0 → done (0, "");
///    exited N → failed (N, the executor's message, "OOMKilled: …" for an OOM kill, with 137 when
///    only a child was killed and the container still exited 0); no container
///    → failed (254, "worker for the run is not found"), then whatever is left of it removed (a Job deleted
///    by hand leaves its claims and volumes) — which is also how Runs orphaned by a crash between
///    `starting` and the container start end;
/// 5. when step 4 finished Runs and step 3 stopped for capacity, starts again with what was freed.
///
/// Finishing always comes before removing the container: a crash in between leaves an exited
/// container of a finished Run, which the next sweep removes; the other order would turn a
/// success into 254. The Run is marked `starting` before its container starts, so a crash in
/// between ends it 254 and never starts it twice.
///
/// A container that cannot start is a failed Run with exit 255 and a Knitfab-like message
/// `(container <worker>) [Reason] detail` (the worker as ``Executor/workerName(runId:)`` names it),
/// Reason one of `ImageNotFound`, `StartFailed` (entrypoint missing: 127, not executable: 126) or
/// `InvalidLaunch` (e.g. an output directory that is not empty). A runtime that misbehaves (podman
/// failing, timing out) fails no Run: the Run stays `starting` and the next tick observes what is there.
///
/// With ``RunHooks`` (lifecycle before hooks), each change the driver makes — to `starting`, to `running`, the end
/// — is asked about first, with the Run as it is; a refusal leaves the Run where it is (its container, if any,
/// untouched), shown on the Run and asked about again after a back-off, and the hooks' environment for the change
/// to `starting` reaches the container through ``RunLaunch/environment``. The after hooks are the ledger's: it
/// records them with each change.
///
/// Concurrency: a driver does all of its work on one thread of its own (a task executor that ``tick()``,
/// ``run(wakeup:until:)`` and ``start(wakeup:)`` switch to), one tick at a time. Its ledger calls (LMDB
/// transactions), the wake-up wait, output checks and disk checks block that thread and nothing else;
/// ``Executor`` calls suspend there while they wait for the runtime. The cooperative pool never runs a
/// blocking call of the driver.
public final class RunDriver: Sendable {
    public struct Configuration: Sendable {
        public var capacity: Capacity
        /// How long a stopped container may take to end after SIGTERM before SIGKILL.
        public var stopGrace: Duration
        /// How often to look for containers of Runs that are not in flight.
        public var sweepInterval: Duration
        /// How many startable Runs one tick reads from the ledger.
        public var startBatch: Int
        /// ``run(wakeup:until:)``: how often to tick while Runs are in flight (container exits
        /// ring no bell).
        public var busyPollInterval: Duration
        /// ``run(wakeup:until:)``: how often to tick when idle, in case a ring was lost.
        public var idlePollInterval: Duration
        /// Who gets everything a Run wrote once it ends (the store's owner, so knitd can delete it);
        /// nil leaves the owners as the container made them.
        public var outputOwner: (uid: UInt32, gid: UInt32)?
        /// A directory on the file system the Runs write to (the store's `data/`): every tick with Runs
        /// in flight looks at its free space, so a disk that filled up and was freed again before the Run
        /// ended is still noticed. Nil: only the end of each Run is checked.
        public var storageDirectory: String?

        public init(
            capacity: Capacity = .machine(),
            stopGrace: Duration = .seconds(10),
            sweepInterval: Duration = .seconds(60),
            startBatch: Int = 64,
            busyPollInterval: Duration = .milliseconds(250),
            idlePollInterval: Duration = .seconds(5),
            outputOwner: (uid: UInt32, gid: UInt32)? = nil,
            storageDirectory: String? = nil
        ) {
            self.capacity = capacity
            self.stopGrace = stopGrace
            self.sweepInterval = sweepInterval
            self.startBatch = startBatch
            self.busyPollInterval = busyPollInterval
            self.idlePollInterval = idlePollInterval
            self.outputOwner = outputOwner
            self.storageDirectory = storageDirectory
        }
    }

    /// What one tick did.
    public struct TickSummary: Sendable, Equatable {
        /// Runs whose containers this tick started.
        public var started: [String] = []
        /// Runs this tick finished, in order.
        public var finished: [String] = []
        /// Containers removed because their Run was not in flight.
        public var swept: [String] = []
        /// Runs still in flight after the tick.
        public var inFlight = 0
        /// Whether a startable Run waits for capacity.
        public var waitingForCapacity = false
        /// Some ready Run waits for its image to be fetched.
        public var waitingForImages = false
        /// A lifecycle before hook held some Run back; it is asked again soon.
        public var heldByHooks = false

        public init() {}
    }

    public static let workerNotFoundExit = RunExitJSON(code: 254, message: "worker for the run is not found")
    public static let succeededExit = RunExitJSON(code: 0, message: "")
    /// A Run that exited 0 while the store's file system was full: writes of its outputs may have failed
    /// without the program noticing, so it must not become `done` (252: next to Knitfab's 253-255 system codes).
    public static let diskFullExit = RunExitJSON(
        code: 252,
        message: "the store's disk filled up while the run wrote its outputs; outputs may be incomplete"
    )
    /// 128 + SIGKILL: what an OOM-killed container reports, and what a failed Run reports for an OOM kill
    /// that the container's main process survived.
    static let oomKilledCode: Int32 = 137

    public let configuration: Configuration
    private let ledger: any RunLedger
    private let executor: any Executor
    private let hooks: (any RunHooks)?
    private let logger: Logger
    private struct State {
        var ticking = false
        var lastSweep: ContinuousClock.Instant?
        /// Runs that were in flight while ``Configuration/storageDirectory`` was full. Only a hint that
        /// sharpens the check at the end of each Run; a restart loses it and loses nothing else.
        var sawFullDisk: Set<String> = []
        /// What each `starting` Run was last recorded waiting for, so the ledger is written on a change only.
        var waitingFor: [String: String] = [:]
        /// Whether the last look found the disk full (one log line per episode, not one per tick).
        var diskWasFull = false
        /// Runs a before hook refused: why (recorded on the Run once), and when to ask again. A restart forgets it
        /// and asks at once. The entry of a Run the API ends while it is held stays until the restart (a few bytes).
        var held: [String: Hold] = [:]
    }
    private struct Hold {
        var reason: String
        var retryAt: ContinuousClock.Instant
        var delay: Duration
    }
    /// How soon a refused change is asked about again: doubling from the first to the last.
    static let holdRetry: (first: Duration, maximum: Duration) = (.seconds(1), .seconds(8))
    private let state = Mutex(State())
    /// Where all of the driver's work runs (see the type's documentation).
    private let thread = DriverThread()

    public init(
        ledger: any RunLedger,
        executor: any Executor,
        configuration: Configuration = Configuration(),
        hooks: (any RunHooks)? = nil,
        logger: Logger = Logger(label: "knit.scheduler.driver")
    ) {
        self.ledger = ledger
        self.executor = executor
        self.configuration = configuration
        self.hooks = hooks
        self.logger = logger
    }

    deinit { thread.close() }

    /// Does one round of work (see the type's documentation). Ledger and executor failures are
    /// logged and leave the affected Run for the next tick; a tick never throws. Ticks must not
    /// overlap (it traps).
    @discardableResult
    public func tick() async -> TickSummary {
        await withTaskExecutorPreference(thread) { await tickOnThread() }
    }

    private func tickOnThread() async -> TickSummary {
        let clock = ContinuousClock()
        let sweepDue = state.withLock { state in
            precondition(!state.ticking, "RunDriver.tick() must not run concurrently with itself")
            state.ticking = true
            guard let last = state.lastSweep, clock.now - last < configuration.sweepInterval else {
                state.lastSweep = clock.now
                return true
            }
            return false
        }
        defer { state.withLock { $0.ticking = false } }

        var summary = TickSummary()
        guard var inFlight = ledgerCall("runs in flight", { try ledger.runsInFlight() }) else { return summary }
        let stopped = await honourStopRequests(inFlight, &summary)
        inFlight.removeAll { stopped.contains($0.runId) }
        if sweepDue { await sweep(keeping: Set(inFlight.map(\.runId)), &summary) }
        // New work first: observing costs one runtime call per container in flight (about 50-100 ms
        // each with podman), and a Run the user just triggered should not wait behind all of them.
        // Until it is observed, every Run in flight keeps holding its demand.
        let claimed = inFlight.reduce(Capacity.Demand.zero) { $0 + $1.demand }
        var held = await startRuns(holding: claimed, &summary)
        var freed = false
        let observed = await observeAll(inFlight)
        noteFullDisk(inFlight)
        for run in inFlight {
            if await follow(run, observed[run.runId], &summary) {
                held = held + run.demand
                summary.inFlight += 1
            } else {
                freed = true
            }
        }
        // Runs that finished in this tick give their share back to Runs that did not fit before.
        if freed, summary.waitingForCapacity {
            summary.waitingForCapacity = false
            _ = await startRuns(holding: held, &summary)
        }
        return summary
    }

    /// Ticks until `shouldStop` says so or the task is cancelled: right away after a tick that
    /// finished a Run (finishing may make the next Runs of a chain startable), when `wakeup`
    /// rings, and otherwise every ``Configuration/busyPollInterval`` while Runs are in flight or
    /// every ``Configuration/idlePollInterval``.
    ///
    /// The wait blocks the driver's thread in slices of at most 100 ms (a ring ends it at once), so
    /// stopping takes effect within 100 ms without a busy loop.
    public func run(wakeup: Wakeup?, until shouldStop: @Sendable () -> Bool) async {
        await withTaskExecutorPreference(thread) {
            let slice = Duration.milliseconds(100)
            let clock = ContinuousClock()
            while !shouldStop() && !Task.isCancelled {
                let summary = await tickOnThread()
                if !summary.finished.isEmpty { continue }
                let interval =
                    summary.inFlight > 0 || summary.waitingForCapacity || summary.waitingForImages
                        || summary.heldByHooks
                    ? configuration.busyPollInterval : configuration.idlePollInterval
                let deadline = clock.now.advanced(by: interval)
                while !shouldStop() && !Task.isCancelled {
                    let left = clock.now.duration(to: deadline)
                    if left <= .zero { break }
                    if let wakeup {
                        if wakeup.wait(timeout: min(left, slice)) { break }
                        await Task.yield()
                    } else {
                        try? await Task.sleep(for: min(left, slice))
                    }
                }
            }
        }
    }

    /// Runs ``run(wakeup:until:)`` on the driver's thread and returns at once: for a daemon whose own
    /// thread waits for signals, then calls ``Running/stop()`` and ``Running/join()``.
    public func start(wakeup: Wakeup?) -> Running {
        let running = Running()
        // The task lets go of the socket before it says it has finished, so the caller's reference is the
        // last one and the socket file is removed on the caller's thread, before the process exits.
        let lent = Lent(wakeup)
        Task(executorPreference: thread) {
            await self.run(wakeup: lent.take()) { running.stopRequested }
            running.finished.signal()
        }
        return running
    }

    /// A value handed to a task that gives it back up before the task ends.
    private final class Lent<Value: Sendable>: Sendable {
        private let value: Mutex<Value?>

        init(_ value: Value?) { self.value = Mutex(value) }

        func take() -> Value? { value.withLock { $0.take() } }
    }

    /// A driver loop started by ``start(wakeup:)``.
    public final class Running: Sendable {
        private let stopFlag = Atomic<Bool>(false)
        fileprivate let finished = Semaphore()

        fileprivate init() {}

        fileprivate var stopRequested: Bool { stopFlag.load(ordering: .relaxed) }

        /// Asks the loop to end once the tick in progress is done (within 100 ms when it waits).
        public func stop() { stopFlag.store(true, ordering: .relaxed) }

        /// Blocks the calling thread until the loop has ended.
        public func join() { finished.wait() }
    }

    // MARK: - Steps

    /// Stops, settles and finishes every Run in `inFlight` a user asked to stop. Returns the Runs it finished
    /// (now or earlier): they are no longer in flight.
    private func honourStopRequests(_ inFlight: [RunInFlight], _ summary: inout TickSummary) async -> Set<String> {
        var finished: Set<String> = []
        for run in inFlight {
            guard let request = run.stopRequest else { continue }
            guard hooksAllow(run.runId, next: request.kind == .tearOff ? .done : .failed, &summary) != nil else {
                continue
            }
            do {
                try await executor.stop(runId: run.runId, grace: configuration.stopGrace)
            } catch {
                logger.error("cannot stop container", metadata: ["run.id": "\(run.runId)", "error": "\(error)"])
                continue
            }
            // A torn-off Run keeps what it wrote, and an aborted one keeps it until it is retried or deleted:
            // both are checked like any other. The exit is the one the user's request recorded.
            guard let settled = settle(run.runId) else { continue }
            guard
                finish(
                    run.runId,
                    exit: request.exit,
                    succeeded: request.kind == .tearOff,
                    writtenBytes: settled.writtenBytes,
                    &summary
                )
            else { continue }
            finished.insert(run.runId)
            await removeContainer(run.runId)
        }
        return finished
    }

    private func sweep(keeping inFlight: Set<String>, _ summary: inout TickSummary) async {
        let containers: [String]
        do {
            containers = try await executor.list()
        } catch {
            logger.error("cannot list containers", metadata: ["error": "\(error)"])
            return
        }
        for runId in containers where !inFlight.contains(runId) {
            logger.info("removing container of a run that is not in flight", metadata: ["run.id": "\(runId)"])
            await removeContainer(runId)
            summary.swept.append(runId)
        }
    }

    /// The containers of the `starting`/`running` Runs, in one executor call; empty when the runtime
    /// cannot answer (every Run then simply stays in flight until the next tick).
    private func observeAll(_ runs: [RunInFlight]) async -> [String: ExecutorObservation] {
        let followed = runs.filter { $0.status == .starting || $0.status == .running }.map(\.runId)
        guard !followed.isEmpty else { return [:] }
        do {
            return try await executor.observe(runIds: followed)
        } catch {
            logger.error(
                "cannot observe containers",
                metadata: ["run.count": "\(followed.count)", "error": "\(error)"]
            )
            return [:]
        }
    }

    /// Acts on what one in-flight Run's container does. Returns whether the Run is still in flight.
    private func follow(_ run: RunInFlight, _ seen: ExecutorObservation?, _ summary: inout TickSummary) async -> Bool {
        // completing/aborting without a stop request would be a Run another driver is ending;
        // it still holds its container, so it still holds capacity.
        guard run.status == .starting || run.status == .running, let seen else { return true }
        let waited = state.withLock { state in
            guard case .pending(let reason) = seen else { return state.waitingFor.removeValue(forKey: run.runId) }
            return state.waitingFor.updateValue(reason, forKey: run.runId) == reason ? nil : ""
        }
        switch seen {
        case .starting:
            if waited != nil {
                _ = ledgerCall("mark waiting", { try ledger.markWaiting(runId: run.runId, reason: nil) })
            }
            return true
        case .pending(let reason):
            // The Run stays `starting` (a pod no node can take now may fit later); the reason is shown on it.
            if waited != nil {
                logger.info("run waits", metadata: ["run.id": "\(run.runId)", "reason": "\(reason)"])
                _ = ledgerCall("mark waiting", { try ledger.markWaiting(runId: run.runId, reason: reason) })
            }
            return true
        case .running:
            if run.status == .starting, hooksAllow(run.runId, next: .running, &summary) != nil {
                _ = ledgerCall("mark running", { try ledger.markRunning(runId: run.runId) })
            }
            return true
        case .exited(let code, let oomKilled, let message):
            let succeeded = code == 0 && !oomKilled
            // The OOM killer may hit a child (`big | tail`) and the shell still exit 0: the Run fails, and
            // a failed Run must not say exit 0, so it gets the code of a SIGKILL, as a killed pid 1 would.
            let code = oomKilled && code == 0 ? Self.oomKilledCode : code
            guard hooksAllow(run.runId, next: succeeded ? .done : .failed, &summary) != nil else { return true }
            var exit = succeeded ? Self.succeededExit : RunExitJSON(code: Self.exitCode(code), message: message)
            guard let settled = settle(run.runId) else { return true }
            if succeeded, let problem = settled.problem {
                exit = problem
            }
            guard
                finish(
                    run.runId,
                    exit: exit,
                    succeeded: exit == Self.succeededExit,
                    writtenBytes: settled.writtenBytes,
                    &summary
                )
            else { return true }
            await removeContainer(run.runId)
            return false
        case .notFound:
            logger.warning("run has no container", metadata: ["run.id": "\(run.runId)", "run.status": "\(run.status)"])
            guard hooksAllow(run.runId, next: .failed, &summary) != nil else { return true }
            guard let settled = settle(run.runId) else { return true }
            guard
                finish(
                    run.runId,
                    exit: Self.workerNotFoundExit,
                    succeeded: false,
                    writtenBytes: settled.writtenBytes,
                    &summary
                )
            else { return true }
            // No worker is not nothing left: a Job deleted by hand leaves the Run's claims, volumes and a pod
            // being torn down, which would otherwise wait for the next sweep.
            await removeContainer(run.runId)
            return false
        }
    }

    /// Starts ready Runs in FIFO order while they fit beside `initial`. Returns the demand of the Runs it
    /// started (or may have started), so the caller can account for them.
    private func startRuns(holding initial: Capacity.Demand, _ summary: inout TickSummary) async -> Capacity.Demand {
        guard let candidates = ledgerCall("ready runs", { try ledger.readyToStart(limit: configuration.startBatch) })
        else { return .zero }
        var held = initial
        var started = Capacity.Demand.zero
        for run in candidates {
            guard run.planActive else { continue }
            guard configuration.capacity.admits(run.demand, holding: held) else {
                summary.waitingForCapacity = true
                logger.debug("run waits for capacity", metadata: ["run.id": "\(run.runId)"])
                break
            }
            switch await executor.prepare(image: run.image) {
            case .ready:
                break
            case .pending:
                // Being fetched: the Runs behind it that can start now do, and it is asked again on the
                // next tick. It holds no capacity meanwhile.
                summary.waitingForImages = true
                logger.debug(
                    "run waits for its image",
                    metadata: ["run.id": "\(run.runId)", "run.image": "\(run.image)"]
                )
                continue
            case .failed(let reason):
                let message =
                    "(container \(executor.workerName(runId: run.runId))) [ImageNotFound] "
                    + "cannot pull \(run.image): \(reason)"
                failBeforeStart(run.runId, message, &summary)
                continue
            }
            // Last, so that a Run the hooks let through starts now: nothing else can hold it back after them.
            guard let environment = hooksAllow(run.runId, next: .starting, &summary) else { continue }
            guard ledgerCall("mark starting", { try ledger.markStarting(runId: run.runId) }) == true else { continue }
            switch await startContainer(run, environment: environment, &summary) {
            case .running where executor.startsBeforeRunning:
                // Created; observing marks it running. Its capacity is held from now on.
                summary.started.append(run.runId)
                held = held + run.demand
                started = started + run.demand
                summary.inFlight += 1
            case .running:
                if !executor.honoursPlacement, !run.placementSettings.isEmpty {
                    logger.info(
                        "plan settings ignored by this executor",
                        metadata: ["run.id": "\(run.runId)", "plan.settings": "\(run.placementSettings)"]
                    )
                }
                summary.started.append(run.runId)
                // Held back: it stays `starting` and observing asks again.
                if hooksAllow(run.runId, next: .running, &summary) != nil {
                    _ = ledgerCall("mark running", { try ledger.markRunning(runId: run.runId) })
                }
                held = held + run.demand
                started = started + run.demand
                summary.inFlight += 1
            case .failed:
                break
            case .unknown:
                // It may run after all; the next tick observes it and holds its capacity then.
                held = held + run.demand
                started = started + run.demand
                summary.inFlight += 1
            }
        }
        return started
    }

    /// Ends a ready Run that cannot start (exit 255, `message`) through `starting`, the only way a
    /// Run leaves `ready`; nothing when another driver took it meanwhile.
    private func failBeforeStart(_ runId: String, _ message: String, _ summary: inout TickSummary) {
        guard ledgerCall("mark starting", { try ledger.markStarting(runId: runId) }) == true else { return }
        finish(runId, exit: RunExitJSON(code: 255, message: message), succeeded: false, &summary)
    }

    private enum StartOutcome { case running, failed, unknown }

    /// Starts the container of a Run marked `starting`: it runs, or the Run was finished as
    /// failed, or the runtime misbehaved and the Run stays `starting` for the next tick.
    private func startContainer(
        _ run: ScheduledRun,
        environment: [String: String],
        _ summary: inout TickSummary
    ) async -> StartOutcome {
        let launch = RunLaunch(run, environment: environment)
        for attempt in 0..<2 {
            do {
                try await executor.start(launch)
                logger.info(
                    "run started",
                    metadata: ["run.id": "\(run.runId)", "plan.id": "\(run.planId)", "run.image": "\(run.image)"]
                )
                return .running
            } catch let error as ExecutorError {
                let reason: String
                switch error.code {
                case .alreadyExists where attempt == 0:
                    // Left over from an earlier attempt of the same Run id (a retry whose old
                    // container survived a failed cleanup): it is not this attempt's worker.
                    logger.warning("removing a stale container before start", metadata: ["run.id": "\(run.runId)"])
                    await removeContainer(run.runId)
                    continue
                case .imageNotFound: reason = "ImageNotFound"
                case .startFailed: reason = "StartFailed"
                case .invalidLaunch: reason = "InvalidLaunch"
                default:
                    logger.error(
                        "container start failed for a reason of the runtime",
                        metadata: ["run.id": "\(run.runId)", "error": "\(error)"]
                    )
                    return .unknown
                }
                let message = "(container \(executor.workerName(runId: run.runId))) [\(reason)] \(error.message)"
                finish(run.runId, exit: RunExitJSON(code: 255, message: message), succeeded: false, &summary)
                return .failed
            } catch {
                logger.error("container start failed", metadata: ["run.id": "\(run.runId)", "error": "\(error)"])
                return .unknown
            }
        }
        return .unknown
    }

    // MARK: - Ending Runs

    /// What checking an ended Run's outputs found.
    private struct Settlement {
        /// Why a Run that exited 0 must fail after all; nil when its outputs are sound.
        var problem: RunExitJSON?
        /// What the Run wrote into each output and its log, by knitId (regular files, links not followed).
        var writtenBytes: [String: Int64] = [:]
    }

    /// Checks and cleans what an ended Run wrote, before the ledger finishes it: whether the store's disk
    /// filled up, then ``OutputSanitizer`` over each output directory and the log's directory, each change
    /// written as one line into the Run's log. Nil when the ledger cannot say where the Run wrote: the Run is
    /// left in flight for the next tick. Running this twice (a crash before `finish`) changes nothing more.
    private func settle(_ runId: String) -> Settlement? {
        guard let found = ledgerCall("run outputs", { try ledger.outputs(runId: runId) }) else { return nil }
        guard let outputs = found else { return Settlement() }
        var settlement = Settlement()
        var lines: [String] = []
        var directories = outputs.outputs.map { (host: $0.hostPath, shown: $0.containerPath, knitId: $0.knitId) }
        if let logPath = outputs.logPath, let slash = logPath.lastIndex(of: "/"), slash != logPath.startIndex {
            directories.append((host: String(logPath[..<slash]), shown: "(log)", knitId: outputs.logKnitId ?? "(log)"))
        }
        let sawFullDisk = state.withLock { $0.sawFullDisk.contains(runId) }
        if sawFullDisk || directories.contains(where: { Self.diskIsFull(at: $0.host) }) {
            settlement.problem = Self.diskFullExit
            lines.append("knit: \(Self.diskFullExit.message)")
            logger.warning("the store's disk filled up during a run", metadata: ["run.id": "\(runId)"])
        }
        let sanitizer = OutputSanitizer(owner: configuration.outputOwner)
        var problems: [String] = []
        for directory in directories {
            let report = sanitizer.sanitize(directory: directory.host, shownAs: directory.shown)
            settlement.writtenBytes[directory.knitId, default: 0] += report.regularFileBytes
            lines += report.changes.map(\.description)
            problems += report.problems
            if !report.changes.isEmpty {
                logger.notice(
                    "run output sanitized",
                    metadata: [
                        "run.id": "\(runId)", "data.id": "\(directory.knitId)", "path": "\(directory.host)",
                        "changes": "\(report.changes.count)",
                    ]
                )
            }
        }
        if !problems.isEmpty {
            logger.error("cannot sanitize run output", metadata: ["run.id": "\(runId)", "problems": "\(problems)"])
            lines.append("knit: the outputs could not be checked completely: \(problems.joined(separator: "; "))")
            if settlement.problem == nil {
                settlement.problem = RunExitJSON(
                    code: 255,
                    message: "knit could not check the run's outputs: \(problems.joined(separator: "; "))"
                )
            }
        }
        if let logPath = outputs.logPath, !lines.isEmpty {
            let appended = Self.append(lines, toLog: logPath)
            // Measured before these lines went in; they are the Run's log as much as what it printed.
            if let logKnitId = outputs.logKnitId { settlement.writtenBytes[logKnitId, default: 0] += Int64(appended) }
        }
        return settlement
    }

    /// Remembers which running Runs saw ``Configuration/storageDirectory`` full.
    private func noteFullDisk(_ inFlight: [RunInFlight]) {
        guard let directory = configuration.storageDirectory, !inFlight.isEmpty else { return }
        let full = Self.diskIsFull(at: directory)
        let newlyFull = state.withLock { state in
            defer { state.diskWasFull = full }
            guard full else { return false }
            for run in inFlight where run.status == .running || run.status == .starting {
                state.sawFullDisk.insert(run.runId)
            }
            return !state.diskWasFull
        }
        if newlyFull { logger.warning("the store's disk is full", metadata: ["path": "\(directory)"]) }
    }

    /// Whether the file system holding `path` has (almost) no room left for root (the containers run as
    /// root, so its reserved blocks count as room) or no free inode. "Almost": a write that fails leaves the
    /// last partial block unused, so the bar is a small reserve, 1/200 of the file system (at least 64 KiB,
    /// at most 16 MiB).
    static func diskIsFull(at path: String) -> Bool {
        var info = statvfs()
        guard statvfs(path, &info) == 0, info.f_blocks > 0 else { return false }
        let blockSize = UInt64(info.f_frsize > 0 ? info.f_frsize : info.f_bsize)
        let total = UInt64(info.f_blocks) * blockSize
        let reserve = min(max(total / 200, 64 << 10), 16 << 20)
        if UInt64(info.f_bfree) * blockSize < reserve { return true }
        return info.f_files > 0 && info.f_ffree == 0
    }

    /// Appends `lines` to the Run's log file, never through a symlink; failures (a full disk) are ignored,
    /// the scheduler's own log has the same facts. Returns how many bytes went in.
    @discardableResult
    static func append(_ lines: [String], toLog path: String) -> Int {
        let fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        let text = Array(lines.map { $0 + "\n" }.joined().utf8)
        var offset = 0
        while offset < text.count {
            let written = text.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written <= 0 { return offset }
            offset += written
        }
        return offset
    }

    // MARK: - Helpers

    /// Asks the before hooks whether `runId` may change to `next` now: the environment they gave (empty for any
    /// change but to `starting`), or nil when one refused. A refused Run is asked again after 1 s, doubling up to
    /// 8 s (until then this answers nil without asking); the first refusal for a reason is logged and shown on the
    /// Run (`waitingFor`). Without hooks every change may be made.
    private func hooksAllow(_ runId: String, next: RunStatus, _ summary: inout TickSummary) -> [String: String]? {
        guard let hooks else { return [:] }
        let clock = ContinuousClock()
        if let hold = state.withLock({ $0.held[runId] }), clock.now < hold.retryAt {
            summary.heldByHooks = true
            return nil
        }
        switch hooks.before(runId: runId, next: next) {
        case .proceed(let environment):
            // The status change that follows clears what the Run showed.
            state.withLock { _ = $0.held.removeValue(forKey: runId) }
            return environment
        case .refused(let reason):
            summary.heldByHooks = true
            let changed = state.withLock { state -> Bool in
                let previous = state.held[runId]
                let delay = previous.map { min($0.delay * 2, Self.holdRetry.maximum) } ?? Self.holdRetry.first
                state.held[runId] = Hold(reason: reason, retryAt: clock.now.advanced(by: delay), delay: delay)
                return previous?.reason != reason
            }
            if changed {
                logger.warning(
                    "a lifecycle hook holds the run back",
                    metadata: ["run.id": "\(runId)", "run.status.next": "\(next)", "reason": "\(reason)"]
                )
                _ = ledgerCall("mark held", { try ledger.markHeld(runId: runId, reason: reason) })
            }
            return nil
        }
    }

    /// Finishes a Run in the ledger. Returns true when the ledger finished it (now or earlier);
    /// false when the ledger call failed, so the next tick tries again.
    @discardableResult
    private func finish(
        _ runId: String,
        exit: RunExitJSON,
        succeeded: Bool,
        writtenBytes: [String: Int64] = [:],
        _ summary: inout TickSummary
    ) -> Bool {
        let finished = ledgerCall("finish") {
            try ledger.finish(runId: runId, exit: exit, succeeded: succeeded, writtenBytes: writtenBytes)
        }
        guard let changed = finished else { return false }
        // A retried Run comes back with the same id: it starts with a clean slate.
        state.withLock {
            _ = $0.sawFullDisk.remove(runId)
            _ = $0.waitingFor.removeValue(forKey: runId)
            _ = $0.held.removeValue(forKey: runId)
        }
        if changed {
            summary.finished.append(runId)
            logger.info(
                "run finished",
                metadata: [
                    "run.id": "\(runId)", "run.exit.code": "\(exit.code)", "run.exit.message": "\(exit.message)",
                ]
            )
        }
        return true
    }

    private func removeContainer(_ runId: String) async {
        do {
            try await executor.cleanup(runId: runId)
        } catch {
            // The next sweep tries again.
            logger.error("cannot remove container", metadata: ["run.id": "\(runId)", "error": "\(error)"])
        }
    }

    private func ledgerCall<T>(_ what: String, _ body: () throws -> T) -> T? {
        do {
            return try body()
        } catch {
            logger.error("ledger call failed", metadata: ["ledger.call": "\(what)", "error": "\(error)"])
            return nil
        }
    }

    /// Knitfab's exit codes are one byte; a negative status (a runtime oddity) becomes 255.
    static func exitCode(_ code: Int32) -> Int {
        (0...255).contains(code) ? Int(code) : 255
    }
}
