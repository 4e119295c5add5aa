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

        init(pullFailureGrace: Duration = .seconds(60)) throws {
            let cluster = try #require(KubernetesTestCluster.directory)
            let api = try KubeAPI(config: try KubeConfig.load(path: cluster + "/admin.kubeconfig"))
            dataDirectory = try makeTemporaryDirectory(prefix: "knit-k8s-data-")
            let settings = try KubernetesSettings(
                namespace: "default",
                instance: "knit-test",
                volumes: .hostPath,
                dataDirectory: dataDirectory
            )
            executor = KubernetesExecutor(
                api: api,
                settings: settings,
                imagePullPolicy: "Never",
                pullFailureGrace: pullFailureGrace
            )
        }

        deinit { try? removeTree(dataDirectory) }

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
        // A second start of the same Run (a driver retrying after a lost answer) finds its own objects.
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
        let launch = try fixture.launch(runId, "echo sleeping; sleep 300")
        try await fixture.executor.start(launch)
        #expect(try await fixture.executor.observe(runId: runId) == .running)
        let clock = ContinuousClock()
        let started = clock.now
        try await fixture.executor.stop(runId: runId, grace: .seconds(1))
        let took = clock.now - started
        print("stop with 1 s grace took \(took)")
        #expect(took < .seconds(30))
        let after = try await fixture.executor.observe(runId: runId)
        // The pod may still be torn down (its container killed: 137) or already gone.
        #expect(after == .notFound || after == .exited(code: 137, oomKilled: false, message: "exited with code 137"))
        #expect(took < .seconds(10))
        #expect(Self.read(launch.logPath!).contains("sleeping\n"))
        // A second stop changes nothing and is no error.
        try await fixture.executor.stop(runId: runId, grace: .seconds(1))
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
