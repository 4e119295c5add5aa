import Foundation
import KnitCore
import KnitSystem
import Synchronization
import Testing

@testable import KnitScheduler

private let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
private let containersConf = repositoryRoot + "/containers/containers.conf"
private let quickstartImage = "localhost/knit-quickstart:1"
private let podmanPath = findExecutable("podman")
/// Its own executor instance, so sweeping never touches the executor tests' containers, and one per test
/// process, so a second checkout running the same suites at the same time cannot sweep them either.
private let instance = "knit-driver-tests-\(getpid())"

/// Builds the quickstart image once per test process (the script skips an existing image).
private let quickstartBuilt: Result<Void, any Error> = {
    let script = Process()
    script.executableURL = URL(fileURLWithPath: repositoryRoot + "/examples/quickstart/build-image.sh")
    script.arguments = [quickstartImage]
    var environment = ProcessInfo.processInfo.environment
    environment["CONTAINERS_CONF"] = containersConf
    script.environment = environment
    script.standardOutput = FileHandle.nullDevice
    script.standardError = FileHandle.nullDevice
    do {
        try script.run()
        script.waitUntilExit()
        guard script.terminationStatus == 0 else {
            return .failure(ExecutorError(.commandFailed, "build-image.sh failed"))
        }
        return .success(())
    } catch {
        return .failure(error)
    }
}()

private func makeExecutor(instance: String = instance) throws -> PodmanExecutor {
    try quickstartBuilt.get()
    return PodmanExecutor(
        configuration: .init(
            podmanPath: try #require(podmanPath),
            containersConf: containersConf,
            instance: instance,
            commandTimeout: .seconds(20),
            startTimeout: .seconds(30)
        )
    )
}

private func makeDriver(
    _ ledger: InMemoryLedger,
    _ executor: PodmanExecutor,
    capacity: Capacity = Capacity(cpuMillis: 2000, memoryBytes: 4 << 30)
) -> RunDriver {
    RunDriver(
        ledger: ledger,
        executor: executor,
        configuration: .init(capacity: capacity, stopGrace: .seconds(1), idlePollInterval: .seconds(30))
    )
}

/// A scratch directory under /tmp for one test, plus removal of every container of this test
/// instance afterwards, even when the test fails.
private func withScratch(
    instance: String = instance,
    _ body: (_ scratch: String, _ executor: PodmanExecutor) async throws -> Void
) async throws {
    let executor = try makeExecutor(instance: instance)
    let scratch = NSTemporaryDirectory() + "knit-driver-tests-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    func cleanUp() async {
        for runId in (try? await executor.list()) ?? [] { try? await executor.cleanup(runId: runId) }
        try? FileManager.default.removeItem(atPath: scratch)
    }
    do {
        try await body(scratch, executor)
        await cleanUp()
    } catch {
        await cleanUp()
        throw error
    }
}

/// Ticks until `done` holds; fails the test after `timeout`, which only matters on a slow machine (a loaded CI
/// once needed over 20 s for a podman start): a passing test returns as soon as it is done.
private func drive(
    _ driver: RunDriver,
    timeout: Duration = .seconds(60),
    until done: () -> Bool
) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while !done() {
        guard clock.now < deadline else { throw ExecutorError(.timedOut, "the driver did not get there in \(timeout)") }
        await driver.tick()
        try await Task.sleep(for: .milliseconds(50))
    }
}

private func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

private func shellRun(_ script: String, id: String = "drv-" + KnitIdentifier.make()) -> ScheduledRun {
    ScheduledRun(runId: id, planId: "test-plan", image: quickstartImage, args: [script])
}

@Suite(
    "RunDriver (in-memory ledger, real podman containers)",
    .serialized,
    .enabled(if: podmanPath != nil, "podman is not installed")
)
struct RunDriverTests {
    @Test("a run that writes its output and exits 0 ends done with exit 0, its output and its log")
    func success() async throws {
        try await withScratch { scratch, executor in
            let ledger = InMemoryLedger()
            let driver = makeDriver(ledger, executor)
            let input = scratch + "/in"
            try FileManager.default.createDirectory(atPath: input, withIntermediateDirectories: true)
            try "hello\n".write(toFile: input + "/greeting", atomically: true, encoding: .utf8)
            var run = shellRun("tr a-z A-Z < /in/data/greeting > /out/model/shout; echo to-stdout; echo to-stderr >&2")
            run.inputs = [.init(knitId: "test-data", hostPath: input, containerPath: "/in/data")]
            // Neither directory exists yet: the ledger creates them when it marks the Run starting.
            run.outputs = [.init(knitId: "test-data", hostPath: scratch + "/data/out-1", containerPath: "/out/model")]
            run.logPath = scratch + "/data/log-1/log"
            ledger.add(run)

            let first = await driver.tick()
            #expect(first.started == [run.runId])
            try await drive(driver) { ledger.status(run.runId)?.isFinished == true }
            let entry = try #require(ledger.entry(run.runId))
            #expect(entry.status == .done)
            #expect(entry.exit == RunExitJSON(code: 0, message: ""))
            #expect(entry.finishCount == 1)
            #expect(read(scratch + "/data/out-1/shout") == "HELLO\n")
            #expect(read(scratch + "/data/log-1/log") == "to-stdout\nto-stderr\n")
            #expect(try await executor.observe(runId: run.runId) == .notFound)
            // More ticks change nothing.
            await driver.tick()
            #expect(ledger.entry(run.runId)?.finishCount == 1)
        }
    }

    @Test("exit 3 ends failed with exit 3 and the executor's message")
    func exitCode() async throws {
        try await withScratch { _, executor in
            let ledger = InMemoryLedger()
            let driver = makeDriver(ledger, executor)
            let run = shellRun("exit 3")
            ledger.add(run)
            try await drive(driver) { ledger.status(run.runId)?.isFinished == true }
            #expect(ledger.status(run.runId) == .failed)
            #expect(ledger.entry(run.runId)?.exit == RunExitJSON(code: 3, message: "exited with code 3"))
            #expect(try await executor.observe(runId: run.runId) == .notFound)
        }
    }

    @Test("exceeding the memory limit ends failed with an OOMKilled message")
    func outOfMemory() async throws {
        try await withScratch { _, executor in
            let ledger = InMemoryLedger()
            let driver = makeDriver(ledger, executor)
            var run = shellRun("exec dd if=/dev/zero of=/dev/null bs=100M count=1")
            run.memoryBytes = 32 << 20
            ledger.add(run)
            try await drive(driver) { ledger.status(run.runId)?.isFinished == true }
            let exit = try #require(ledger.entry(run.runId)?.exit)
            #expect(ledger.status(run.runId) == .failed)
            #expect(exit.code == 137)
            #expect(exit.message.contains("OOMKilled"))
        }
    }

    @Test("an image that does not exist ends failed 255 with a message naming the image")
    func missingImage() async throws {
        try await withScratch { _, executor in
            let ledger = InMemoryLedger()
            let driver = makeDriver(ledger, executor)
            let run = ScheduledRun(
                runId: "drv-" + KnitIdentifier.make(),
                planId: "test-plan",
                image: "localhost/knit-no-such-image:0"
            )
            ledger.add(run)
            let summary = await driver.tick()
            #expect(summary.started.isEmpty)
            #expect(summary.finished == [run.runId])
            let exit = try #require(ledger.entry(run.runId)?.exit)
            #expect(ledger.status(run.runId) == .failed)
            #expect(exit.code == 255)
            #expect(exit.message.hasPrefix("(container knit-run-\(run.runId)) [ImageNotFound]"))
            #expect(exit.message.contains("localhost/knit-no-such-image:0"))
        }
    }

    @Test("a run whose image is being pulled waits without blocking the runs behind it; a failed pull ends it 255")
    func pullInBackground() async throws {
        try await withScratch { _, executor in
            let ledger = InMemoryLedger()
            let driver = makeDriver(ledger, executor)
            // Nothing listens on port 9: the pull fails, but only after the tick has moved on.
            let image = "127.0.0.1:9/knit-driver-pull-\(UUID().uuidString.prefix(8).lowercased()):1"
            let pulled = ScheduledRun(runId: "drv-" + KnitIdentifier.make(), planId: "test-plan", image: image)
            let local = shellRun("sleep 2")
            ledger.add(pulled)
            ledger.add(local)

            let first = await driver.tick()
            #expect(first.started == [local.runId], "the local image starts although an older run waits for its pull")
            #expect(first.waitingForImages)
            #expect(ledger.status(pulled.runId) == .ready, "a pending pull neither starts nor fails the run")

            try await drive(driver) { ledger.status(pulled.runId)?.isFinished == true }
            let exit = try #require(ledger.entry(pulled.runId)?.exit)
            #expect(ledger.status(pulled.runId) == .failed)
            #expect(exit.code == 255)
            #expect(exit.message.hasPrefix("(container knit-run-\(pulled.runId)) [ImageNotFound] cannot pull \(image)"))
            #expect(try await executor.observe(runId: pulled.runId) == .notFound)
        }
    }

    @Test("aborting a running container ends the run failed 253 within seconds")
    func abort() async throws {
        try await withScratch { _, executor in
            let ledger = InMemoryLedger()
            let driver = makeDriver(ledger, executor)
            let run = shellRun("sleep 30")
            ledger.add(run)
            try await drive(driver) { ledger.status(run.runId) == .running }
            ledger.requestStop(run.runId, .abort)
            let clock = ContinuousClock()
            let began = clock.now
            let summary = await driver.tick()
            #expect(clock.now - began < .seconds(8))
            #expect(summary.finished == [run.runId])
            #expect(ledger.status(run.runId) == .failed)
            #expect(ledger.entry(run.runId)?.exit == RunExitJSON(code: 253, message: "aborted by user"))
            #expect(try await executor.observe(runId: run.runId) == .notFound)
        }
    }

    @Test("tearing off a running container ends the run done 0 with what it wrote so far")
    func tearOff() async throws {
        try await withScratch { scratch, executor in
            let ledger = InMemoryLedger()
            let driver = makeDriver(ledger, executor)
            var run = shellRun("echo partial > /out/o/part; echo ready; sleep 30")
            run.outputs = [.init(knitId: "test-data", hostPath: scratch + "/out", containerPath: "/out/o")]
            run.logPath = scratch + "/log/log"
            ledger.add(run)
            try await drive(driver) { read(scratch + "/log/log").contains("ready") }
            ledger.requestStop(run.runId, .tearOff)
            await driver.tick()
            #expect(ledger.status(run.runId) == .done)
            #expect(ledger.entry(run.runId)?.exit == RunExitJSON(code: 0, message: "stopped by user"))
            #expect(read(scratch + "/out/part") == "partial\n")
            #expect(ledger.entry(run.runId)?.finishCount == 1)
        }
    }

    @Test("one tick reads the runs in flight once, on the driver's own thread; a run it stopped is not followed again")
    func oneInFlightReadPerTick() async throws {
        try await withScratch { _, executor in
            let ledger = InMemoryLedger()
            let driver = makeDriver(ledger, executor)
            let stopped = shellRun("sleep 30")
            let other = shellRun("sleep 30")
            ledger.add(stopped)
            ledger.add(other)
            try await drive(driver) {
                ledger.status(stopped.runId) == .running && ledger.status(other.runId) == .running
            }
            ledger.requestStop(stopped.runId, .abort)
            let reads = ledger.inFlightReads
            let summary = await driver.tick()
            #expect(ledger.inFlightReads == reads + 1)
            #expect(summary.finished == [stopped.runId])
            // The stopped run left the tick's list: only the other one is still followed and holds capacity.
            #expect(summary.inFlight == 1)
            #expect(ledger.entry(stopped.runId)?.finishCount == 1)
            // Ledger calls block (LMDB): they never run on the cooperative pool.
            #expect(ledger.callerThreads == ["driver thread"])
        }
    }

    @Test("a started driver works on its own thread, and stop() then join() end it within a second")
    func startStopJoin() async throws {
        try await withScratch { _, executor in
            let ledger = InMemoryLedger()
            let driver = makeDriver(ledger, executor)
            let run = shellRun("true")
            ledger.add(run)
            let running = driver.start(wakeup: nil)
            let clock = ContinuousClock()
            let began = clock.now
            while ledger.status(run.runId)?.isFinished != true && clock.now - began < .seconds(15) {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(ledger.status(run.runId) == .done)
            let stopping = clock.now
            running.stop()
            running.join()
            #expect(clock.now - stopping < .seconds(1))
            #expect(ledger.callerThreads == ["driver thread"])
        }
    }

    @Test("with a budget of one cpu, three one-cpu runs run one at a time, in FIFO order")
    func capacity() async throws {
        try await withScratch { _, executor in
            let ledger = InMemoryLedger()
            let driver = makeDriver(ledger, executor, capacity: Capacity(cpuMillis: 1000, memoryBytes: 1 << 30))
            var ids: [String] = []
            for index in 0..<3 {
                var run = shellRun("sleep 0.3", id: "drv-cap\(index)-" + KnitIdentifier.make())
                run.cpuMillis = 1000
                ledger.add(run)
                ids.append(run.runId)
            }
            let first = await driver.tick()
            #expect(first.started == [ids[0]])
            #expect(first.waitingForCapacity)
            try await drive(driver, timeout: .seconds(30)) { ledger.allFinished(ids) }
            #expect(ledger.peakInFlight == 1)
            #expect(ledger.startOrder == ids)
            #expect(ids.allSatisfy { ledger.status($0) == .done })
        }
    }

    @Test("a run the ledger calls running without a container ends 254; stray containers are removed")
    func reconciliation() async throws {
        try await withScratch { _, executor in
            let ledger = InMemoryLedger()
            let ghost = shellRun("true")
            ledger.add(ghost, status: .running)
            // A container whose Run the ledger does not know (e.g. deleted while the scheduler was down).
            let strayId = "drv-stray-" + KnitIdentifier.make()
            try await executor.start(
                RunLaunch(ScheduledRun(runId: strayId, planId: "test-plan", image: quickstartImage, args: ["sleep 30"]))
            )

            let driver = makeDriver(ledger, executor)
            let summary = await driver.tick()
            #expect(summary.swept == [strayId])
            #expect(try await executor.observe(runId: strayId) == .notFound)
            #expect(ledger.status(ghost.runId) == .failed)
            #expect(
                ledger.entry(ghost.runId)?.exit == RunExitJSON(code: 254, message: "worker for the run is not found")
            )
            #expect(ledger.startOrder.isEmpty)
        }
    }

    @Test("a new driver after the old one died adopts the running container and finishes the run once")
    func restartAdoptsContainer() async throws {
        try await withScratch { scratch, executor in
            let ledger = InMemoryLedger()
            var run = shellRun("sleep 2; echo finished > /out/o/result")
            run.outputs = [.init(knitId: "test-data", hostPath: scratch + "/out", containerPath: "/out/o")]
            ledger.add(run)
            do {
                let doomed = makeDriver(ledger, executor)
                try await drive(doomed) { ledger.status(run.runId) == .running }
            }
            // As if the scheduler process had been killed: fresh executor (same instance), fresh driver.
            let revived = makeDriver(ledger, try makeExecutor())
            let first = await revived.tick()
            #expect(first.swept.isEmpty)
            #expect(first.started.isEmpty)
            #expect(first.inFlight == 1)
            try await drive(revived) { ledger.status(run.runId)?.isFinished == true }
            #expect(ledger.status(run.runId) == .done)
            #expect(ledger.entry(run.runId)?.finishCount == 1)
            #expect(ledger.startOrder == [run.runId])
            #expect(read(scratch + "/out/result") == "finished\n")
        }
    }

    @Test("the run loop starts a new run as soon as it is rung, long before its idle poll")
    func runLoopWakeup() async throws {
        try await withScratch { scratch, executor in
            let ledger = InMemoryLedger()
            let driver = makeDriver(ledger, executor)
            let wakeup = try Wakeup(path: scratch + "/wakeup.sock")
            let stop = StopFlag()
            let loop = Task { await driver.run(wakeup: wakeup, until: { stop.value.load(ordering: .relaxed) }) }
            defer { stop.value.store(true, ordering: .relaxed) }
            // Let the loop's first (empty) tick pass, so it waits on the socket.
            try await Task.sleep(for: .milliseconds(500))
            let run = shellRun("true")
            ledger.add(run)
            let clock = ContinuousClock()
            let rung = clock.now
            Wakeup.notify(path: wakeup.path)
            while ledger.status(run.runId)?.isFinished != true && clock.now - rung < .seconds(15) {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(ledger.status(run.runId) == .done)
            // The idle poll is 30 s: anything this quick came from the ring (or the busy poll after it).
            #expect(clock.now - rung < .seconds(5))
            stop.value.store(true, ordering: .relaxed)
            await loop.value
        }
    }
}

private final class StopFlag: Sendable {
    let value = Atomic<Bool>(false)
}

@Suite("Capacity")
struct CapacityTests {
    @Test("strict admission: a run fits only within the budget, but anything starts on an idle machine")
    func admission() {
        let budget = Capacity(cpuMillis: 2000, memoryBytes: 1 << 30)
        let one = Capacity.Demand(cpuMillis: 1000, memoryBytes: 256 << 20)
        #expect(budget.admits(one, holding: .zero))
        #expect(budget.admits(one, holding: one))
        #expect(!budget.admits(one, holding: one + one))
        #expect(!budget.admits(Capacity.Demand(cpuMillis: 0, memoryBytes: 900 << 20), holding: one))
        // Larger than the whole budget: starts alone rather than never.
        let huge = Capacity.Demand(cpuMillis: 8000, memoryBytes: 1 << 34)
        #expect(budget.admits(huge, holding: .zero))
        #expect(!budget.admits(huge, holding: one))
        let machine = Capacity.machine()
        #expect(machine.cpuMillis >= 1000 && machine.memoryBytes > 0)
    }

    @Test("F8: a run without a readable limit holds the default share, never nothing")
    func unlimitedRunsAreNeverFree() {
        let unlimited = ScheduledRun(runId: "r", planId: "test-plan", image: "i:1")
        #expect(unlimited.demand == Capacity.unlimitedDemand)
        #expect(RunInFlight(runId: "r", status: .running).demand == Capacity.unlimitedDemand)
        let zero = ScheduledRun(runId: "r", planId: "test-plan", image: "i:1", cpuMillis: 0, memoryBytes: 0)
        #expect(zero.demand == Capacity.unlimitedDemand)
        let limited = ScheduledRun(runId: "r", planId: "test-plan", image: "i:1", cpuMillis: 250, memoryBytes: 32 << 20)
        #expect(limited.demand == Capacity.Demand(cpuMillis: 250, memoryBytes: 32 << 20))
        // Two 1 GiB budgets: a Run without a memory limit fills one of them.
        let budget = Capacity(cpuMillis: 64000, memoryBytes: 2 << 30)
        let held = unlimited.demand + unlimited.demand
        #expect(!budget.admits(limited.demand, holding: held))
    }
}

/// F6 and F1: what a Run leaves in its outputs is made safe before it is finished, and a Run whose outputs
/// hit a full disk does not end done.
@Suite(
    "RunDriver output safety (in-memory ledger, real podman containers)",
    .serialized,
    .enabled(if: podmanPath != nil && getuid() == 0, "needs podman and root")
)
struct RunOutputSafetyTests {
    /// lstat of a path, nil when there is nothing.
    private func info(_ path: String) -> stat? {
        var found = stat()
        return lstat(path, &found) == 0 ? found : nil
    }

    /// Its own executor instance: the other driver suite (which may run at the same time) sweeps its own.
    private static let instance = "knit-driver-safety-tests-\(getpid())"

    @Test("F6: s-bits, fifos, devices and escaping symlinks do not survive a run; the log says so")
    func outputsAreSanitized() async throws {
        try await withScratch(instance: Self.instance) { scratch, executor in
            let ledger = InMemoryLedger()
            let nobody: UInt32 = 65534
            let driver = RunDriver(
                ledger: ledger,
                executor: executor,
                configuration: .init(
                    capacity: Capacity(cpuMillis: 2000, memoryBytes: 4 << 30),
                    stopGrace: .seconds(1),
                    idlePollInterval: .seconds(30),
                    outputOwner: (nobody, nobody)
                )
            )
            let script = """
                cd /out/o && cp /bin/busybox pwn && chmod 4755 pwn && mkdir sub && cp /bin/busybox sub/g \
                && chmod 2755 sub/g && mkfifo fifo && ln -s /etc/shadow shadow && ln -s ../../etc/passwd sub/up \
                && ln -s sub/g inside && echo data > plain && bad=$(printf 'bad\\377name') && echo x > "$bad" \
                && chmod 4700 "$bad" || exit 9
                mknod mem c 1 1 2>/dev/null && echo mknod-succeeded || echo mknod-refused
                grep -E '^(CapEff|NoNewPrivs)' /proc/self/status
                grep ' /out/o ' /proc/mounts | sed 's/^/mount: /'
                """
            var run = shellRun(script)
            let output = scratch + "/data/out-1"
            run.outputs = [.init(knitId: "test-data", hostPath: output, containerPath: "/out/o")]
            run.logPath = scratch + "/data/log-1/log"
            ledger.add(run)
            try await drive(driver) { ledger.status(run.runId)?.isFinished == true }
            let entry = try #require(ledger.entry(run.runId))
            let log = read(scratch + "/data/log-1/log")
            #expect(entry.status == .done, "exit \(String(describing: entry.exit)); log:\n\(log)")

            // Kept, without s-bits, handed to the owner.
            #expect(read(output + "/plain") == "data\n")
            for name in ["pwn", "sub/g"] {
                let found = try #require(info(output + "/" + name), "\(name) is gone")
                #expect(
                    found.st_mode & (S_ISUID | S_ISGID) == 0,
                    "\(name) keeps mode \(String(found.st_mode, radix: 8))"
                )
                #expect(found.st_mode & 0o777 == 0o755)
                #expect(found.st_uid == nobody && found.st_gid == nobody)
            }
            // The name that is not UTF-8, by its bytes.
            let badPath: [CChar] =
                Array((output + "/bad").utf8CString.dropLast()) + [CChar(bitPattern: 0xFF)]
                + Array("name".utf8CString)
            var badInfo = stat()
            #expect(lstat(badPath, &badInfo) == 0, "the non-UTF-8 file is gone")
            #expect(badInfo.st_mode & 0o7777 == 0o700)
            #expect(badInfo.st_uid == nobody)
            let inside = try #require(info(output + "/inside"))
            #expect(inside.st_mode & S_IFMT == S_IFLNK && inside.st_uid == nobody)
            for name in ["", "/sub"] {
                let found = try #require(info(output + name))
                #expect(found.st_uid == nobody && found.st_gid == nobody, "\(output + name)")
            }
            #expect(info(scratch + "/data/log-1/log")?.st_uid == nobody)
            // What the Run wrote reaches the ledger as the walk measured it: the regular files that survived
            // (two copies of busybox, "data\n", "x\n"), and the whole log including the lines knit appended.
            let busybox = Int64(try #require(info(output + "/pwn")).st_size)
            #expect(entry.writtenBytes["test-data"] == 2 * busybox + 5 + 2)
            #expect(entry.writtenBytes["log-1"] == Int64(try #require(info(scratch + "/data/log-1/log")).st_size))
            // Gone: the fifo, the symlinks leading out, and no device node ever made it.
            for name in ["fifo", "shadow", "sub/up", "mem"] {
                #expect(info(output + "/" + name) == nil, "\(name) is still in the output")
            }
            #expect(log.contains("mknod-refused"), "\(log)")
            #expect(log.contains("knit: removed fifo /out/o/fifo from the output"), "\(log)")
            #expect(log.contains("knit: removed symlink /out/o/shadow -> /etc/shadow from the output"), "\(log)")
            #expect(log.contains("knit: removed symlink /out/o/sub/up -> ../../etc/passwd"), "\(log)")
            #expect(log.contains("knit: cleared the setuid/setgid bits of /out/o/pwn (mode 4755 -> 0755)"), "\(log)")
            #expect(log.contains("knit: cleared the setuid/setgid bits of /out/o/sub/g (mode 2755 -> 0755)"), "\(log)")
            #expect(log.contains("knit: cleared the setuid/setgid bits of /out/o/bad\\xFFname"), "\(log)")

            // The container itself had no CAP_MKNOD (27), CAP_NET_RAW (13), CAP_SETFCAP (31), and no new privileges.
            let capLine = try #require(log.split(separator: "\n").first { $0.hasPrefix("CapEff:") }, "\(log)")
            let capText = capLine.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces)
            let caps = try #require(UInt64(capText, radix: 16))
            for bit in [27, 13, 31, 8, 18, 29, 4] {
                #expect(caps & (1 << UInt64(bit)) == 0, "capability \(bit) in \(capLine)")
            }
            for bit in [0, 1, 3, 6, 7] {
                #expect(caps & (1 << UInt64(bit)) != 0, "capability \(bit) missing: \(capLine)")
            }
            // Exactly the kept ones: CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETGID, SETUID, NET_BIND_SERVICE.
            #expect(caps == 0x4eb, "\(capLine)")
            #expect(log.split(separator: "\n").contains { $0.hasPrefix("NoNewPrivs:") && $0.hasSuffix("1") }, "\(log)")
            // The output is mounted nosuid,nodev.
            let mountLine = try #require(log.split(separator: "\n").first { $0.hasPrefix("mount: ") }, "\(log)")
            let options = mountLine.split(separator: " ").dropFirst(4).first?.split(separator: ",") ?? []
            #expect(options.contains("nosuid") && options.contains("nodev"), "\(mountLine)")
        }
    }

    @Test("F1: a run that exits 0 after its outputs filled the store's disk ends failed with a clear message")
    func fullDiskFailsTheRun() async throws {
        try await withScratch(instance: Self.instance) { scratch, executor in
            let mountPoint = scratch + "/small"
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            try #require(mount("tmpfs", mountPoint, "tmpfs", 0, "size=8m") == 0)
            defer { umount2(mountPoint, Int32(MNT_DETACH)) }
            let ledger = InMemoryLedger()
            let driver = RunDriver(
                ledger: ledger,
                executor: executor,
                configuration: .init(
                    capacity: Capacity(cpuMillis: 2000, memoryBytes: 4 << 30),
                    stopGrace: .seconds(1),
                    idlePollInterval: .seconds(30),
                    storageDirectory: mountPoint
                )
            )
            // The program ignores its write errors and exits 0.
            var full = shellRun("dd if=/dev/zero of=/out/o/big bs=1M count=20 2>/dev/null; echo wrote; true")
            full.outputs = [.init(knitId: "d", hostPath: mountPoint + "/data/out-full", containerPath: "/out/o")]
            full.logPath = mountPoint + "/data/log-full/log"
            ledger.add(full)
            try await drive(driver) { ledger.status(full.runId)?.isFinished == true }
            let entry = try #require(ledger.entry(full.runId))
            #expect(entry.status == .failed)
            #expect(entry.exit == RunDriver.diskFullExit)
            #expect(entry.exit?.message.contains("disk filled up") == true)

            // Once there is room again, the same kind of Run ends done.
            try FileManager.default.removeItem(atPath: mountPoint + "/data/out-full/big")
            var small = shellRun("dd if=/dev/zero of=/out/o/small bs=1M count=1 2>/dev/null; true")
            small.outputs = [.init(knitId: "d", hostPath: mountPoint + "/data/out-small", containerPath: "/out/o")]
            ledger.add(small)
            try await drive(driver) { ledger.status(small.runId)?.isFinished == true }
            #expect(
                ledger.entry(small.runId)?.status == .done,
                "\(String(describing: ledger.entry(small.runId)?.exit))"
            )

            // Filling the disk and freeing it again before the end does not hide it: a tick saw it full. The disk
            // stays full for 6 s, so a tick falls into that window even when podman answers slowly (2 s was missed
            // once on a loaded CI).
            var hidden = shellRun("dd if=/dev/zero of=/out/o/big bs=1M count=20 2>/dev/null; sleep 6; rm -f /out/o/big")
            hidden.outputs = [.init(knitId: "d", hostPath: mountPoint + "/data/out-hidden", containerPath: "/out/o")]
            ledger.add(hidden)
            try await drive(driver) { ledger.status(hidden.runId)?.isFinished == true }
            #expect(ledger.entry(hidden.runId)?.exit == RunDriver.diskFullExit)
        }
    }
}

/// F6: the sanitizer on trees made by hand (as root), for what a container can no longer make itself.
@Suite("OutputSanitizer", .enabled(if: getuid() == 0, "making device nodes needs root"))
struct OutputSanitizerTests {
    @Test("F6: device nodes, sockets and links leading out through other links are removed; the rest stays")
    func sanitizesByHand() throws {
        let root = NSTemporaryDirectory() + "knit-sanitizer-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/a/b", withIntermediateDirectories: true)
        defer {
            let remover = Process()
            remover.executableURL = URL(fileURLWithPath: "/bin/rm")
            remover.arguments = ["-rf", root]
            try? remover.run()
            remover.waitUntilExit()
        }
        #expect(mknod(root + "/null", S_IFCHR | 0o666, dev_t((1 << 8) | 3)) == 0)
        #expect(mknod(root + "/a/disk", S_IFBLK | 0o660, dev_t(7 << 8)) == 0)
        let socketFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let socketPath = Array((root + "/a/sock").utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in socketPath.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        close(socketFD)
        #expect(bound == 0)
        // `up -> .` looks harmless and is; `z -> up/..` looks like the root and leads to its parent.
        #expect(symlink(".", root + "/up") == 0)
        #expect(symlink("up/..", root + "/z") == 0)
        #expect(symlink("../b/../../up", root + "/a/b/fine") == 0)
        #expect(symlink("/tmp", root + "/absolute") == 0)
        #expect(symlink("nowhere", root + "/dangling") == 0)
        // Deeper than any descriptor limit would allow one descriptor per level.
        var deep = root + "/a"
        for _ in 0..<300 {
            deep += "/d"
            #expect(mkdir(deep, 0o755) == 0)
        }
        #expect(FileManager.default.createFile(atPath: deep + "/leaf", contents: Data("x".utf8)))
        #expect(chmod(deep + "/leaf", 0o6755) == 0)
        // An escaping link whose path is longer than PATH_MAX (20 names of 250 bytes), made one level at a time.
        var levelFD = open(root, O_RDONLY | O_DIRECTORY)
        let longName = String(repeating: "n", count: 250)
        for _ in 0..<20 {
            #expect(mkdirat(levelFD, longName, 0o755) == 0)
            let next = openat(levelFD, longName, O_RDONLY | O_DIRECTORY)
            close(levelFD)
            levelFD = next
        }
        #expect(symlinkat("/etc/shadow", levelFD, "escape") == 0)
        close(levelFD)

        let report = OutputSanitizer(owner: (65534, 65534)).sanitize(directory: root, shownAs: "/out")
        #expect(report.problems.isEmpty, "\(report.problems)")
        // Only the leaf's one byte weighs: devices, sockets, links and directories count nothing.
        #expect(report.regularFileBytes == 1)
        let lines = Set(report.changes.map(\.description))
        #expect(lines.contains("knit: removed device node /out/null from the output"))
        #expect(lines.contains("knit: removed device node /out/a/disk from the output"))
        #expect(lines.contains("knit: removed socket /out/a/sock from the output"))
        #expect(lines.contains("knit: removed symlink /out/z -> up/.. from the output: it leads outside the output"))
        #expect(
            lines.contains("knit: removed symlink /out/absolute -> /tmp from the output: it leads outside the output")
        )
        #expect(lines.contains { $0.hasSuffix("/escape -> /etc/shadow from the output: it leads outside the output") })
        #expect(report.changes.count == 7, "\(lines)")
        for gone in ["/null", "/a/disk", "/a/sock", "/z", "/absolute"] {
            var found = stat()
            #expect(lstat(root + gone, &found) != 0, "\(gone) is still there")
        }
        for kept in ["/up", "/a/b/fine", "/dangling", "/a/b"] {
            var found = stat()
            #expect(lstat(root + kept, &found) == 0 && found.st_uid == 65534, "\(kept)")
        }
        var leaf = stat()
        #expect(lstat(deep + "/leaf", &leaf) == 0)
        #expect(leaf.st_mode & 0o7777 == 0o755 && leaf.st_uid == 65534)
        // A second pass finds nothing more to do, and weighs the same.
        var unchanged = OutputSanitizer.Report()
        unchanged.regularFileBytes = 1
        #expect(OutputSanitizer(owner: (65534, 65534)).sanitize(directory: root, shownAs: "/out") == unchanged)
    }
}
