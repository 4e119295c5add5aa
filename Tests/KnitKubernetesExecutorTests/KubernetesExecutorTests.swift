import Glibc
import KnitCore
import KnitKubeClient
import KnitKubernetes
import KnitKubernetesExecutor
import KnitScheduler
import KnitSystem
import KnitTestSupport
import Testing

@Suite(
    .serialized,
    .enabled(if: kubernetesTestsEnabled, "set KNIT_K8S_TESTS=1 to run against a real cluster"),
    .kubernetesCluster
)
struct KubernetesExecutorTests {
    /// The busybox image `scripts/k8s-cluster up` imports into the node's containerd (no registry).
    static let busybox = "knit.local/busybox:1.35"

    /// A class so its data directory (files written by the pods) goes when the test ends.
    final class Fixture {
        let executor: KubernetesExecutor
        let dataDirectory: String

        init(pullFailureGrace: Duration = .seconds(60), instance: String = "knit-test") throws {
            dataDirectory = try makeTemporaryDirectory(prefix: "knit-k8s-data-")
            executor = try Self.executor(
                instance: instance,
                dataDirectory: dataDirectory,
                pullFailureGrace: pullFailureGrace
            )
        }

        /// An executor over the test cluster; a second one over the same instance is a restarted scheduler's.
        static func executor(
            instance: String,
            dataDirectory: String,
            pullFailureGrace: Duration = .seconds(60)
        ) throws -> KubernetesExecutor {
            let settings = try KubernetesSettings(
                namespace: "default",
                instance: instance,
                volumes: .hostPath,
                dataDirectory: dataDirectory
            )
            return KubernetesExecutor(
                api: try KubernetesExecutorTests.api(),
                settings: settings,
                imagePullPolicy: "Never",
                pullFailureGrace: pullFailureGrace
            )
        }

        deinit {
            executor.shutdown()
            try? removeTree(dataDirectory)
        }

        /// A directory of the data directory, made as the store makes a Data's directory.
        func data(_ knitId: String, file: String? = nil, content: String = "") throws -> RunMount {
            let path = dataDirectory + "/" + knitId
            #expect(mkdir(path, 0o755) == 0)
            if let file { try KubernetesExecutorTests.writeFile(content, to: path + "/" + file) }
            return RunMount(knitId: knitId, hostPath: path, containerPath: "/" + knitId)
        }

        func launch(
            _ runId: String,
            _ script: String,
            inputs: [RunMount] = [],
            outputs: [RunMount] = [],
            memoryBytes: Int64? = nil,
            cpuMillis: Int? = nil,
            image: String = busybox
        ) throws -> RunLaunch {
            let logDirectory = try data("log-" + runId)
            return RunLaunch(
                ScheduledRun(
                    runId: runId,
                    planId: "plan",
                    image: image,
                    entrypoint: ["sh", "-c", script],
                    inputs: inputs,
                    outputs: outputs,
                    logPath: logDirectory.hostPath + "/log",
                    cpuMillis: cpuMillis,
                    memoryBytes: memoryBytes
                )
            )
        }

        func waitForEnd(_ runId: String, within: Duration = .seconds(90)) async throws -> ExecutorObservation {
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: within)
            while clock.now < deadline {
                let seen = try await executor.observe(runIds: [runId])[runId]
                if case .exited = seen { return seen! }
                try await Task.sleep(for: .milliseconds(200))
            }
            return try await executor.observe(runId: runId)
        }

        /// Cleans the Run up and checks nothing of it is left, on the cluster or in `list()`.
        func cleanUp(_ runId: String) async throws {
            try await executor.cleanup(runId: runId)
            #expect(try await executor.observe(runId: runId) == .notFound)
            #expect(!(try await executor.list()).contains(runId))
        }
    }

    /// A client of its own, as a user's kubectl would be, for what the test does behind the executor's back.
    static func api() throws -> KubeAPI {
        let cluster = try #require(KubernetesTestCluster.directory)
        return try KubeAPI(config: try KubeConfig.load(path: cluster + "/admin.kubeconfig"))
    }

    static let podsPath = "/api/v1/namespaces/default/pods"
    static let jobsPath = "/apis/batch/v1/namespaces/default/jobs"

    /// The Run's pods as the API server has them now.
    static func pods(_ runId: String, instance: String = "knit-test") throws -> [JSONValue] {
        try api().list(podsPath, labelSelector: "knit.run=\(runId),knit.executor=\(instance)").items
    }

    /// Waits until `condition` holds, polling every 50 ms; false when it did not within `within`.
    static func eventually(within: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: within)
        while clock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try await condition()
    }

    static func writeFile(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        #expect(fd >= 0)
        _ = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress!, $0.count - 1) }
        close(fd)
    }

    static func read(_ path: String) -> String { readTextFile(path) ?? "<missing \(path)>" }

    @Test func aRunReadsItsInputWritesItsOutputAndItsLogReachesLogPath() async throws {
        let fixture = try Fixture()
        let input = try fixture.data("in-a", file: "greeting", content: "hello\n")
        let output = try fixture.data("out-a")
        let runId = "io-\(UInt32.random(in: 0...UInt32.max))"
        let launch = try fixture.launch(
            runId,
            "cat /in-a/greeting > /out-a/result; echo to-stdout; echo to-stderr >&2;"
                + " if touch /in-a/x 2>/dev/null; then echo input-writable; else echo input-read-only; fi",
            inputs: [input],
            outputs: [output]
        )
        let clock = ContinuousClock()
        let started = clock.now
        try await fixture.executor.start(launch)
        #expect(try await fixture.executor.list().contains(runId))
        let end = try await fixture.waitForEnd(runId)
        print("io Run: start → exited in \(clock.now - started)")
        #expect(end == .exited(code: 0, oomKilled: false, message: "exited with code 0"))
        #expect(Self.read(output.hostPath + "/result") == "hello\n")
        let log = Self.read(launch.logPath!)
        #expect(log.contains("to-stdout\n"))
        #expect(log.contains("to-stderr\n"))
        #expect(log.contains("input-read-only\n"))
        #expect(fixture.executor.workerName(runId: runId) == "knit-run-" + runId)
        try await fixture.cleanUp(runId)
        // The Data directories are the store's: cleanup never touches them.
        #expect(Self.read(output.hostPath + "/result") == "hello\n")
    }

    @Test func aRunExitingWithThreeIsReportedExitedThree() async throws {
        let fixture = try Fixture()
        let runId = "exit3-\(UInt32.random(in: 0...UInt32.max))"
        try await fixture.executor.start(try fixture.launch(runId, "echo failing; exit 3"))
        let end = try await fixture.waitForEnd(runId)
        #expect(end == .exited(code: 3, oomKilled: false, message: "exited with code 3"))
        try await fixture.cleanUp(runId)
    }

    @Test func aRunOverItsMemoryLimitIsOOMKilledWith137() async throws {
        let fixture = try Fixture()
        let runId = "oom-\(UInt32.random(in: 0...UInt32.max))"
        try await fixture.executor.start(
            try fixture.launch(runId, "echo filling memory; tail /dev/zero", memoryBytes: 32 << 20)
        )
        let end = try await fixture.waitForEnd(runId)
        guard case .exited(let code, let oomKilled, let message) = end else {
            Issue.record("not exited: \(end)")
            return
        }
        #expect(code == 137)
        #expect(oomKilled)
        #expect(message.hasPrefix("OOMKilled"))
        try await fixture.cleanUp(runId)
    }

    @Test func stopEndsARunningRunWithinItsGrace() async throws {
        let fixture = try Fixture()
        let runId = "stop-\(UInt32.random(in: 0...UInt32.max))"
        // The shell is the container's pid 1, which ignores SIGTERM: only the SIGKILL after the grace ends it. The
        // memory limit: a SIGKILL of Knit's own stop is not taken for the kernel's at the memory limit.
        let launch = try fixture.launch(runId, "echo sleeping; sleep 300", memoryBytes: 64 << 20)
        try await fixture.executor.start(launch)
        #expect(try await fixture.executor.observe(runId: runId) == .running)
        let grace = Duration.seconds(2)
        let clock = ContinuousClock()
        let started = clock.now
        try await fixture.executor.stop(runId: runId, grace: grace)
        let took = clock.now - started
        let stopped = try #require(try Self.pods(runId).first)
        let terminated = stopped["status"]?["containerStatuses"]?.arrayValue?.first?["state"]?["terminated"]
        print(
            "stop: the pod's deletionTimestamp (delete + grace) \(stopped["metadata"]?["deletionTimestamp"]?.stringValue ?? "?"),"
                + " its container finished \(terminated?["finishedAt"]?.stringValue ?? "?") (seconds)"
        )
        #expect(try await Self.eventually { try Self.pods(runId).isEmpty })
        let gone = clock.now - started
        print("stop with \(grace) grace: container terminated after \(took), pod gone after \(gone)")
        // At least the grace (the delete carried it: the default would be 30 s), and then only what the
        // kubelet takes to kill and report, with a wide margin for a busy machine.
        #expect(took >= grace)
        #expect(took < grace + .seconds(12))
        let after = try await fixture.executor.observe(runId: runId)
        #expect(after == .exited(code: 137, oomKilled: false, message: "exited with code 137"))
        #expect(Self.read(launch.logPath!) == "sleeping\n")
        // A second stop changes nothing and is no error.
        try await fixture.executor.stop(runId: runId, grace: grace)
        try await fixture.cleanUp(runId)
    }

    @Test func observeAnswersFromTheWatchWithoutARequestPerCall() async throws {
        let fixture = try Fixture()
        let runIds = (0..<3).map { "watch\($0)-\(UInt32.random(in: 0...UInt32.max))" }
        for runId in runIds { try await fixture.executor.start(try fixture.launch(runId, "sleep 120")) }
        let seen = try await fixture.executor.observe(runIds: runIds)
        #expect(runIds.allSatisfy { seen[$0] == .running })
        let before = fixture.executor.api.requestCounts
        for _ in 0..<100 {
            let each = try await fixture.executor.observe(runIds: runIds)
            #expect(each.count == runIds.count)
        }
        let after = fixture.executor.api.requestCounts
        let sent =
            after.filter { $0.key != "log" }.values.reduce(0, +)
            - before.filter { $0.key != "log" }.values.reduce(0, +)
        print("100 observe calls over \(runIds.count) running Runs sent \(sent) requests; all so far: \(after)")
        // The watches (one per collection) run on; no call sends a request of its own. Each running Run has
        // one log follower (its request may go out just after the first observation that saw it run).
        #expect(sent == 0)
        #expect(after["watch", default: 0] <= 4)
        #expect(after["log", default: 0] <= runIds.count)
        #expect(
            try await Self.eventually(within: .seconds(10)) {
                fixture.executor.api.requestCounts["log", default: 0] == runIds.count
            }
        )
        for runId in runIds { try await fixture.cleanUp(runId) }
    }

    @Test func aWatchThatEndsContinuesFromItsResourceVersionWithoutListingAgain() async throws {
        let fixture = try Fixture()
        // Its own client, so its counts are its own.
        let renewing = KubernetesExecutor(
            api: try Self.api(),
            settings: fixture.executor.settings,
            imagePullPolicy: "Never",
            watchTimeoutSeconds: 1
        )
        defer { renewing.shutdown() }
        let runId = "renew-\(UInt32.random(in: 0...UInt32.max))"
        try await renewing.start(try fixture.launch(runId, "sleep 4; exit 3"))
        #expect(try await Self.eventually { try await renewing.observe(runId: runId) != .running })
        #expect(
            try await renewing.observe(runId: runId)
                == .exited(code: 3, oomKilled: false, message: "exited with code 3")
        )
        let counts = renewing.api.requestCounts
        print("watches renewed every second over a 4 s Run: \(counts)")
        #expect(counts["watch", default: 0] >= 6)
        #expect(counts["list", default: 0] == 2)
        try await renewing.cleanup(runId: runId)
    }

    @Test func aJobDeletedBehindKnitsBackEndsTheRunNotFound() async throws {
        let fixture = try Fixture()
        let runId = "deljob-\(UInt32.random(in: 0...UInt32.max))"
        try await fixture.executor.start(try fixture.launch(runId, "sleep 300"))
        #expect(try await fixture.executor.observe(runId: runId) == .running)
        #expect(try Self.api().delete(Self.jobsPath + "/knit-run-" + runId))
        #expect(
            try await Self.eventually(within: .seconds(10)) {
                try await fixture.executor.observe(runId: runId) == .notFound
            }
        )
        // Its volumes are still there: list names the Run, so the driver's sweep removes them.
        #expect(try await fixture.executor.list().contains(runId))
        try await fixture.cleanUp(runId)
    }

    @Test func aPodDeletedBehindKnitsBackEndsTheRunNotFoundWhateverReplacesIt() async throws {
        let fixture = try Fixture()
        let runId = "delpod-\(UInt32.random(in: 0...UInt32.max))"
        try await fixture.executor.start(try fixture.launch(runId, "sleep 300"))
        #expect(try await fixture.executor.observe(runId: runId) == .running)
        let first = try #require(try Self.pods(runId).first)
        let firstName = try #require(first["metadata"]?["name"]?.stringValue)
        #expect(try Self.api().delete(Self.podsPath + "/" + firstName, gracePeriodSeconds: 0))
        #expect(
            try await Self.eventually(within: .seconds(10)) {
                try await fixture.executor.observe(runId: runId) == .notFound
            }
        )
        // The Job controller starts a replacement; it is not the Run going on.
        #expect(
            try await Self.eventually {
                try Self.pods(runId).contains {
                    $0["metadata"]?["name"]?.stringValue != firstName
                        && $0["status"]?["phase"]?.stringValue == "Running"
                }
            }
        )
        #expect(try await fixture.executor.observe(runId: runId) == .notFound)
        try await fixture.cleanUp(runId)
    }

    @Test func theLogGrowsWhileTheRunRunsAndIsWholeWhenItEnds() async throws {
        let fixture = try Fixture()
        let runId = "log-\(UInt32.random(in: 0...UInt32.max))"
        // The last line has no newline: it still reaches the file once the log ends.
        let launch = try fixture.launch(
            runId,
            "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 0.5; done; printf 'no newline'"
        )
        try await fixture.executor.start(launch)
        #expect(try await Self.eventually(within: .seconds(20)) { Self.read(launch.logPath!).hasPrefix("line 1\n") })
        let partial = Self.read(launch.logPath!)
        #expect(try await fixture.executor.observe(runId: runId) == .running)
        #expect(partial.count < Self.tenLines.count)
        #expect(
            try await fixture.waitForEnd(runId) == .exited(code: 0, oomKilled: false, message: "exited with code 0")
        )
        #expect(Self.read(launch.logPath!) == Self.tenLines + "no newline")
        try await fixture.cleanUp(runId)
    }

    @Test func aRestartedExecutorCompletesTheLogOfARunThatEndedMeanwhile() async throws {
        let fixture = try Fixture()
        let runId = "ended-\(UInt32.random(in: 0...UInt32.max))"
        let launch = try fixture.launch(runId, "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 0.3; done")
        try await fixture.executor.start(launch)
        #expect(try await Self.eventually(within: .seconds(20)) { Self.read(launch.logPath!).hasPrefix("line 1\n") })
        fixture.executor.shutdown()
        // The Run ends while no scheduler runs.
        #expect(
            try await Self.eventually {
                try Self.pods(runId).first?["status"]?["phase"]?.stringValue == "Succeeded"
            }
        )
        let prefix = Self.read(launch.logPath!)
        #expect(prefix.count < Self.tenLines.count)
        let restarted = try Fixture.executor(instance: "knit-test", dataDirectory: fixture.dataDirectory)
        defer { restarted.shutdown() }
        #expect(
            try await restarted.observe(runId: runId)
                == .exited(code: 0, oomKilled: false, message: "exited with code 0")
        )
        #expect(Self.read(launch.logPath!) == Self.tenLines)
        try await restarted.cleanup(runId: runId)
    }

    static let tenLines = (1...10).map { "line \($0)\n" }.joined()

    @Test func aRestartedExecutorAdoptsARunningRunStartsNothingAndCompletesItsLogOnce() async throws {
        let instance = "knit-adopt-\(UInt32.random(in: 0...UInt32.max))"
        let fixture = try Fixture(instance: instance)
        let runId = "adopt-\(UInt32.random(in: 0...UInt32.max))"
        let launch = try fixture.launch(runId, "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 0.6; done")
        try await fixture.executor.start(launch)
        #expect(try await Self.eventually(within: .seconds(20)) { Self.read(launch.logPath!).hasPrefix("line 1\n") })
        let job = try #require(try Self.api().get(Self.jobsPath + "/knit-run-" + runId))
        // The scheduler goes away mid-Run; its log follower with it.
        fixture.executor.shutdown()
        try await Task.sleep(for: .milliseconds(1500))
        let prefix = Self.read(launch.logPath!)
        #expect(Self.tenLines.hasPrefix(prefix))

        let restarted = try Fixture.executor(instance: instance, dataDirectory: fixture.dataDirectory)
        defer { restarted.shutdown() }
        #expect(try await restarted.list() == [runId])
        // The driver never starts a Run twice, but a start of a Run whose Job works is harmless all the same.
        try await restarted.start(launch)
        let again = try #require(try Self.api().get(Self.jobsPath + "/knit-run-" + runId))
        #expect(again["metadata"]?["uid"] == job["metadata"]?["uid"])
        let end = try await Self.eventually(within: .seconds(60)) {
            if case .exited = try await restarted.observe(runId: runId) { return true }
            return false
        }
        #expect(end)
        #expect(
            try await restarted.observe(runId: runId)
                == .exited(code: 0, oomKilled: false, message: "exited with code 0")
        )
        #expect(Self.read(launch.logPath!) == Self.tenLines)
        #expect(try Self.pods(runId, instance: instance).count == 1)
        try await restarted.cleanup(runId: runId)
        #expect(try await restarted.list() == [])
    }

    @Test func aPodNoNodeCanTakeStaysPendingWithTheSchedulersReason() async throws {
        let fixture = try Fixture()
        let runId = "cpu64-\(UInt32.random(in: 0...UInt32.max))"
        // The driver leaves a Run whose start timed out `starting` and observes it.
        await #expect(throws: ExecutorError.self) {
            try await fixture.executor.start(try fixture.launch(runId, "true", cpuMillis: 64_000))
        }
        let seen = try await fixture.executor.observe(runId: runId)
        guard case .pending(let reason) = seen else {
            Issue.record("not pending: \(seen)")
            return
        }
        #expect(reason.contains("Insufficient cpu"))
        try await Task.sleep(for: .seconds(2))
        #expect(try await fixture.executor.observe(runId: runId) == seen)
        try await fixture.cleanUp(runId)
    }

    @Test func anImageTheNodeCannotHaveEndsExited255ImageNotFoundAfterTheGrace() async throws {
        let fixture = try Fixture(pullFailureGrace: .seconds(2))
        let runId = "pull-\(UInt32.random(in: 0...UInt32.max))"
        try await fixture.executor.start(try fixture.launch(runId, "true", image: "knit.local/absent:1"))
        let end = try await fixture.waitForEnd(runId)
        guard case .exited(let code, _, let message) = end else {
            Issue.record("not exited: \(end)")
            return
        }
        #expect(code == 255)
        #expect(message.hasPrefix("[ImageNotFound]"))
        try await fixture.cleanUp(runId)
    }
}
