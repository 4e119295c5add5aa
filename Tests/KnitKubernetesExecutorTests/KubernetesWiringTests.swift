import Foundation
import Glibc
import KnitCore
import KnitKubeClient
import KnitKubernetes
import KnitKubernetesExecutor
import KnitScheduler
import KnitSystem
import KnitTestSupport
import Testing

/// `knit-scheduler --executor kubernetes` and what it wires up, on the real test cluster.
@Suite(
    .serialized,
    .enabled(if: kubernetesTestsEnabled, "set KNIT_K8S_TESTS=1 to run against a real cluster"),
    .kubernetesCluster
)
struct KubernetesWiringTests {
    static var adminKubeconfig: String {
        get throws { try #require(KubernetesTestCluster.directory) + "/admin.kubeconfig" }
    }

    @Test func aNamespaceThatDoesNotExistEndsTheSchedulerWithExit2() async throws {
        let scheduler = try SchedulerProcess([
            "--executor", "kubernetes", "--kubeconfig", try Self.adminKubeconfig, "--namespace", "no-such-ns",
        ])
        #expect(try await scheduler.waitForExit() == KnitSystem.ExitStatus(code: 2))
        #expect(scheduler.log.contains("namespace no-such-ns does not exist on https://"), "\(scheduler.log)")
    }

    @Test func theSchedulerStartsWithoutAHostBudgetKeepsThePullSecretUpToDateAndStopsOnSIGTERM() async throws {
        let directory = scratchDirectory()
        defer { try? removeTree(directory) }
        let auth = directory + "/auth.json"
        try Self.authFile(auth, host: "registry.example:8443", user: "knit-scheduler", token: "at-start")
        let api = try Self.adminAPI()
        let secretPath = "/api/v1/namespaces/default/secrets/knit-registry"
        _ = try? api.delete(secretPath)
        defer { _ = try? api.delete(secretPath) }
        let scheduler = try SchedulerProcess([
            "--executor", "kubernetes", "--kubeconfig", try Self.adminKubeconfig, "--instance", "knit-wiring",
            "--image-pull-policy", "Never", "--registry-authfile", auth, "--pull-secret-check-seconds", "1",
        ])
        let running = await scheduler.waitForLog("knit-scheduler running")
        #expect(running, "\(scheduler.log)")
        let log = scheduler.log
        #expect(log.contains("executor=kubernetes"), "\(log)")
        #expect(log.contains("kubernetes.namespace=default"), "\(log)")
        // No host budget: the cluster's scheduler decides what fits.
        #expect(log.contains("cpu.millis=\(Int32.max)"), "\(log)")
        // The pull Secret is written before the driver starts.
        #expect(log.contains("registry pull Secret written"), "\(log)")
        #expect(log.contains("outcome=created"), "\(log)")
        let written = FileManager.default.contents(atPath: auth)?.base64EncodedString()
        #expect(try api.get(secretPath)?["data"]?[".dockerconfigjson"]?.stringValue == written)
        // A rotated token in the file reaches the Secret at the next look, while the scheduler runs.
        try Self.authFile(auth, host: "registry.example:8443", user: "knit-scheduler", token: "rotated")
        let rotated = FileManager.default.contents(atPath: auth)?.base64EncodedString()
        let updated = await scheduler.waitForLog("outcome=updated", within: .seconds(30))
        #expect(updated, "\(scheduler.log)")
        #expect(try api.get(secretPath)?["data"]?[".dockerconfigjson"]?.stringValue == rotated)
        #expect(try await scheduler.stop() == KnitSystem.ExitStatus(code: 0))
        #expect(scheduler.log.contains("knit-scheduler stopped"))
    }

    /// The store's Run through the real scheduler to `done` on the cluster: the input read in place, the
    /// output and the log in the store's data directory, the Run's objects removed after.
    @Test func aRunOfTheStoreEndsDoneThroughTheSchedulerOnTheCluster() async throws {
        let home = scratchDirectory("knit-k8s-home-")
        let planId = try Self.storeWithOneRun(
            home: home,
            script: "cat /in/x/file.txt > /out/y/copy; echo copied; echo to-stderr >&2"
        )
        let scheduler = try SchedulerProcess(
            [
                "--executor", "kubernetes", "--kubeconfig", try Self.adminKubeconfig, "--instance", "knit-store",
                "--image-pull-policy", "Never",
            ],
            home: home
        )
        let clock = ContinuousClock()
        let started = clock.now
        let finished = await scheduler.waitForLog("run finished", within: .seconds(120))
        print("store Run through knit-scheduler on the cluster: start → run finished in \(clock.now - started)")
        #expect(finished, "\(scheduler.log)")
        // The driver removes the Run's objects right after finishing it.
        let objectsGone = await Self.eventually(within: .seconds(60)) {
            (try? await Self.kubectlOK([
                "get", "pv,pvc,jobs,pods", "--all-namespaces", "-l", "knit.executor=knit-store", "-o", "name",
            ]))?.isEmpty == true
        }
        #expect(objectsGone)
        #expect(try await scheduler.stop() == KnitSystem.ExitStatus(code: 0))
        let run = try Self.onlyRun(home: home, planId: planId)
        #expect(run.status == "done", "\(String(describing: run.exit))")
        let output = try #require(run.outputs.first).knitId
        #expect(readTextFile(home + "/data/" + output + "/copy") == "hello")
        let log = try #require(run.log).knitId
        let text = readTextFile(home + "/data/" + log + "/log") ?? ""
        #expect(text.contains("copied\n") && text.contains("to-stderr\n"), "\(text)")
    }

    static func eventually(within: Duration, _ condition: () async -> Bool) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: within)
        while clock.now < deadline {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(500))
        }
        return await condition()
    }
}

extension KubernetesWiringTests {
    /// The cluster's kubectl as its admin: for the tests' own look at the cluster, never the product's.
    static func kubectl(_ arguments: [String]) async throws -> CommandOutput {
        let directory = try #require(KubernetesTestCluster.directory)
        let binaries = try #require(readTextFile(directory + "/bin-path"))
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return try await runCommand(
            [binaries + "/kubectl", "--kubeconfig", directory + "/admin.kubeconfig"] + arguments,
            environment: KubernetesTestCluster.environment,
            directory: directory,
            timeout: .seconds(60)
        )
    }

    /// `kubectl` that must succeed; its standard output.
    @discardableResult
    static func kubectlOK(_ arguments: [String]) async throws -> String {
        let result = try await kubectl(arguments)
        try #require(result.status == 0, "kubectl \(arguments.joined(separator: " ")): \(result.stderr)")
        return result.stdout
    }

    /// A directory for a test's Data, and a launch of `script` in busybox with a log, as the store makes them.
    static func launch(
        _ runId: String,
        _ script: String,
        dataDirectory: String,
        onNode: [OnNodeLabel] = [],
        serviceAccount: String? = nil
    ) -> RunLaunch {
        let logDirectory = dataDirectory + "/log-" + runId
        _ = mkdir(logDirectory, 0o755)
        return RunLaunch(
            ScheduledRun(
                runId: runId,
                planId: "plan",
                image: KubernetesExecutorTests.busybox,
                entrypoint: ["sh", "-c", script],
                logPath: logDirectory + "/log",
                onNode: onNode,
                serviceAccount: serviceAccount
            )
        )
    }

    static func waitForEnd(_ executor: KubernetesExecutor, _ runId: String, within: Duration = .seconds(90))
        async throws -> ExecutorObservation
    {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: within)
        while clock.now < deadline {
            let seen = try await executor.observe(runId: runId)
            if case .exited = seen { return seen }
            try await Task.sleep(for: .milliseconds(200))
        }
        return try await executor.observe(runId: runId)
    }
}
