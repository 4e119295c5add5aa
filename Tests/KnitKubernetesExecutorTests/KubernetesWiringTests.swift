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

    @Test func theSchedulerStartsOnTheClusterWithoutAHostBudgetWritesThePullSecretAndStopsOnSIGTERM() async throws {
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
            "--image-pull-policy", "Never", "--registry-authfile", auth,
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
        #expect(try await scheduler.stop() == KnitSystem.ExitStatus(code: 0))
        #expect(scheduler.log.contains("knit-scheduler stopped"))
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
