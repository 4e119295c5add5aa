import Foundation
import KnitCore
import KnitSystem
import Testing

@testable import KnitScheduler

/// Repository root, found from this file's path (Tests/KnitSchedulerTests/…).
private let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
private let containersConf = repositoryRoot + "/containers/containers.conf"
private let quickstartImage = "localhost/knit-quickstart:1"
private let podmanPath = findExecutable("podman")

/// Builds the quickstart image once per test process (the script skips an existing image).
private let quickstartBuilt: Result<Void, any Error> = {
    let script = Process()
    script.executableURL = URL(fileURLWithPath: repositoryRoot + "/examples/quickstart/build-image.sh")
    script.arguments = [quickstartImage]
    var environment = ProcessInfo.processInfo.environment
    environment["CONTAINERS_CONF"] = containersConf
    script.environment = environment
    let errors = Pipe()
    script.standardError = errors
    script.standardOutput = FileHandle.nullDevice
    do {
        try script.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        script.waitUntilExit()
        guard script.terminationStatus == 0 else {
            return .failure(ExecutorError(.commandFailed, "build-image.sh failed: \(text)"))
        }
        return .success(())
    } catch {
        return .failure(error)
    }
}()

private func makeExecutor(instance: String = "knit-tests") throws -> PodmanExecutor {
    try quickstartBuilt.get()
    let podman = try #require(podmanPath)
    return PodmanExecutor(
        configuration: .init(
            podmanPath: podman,
            containersConf: containersConf,
            instance: instance,
            commandTimeout: .seconds(20),
            startTimeout: .seconds(30)
        )
    )
}

/// A scratch directory under /tmp, removed by `remove()`.
private struct Scratch {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "knit-executor-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func directory(_ name: String) throws -> String {
        let directory = path + "/" + name
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    func read(_ relative: String) -> String {
        (try? String(contentsOfFile: path + "/" + relative, encoding: .utf8)) ?? ""
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Runs `body` with a fresh Run id and removes that Run's container afterwards, even when the
/// body throws.
private func withRun<T>(
    _ executor: PodmanExecutor,
    _ body: (_ runId: String, _ scratch: Scratch) async throws -> T
) async throws -> T {
    let runId = "test-" + KnitIdentifier.make()
    let scratch = try Scratch()
    defer { scratch.remove() }
    do {
        let result = try await body(runId, scratch)
        try? await executor.cleanup(runId: runId)
        return result
    } catch {
        try? await executor.cleanup(runId: runId)
        throw error
    }
}

/// Polls until the container has exited.
private func waitForExit(
    _ executor: PodmanExecutor,
    _ runId: String,
    timeout: Duration = .seconds(20)
) async throws -> ExecutorObservation {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while clock.now < deadline {
        let seen = try await executor.observe(runId: runId)
        if case .exited = seen { return seen }
        if seen == .notFound { return seen }
        try await Task.sleep(for: .milliseconds(10))
    }
    throw ExecutorError(.timedOut, "run \(runId) did not exit within \(timeout)")
}

private func shell(_ runId: String, _ script: String, log: String? = nil) -> RunLaunch {
    RunLaunch(ScheduledRun(runId: runId, planId: "test-plan", image: quickstartImage, args: [script], logPath: log))
}

@Suite(
    "PodmanExecutor (real podman containers)",
    .serialized,
    .enabled(if: podmanPath != nil, "podman is not installed")
)
struct PodmanExecutorTests {
    @Test("inputs are read-only, outputs are written, exit 0 is reported")
    func inputsAndOutputs() async throws {
        let executor = try makeExecutor()
        try await withRun(executor) { runId, scratch in
            let input = try scratch.directory("in")
            try "one two three\nfour\n".write(toFile: input + "/words.txt", atomically: true, encoding: .utf8)
            let output = try scratch.directory("out")
            var launch = shell(
                runId,
                """
                wc -w < /in/data/words.txt > /out/count/n
                if touch /in/data/new 2>/dev/null; then echo INPUT-WRITABLE; else echo INPUT-READ-ONLY; fi
                """,
                log: scratch.path + "/log"
            )
            launch.inputs = [.init(knitId: "test-data", hostPath: input, containerPath: "/in/data")]
            launch.outputs = [.init(knitId: "test-data", hostPath: output, containerPath: "/out/count")]
            try await executor.start(launch)
            let seen = try await waitForExit(executor, runId)
            #expect(seen == .exited(code: 0, oomKilled: false, message: "completed"))
            #expect(scratch.read("out/n").trimmingCharacters(in: .whitespacesAndNewlines) == "4")
            #expect(scratch.read("log") == "INPUT-READ-ONLY\n")
            #expect(!FileManager.default.fileExists(atPath: input + "/new"))
        }
    }

    @Test("a non-zero exit code is reported with a message")
    func exitCode() async throws {
        let executor = try makeExecutor()
        try await withRun(executor) { runId, scratch in
            try await executor.start(shell(runId, "echo failing; exit 3", log: scratch.path + "/log"))
            let seen = try await waitForExit(executor, runId)
            #expect(seen == .exited(code: 3, oomKilled: false, message: "exited with code 3"))
            #expect(scratch.read("log") == "failing\n")
        }
    }

    @Test("one inspect answers for several Runs: running, exited and without a container")
    func batchObservation() async throws {
        let executor = try makeExecutor()
        try await withRun(executor) { sleeper, _ in
            try await withRun(executor) { failing, _ in
                try await executor.start(shell(sleeper, "sleep 30"))
                try await executor.start(shell(failing, "exit 3"))
                _ = try await waitForExit(executor, failing)
                let missing = "test-" + KnitIdentifier.make()
                let seen = try await executor.observe(runIds: [sleeper, failing, missing])
                #expect(seen.count == 3)
                #expect(seen[sleeper] == .running)
                #expect(seen[failing] == .exited(code: 3, oomKilled: false, message: "exited with code 3"))
                #expect(seen[missing] == .notFound)
                #expect(try await executor.observe(runIds: [missing]) == [missing: .notFound])
            }
        }
    }

    @Test("exceeding the memory limit is reported as OOMKilled; the same work fits a larger limit")
    func outOfMemory() async throws {
        let executor = try makeExecutor()
        // dd allocates its whole block and fills it, so 100 MiB of it cannot fit in 32 MiB.
        let work = "exec dd if=/dev/zero of=/dev/null bs=100M count=1"
        try await withRun(executor) { runId, _ in
            var launch = shell(runId, work)
            launch.memoryBytes = 32 << 20
            try await executor.start(launch)
            let seen = try await waitForExit(executor, runId)
            guard case .exited(let code, let oomKilled, let message) = seen else {
                Issue.record("expected an exit, saw \(seen)")
                return
            }
            #expect(code == 137)
            #expect(oomKilled)
            #expect(message == "OOMKilled: exceeded its memory limit of 32 MiB")
            // conmon's marker is what proves it on this host; the cleanup below removes it.
            #expect(FileManager.default.fileExists(atPath: executor.configuration.runDirectory + "/\(runId)/oom"))
        }
        try await withRun(executor) { runId, _ in
            var launch = shell(runId, work)
            launch.memoryBytes = 256 << 20
            try await executor.start(launch)
            #expect(try await waitForExit(executor, runId) == .exited(code: 0, oomKilled: false, message: "completed"))
        }
    }

    @Test("an image that is not in the store fails to start with a clear message and leaves nothing")
    func missingImage() async throws {
        let executor = try makeExecutor()
        try await withRun(executor) { runId, scratch in
            let logPath = scratch.path + "/log"
            try "kept\n".write(toFile: logPath, atomically: true, encoding: .utf8)
            let launch = RunLaunch(
                ScheduledRun(
                    runId: runId,
                    planId: "test-plan",
                    image: "localhost/knit-no-such-image:0",
                    logPath: logPath
                )
            )
            let error = try await #require(throws: ExecutorError.self) { try await executor.start(launch) }
            #expect(error.code == .imageNotFound)
            #expect(error.exitCode == 125)
            #expect(error.message.contains("localhost/knit-no-such-image:0"))
            #expect(error.message.contains("image not known"))
            #expect(try await executor.observe(runId: runId) == .notFound)
            // podman's complaint went into the error, not into the Run's log.
            #expect(scratch.read("log") == "kept\n")
        }
    }

    @Test("a missing entrypoint fails to start with podman's exit 127")
    func missingEntrypoint() async throws {
        let executor = try makeExecutor()
        try await withRun(executor) { runId, _ in
            let launch = RunLaunch(
                ScheduledRun(
                    runId: runId,
                    planId: "test-plan",
                    image: quickstartImage,
                    entrypoint: ["/bin/no-such-program"]
                )
            )
            let error = try await #require(throws: ExecutorError.self) { try await executor.start(launch) }
            #expect(error.code == .startFailed)
            #expect(error.exitCode == 127)
            #expect(error.message.contains("/bin/no-such-program"))
            #expect(try await executor.observe(runId: runId) == .notFound)
        }
    }

    @Test("unusable launches are refused before podman runs")
    func invalidLaunches() async throws {
        let executor = try makeExecutor()
        try await withRun(executor) { runId, scratch in
            let output = try scratch.directory("out")
            try "x".write(toFile: output + "/leftover", atomically: true, encoding: .utf8)
            var launch = shell(runId, "true")
            launch.outputs = [.init(knitId: "test-data", hostPath: output, containerPath: "/out/x")]
            let notEmpty = try await #require(throws: ExecutorError.self) { try await executor.start(launch) }
            #expect(notEmpty.code == .invalidLaunch)
            #expect(notEmpty.message.contains("not empty"))

            launch.outputs = []
            launch.inputs = [.init(knitId: "test-data", hostPath: scratch.path + "/absent", containerPath: "/in/x")]
            let missing = try await #require(throws: ExecutorError.self) { try await executor.start(launch) }
            #expect(missing.code == .invalidLaunch)
            #expect(missing.message.contains(scratch.path + "/absent"))

            let badId = try await #require(throws: ExecutorError.self) {
                try await executor.start(shell("bad id/..", "true"))
            }
            #expect(badId.code == .invalidLaunch)
            let escaping = try await #require(throws: ExecutorError.self) { try await executor.cleanup(runId: "..") }
            #expect(escaping.code == .invalidLaunch)
            #expect(try await executor.observe(runId: runId) == .notFound)
        }
    }

    @Test("entrypoint, args, environment and cpu limit reach the container")
    func launchParameters() async throws {
        let executor = try makeExecutor()
        try await withRun(executor) { runId, scratch in
            let launch = RunLaunch(
                ScheduledRun(
                    runId: runId,
                    planId: "test-plan",
                    image: quickstartImage,
                    entrypoint: ["/bin/sh", "-c"],
                    args: [
                        // 250m is a CFS quota of 25000 µs per 100000 µs (cgroup v1 file, else v2).
                        "echo \"$GREETING|$0|$1\"; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max",
                        "first arg", "second  arg",
                    ],
                    logPath: scratch.path + "/log",
                    cpuMillis: 250
                ),
                environment: ["GREETING": "hello world"]
            )
            try await executor.start(launch)
            #expect(try await waitForExit(executor, runId) == .exited(code: 0, oomKilled: false, message: "completed"))
            let lines = scratch.read("log").split(separator: "\n")
            #expect(lines.first == "hello world|first arg|second  arg")
            #expect(lines.count == 2 && lines[1].hasPrefix("25000"))
        }
    }

    @Test("stopping a running container ends it with 143 (TERM handled) or 137 (TERM ignored)")
    func stop() async throws {
        let executor = try makeExecutor()
        // As PID 1, sh ignores SIGTERM unless it traps it: podman must fall back to SIGKILL.
        try await withRun(executor) { runId, _ in
            var launch = shell(runId, "sleep 30")
            launch.memoryBytes = 64 << 20
            try await executor.start(launch)
            let clock = ContinuousClock()
            let began = clock.now
            try await executor.stop(runId: runId, grace: .seconds(1))
            #expect(clock.now - began < .seconds(10))
            let seen = try await executor.observe(runId: runId)
            // A memory limit plus exit 137 would look like an OOM kill if the executor forgot it stopped it.
            #expect(
                seen
                    == .exited(code: 137, oomKilled: false, message: "stopped: killed (SIGKILL) after the grace period")
            )
        }
        try await withRun(executor) { runId, scratch in
            try await executor.start(
                shell(
                    runId,
                    "trap 'echo got TERM; exit 143' TERM; echo ready; sleep 30 & wait",
                    log: scratch.path + "/log"
                )
            )
            // Stop only once the trap is installed.
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: .seconds(10))
            while !scratch.read("log").contains("ready") && clock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            try await executor.stop(runId: runId, grace: .seconds(5))
            #expect(
                try await executor.observe(runId: runId)
                    == .exited(code: 143, oomKilled: false, message: "stopped: terminated by SIGTERM")
            )
            #expect(scratch.read("log") == "ready\ngot TERM\n")
            // Stopping again, or stopping a Run without a container, is not an error.
            try await executor.stop(runId: runId, grace: .seconds(1))
            try await executor.stop(runId: "test-never-started-\(UUID().uuidString)", grace: .seconds(1))
        }
    }

    @Test("the log file gets stdout and stderr merged in order and grows while the container runs")
    func logFile() async throws {
        let executor = try makeExecutor()
        try await withRun(executor) { runId, scratch in
            let logPath = scratch.path + "/log"
            try await executor.start(
                shell(runId, "echo out1; echo err1 >&2; echo out2; echo err2 >&2; sleep 1; echo late", log: logPath)
            )
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: .seconds(10))
            while !scratch.read("log").contains("err2") && clock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            // Followable: the early lines are there while the container still runs.
            #expect(scratch.read("log") == "out1\nerr1\nout2\nerr2\n")
            #expect(try await executor.observe(runId: runId) == .running)
            #expect(try await waitForExit(executor, runId) == .exited(code: 0, oomKilled: false, message: "completed"))
            #expect(scratch.read("log") == "out1\nerr1\nout2\nerr2\nlate\n")
        }
    }

    @Test("a new executor instance finds running containers by label, and cleanup removes them")
    func reconcileAfterRestart() async throws {
        let before = try makeExecutor()
        try await withRun(before) { runId, _ in
            try await before.start(shell(runId, "sleep 30"))
            let after = try makeExecutor()  // as if the scheduler had restarted
            #expect(try await after.list().contains(runId))
            #expect(try await after.observe(runId: runId) == .running)
            // Another installation on the same host does not see it.
            #expect(try await makeExecutor(instance: "knit-tests-other").list().contains(runId) == false)

            #expect(FileManager.default.fileExists(atPath: after.configuration.runDirectory + "/\(runId)"))
            try await after.cleanup(runId: runId)
            #expect(try await after.observe(runId: runId) == .notFound)
            #expect(!FileManager.default.fileExists(atPath: after.configuration.runDirectory + "/\(runId)"))
            #expect(try await after.list().contains(runId) == false)
            // Cleaning up twice is fine.
            try await after.cleanup(runId: runId)
        }
    }

    @Test("a second start of the same Run is refused and does not disturb the first")
    func doubleStart() async throws {
        let executor = try makeExecutor()
        try await withRun(executor) { runId, scratch in
            let launch = shell(runId, "sleep 30", log: scratch.path + "/log")
            try await executor.start(launch)
            let error = try await #require(throws: ExecutorError.self) { try await executor.start(launch) }
            #expect(error.code == .alreadyExists)
            #expect(try await executor.observe(runId: runId) == .running)
            #expect(scratch.read("log") == "")
            // A restarted executor does not remember the Run, but podman refuses the name.
            let restarted = try makeExecutor()
            let again = try await #require(throws: ExecutorError.self) { try await restarted.start(launch) }
            #expect(again.code == .alreadyExists)
            #expect(again.message.contains("already in use"))
            #expect(try await restarted.observe(runId: runId) == .running)
        }
    }

    @Test("start-to-exit latency of a trivial container (median of 5)")
    func latency() async throws {
        let executor = try makeExecutor()
        var samples: [Duration] = []
        for _ in 0..<5 {
            try await withRun(executor) { runId, _ in
                let clock = ContinuousClock()
                let began = clock.now
                try await executor.start(
                    RunLaunch(
                        ScheduledRun(
                            runId: runId,
                            planId: "test-plan",
                            image: quickstartImage,
                            entrypoint: ["/bin/true"]
                        )
                    )
                )
                let seen = try await waitForExit(executor, runId)
                samples.append(clock.now - began)
                #expect(seen == .exited(code: 0, oomKilled: false, message: "completed"))
            }
        }
        let median = samples.sorted()[2]
        print("PodmanExecutor start-to-exit: median \(median), samples \(samples.sorted())")
        #expect(median < .seconds(5))
    }
}

@Suite("PodmanExecutor helpers")
struct PodmanExecutorHelperTests {
    @Test("cpu limits are rendered as podman --cpus values")
    func cpuText() {
        #expect(PodmanExecutor.cpuText(millis: 1000) == "1")
        #expect(PodmanExecutor.cpuText(millis: 1500) == "1.5")
        #expect(PodmanExecutor.cpuText(millis: 250) == "0.25")
        #expect(PodmanExecutor.cpuText(millis: 5) == "0.005")
        #expect(PodmanExecutor.cpuText(millis: 2020) == "2.02")
    }

    @Test("podman's error text is reduced to its Error: lines")
    func podmanError() {
        let text = "runc create failed: exec: \"/x\": no such file\nError: runc: exec: \"/x\": no such file\n"
        #expect(PodmanExecutor.podmanError(text) == "runc: exec: \"/x\": no such file")
        #expect(PodmanExecutor.podmanError("  plain words \n") == "plain words")
        #expect(PodmanExecutor.podmanError("") == "(no output)")
    }

    @Test("exit messages name the reason")
    func exitMessages() {
        #expect(
            PodmanExecutor.exitMessage(code: 0, oomKilled: false, memoryLimit: 0, stopped: false, runtimeError: "")
                == "completed"
        )
        #expect(
            PodmanExecutor.exitMessage(
                code: 137,
                oomKilled: true,
                memoryLimit: 1 << 30,
                stopped: false,
                runtimeError: ""
            )
                == "OOMKilled: exceeded its memory limit of 1 GiB"
        )
        #expect(
            PodmanExecutor.exitMessage(code: 137, oomKilled: false, memoryLimit: 0, stopped: false, runtimeError: "")
                == "killed by SIGKILL"
        )
        #expect(
            PodmanExecutor.exitMessage(code: 130, oomKilled: false, memoryLimit: 0, stopped: false, runtimeError: "")
                == "killed by signal 2"
        )
        #expect(
            PodmanExecutor.exitMessage(code: 1, oomKilled: false, memoryLimit: 0, stopped: false, runtimeError: "boom")
                == "exited with code 1 (runtime: boom)"
        )
    }

    @Test("cgroup counters are parsed from name-value lines")
    func counters() {
        #expect(CgroupMemory.counter("oom_kill", in: "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n") == 2)
        #expect(CgroupMemory.counter("oom_kill", in: "low 0\nhigh 0\n") == nil)
        #expect(CgroupMemory.counter("oom_kill", in: nil) == nil)
    }
}
