import Glibc
import KnitKubeClient
import KnitKubernetes
import KnitKubernetesExecutor
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

    @Test func theSchedulerStartsOnTheClusterWithoutAHostBudgetAndStopsOnSIGTERM() async throws {
        let scheduler = try SchedulerProcess([
            "--executor", "kubernetes", "--kubeconfig", try Self.adminKubeconfig, "--instance", "knit-wiring",
            "--image-pull-policy", "Never",
        ])
        let running = await scheduler.waitForLog("knit-scheduler running")
        #expect(running, "\(scheduler.log)")
        let log = scheduler.log
        #expect(log.contains("executor=kubernetes"), "\(log)")
        #expect(log.contains("kubernetes.namespace=default"), "\(log)")
        // No host budget: the cluster's scheduler decides what fits.
        #expect(log.contains("cpu.millis=\(Int32.max)"), "\(log)")
        #expect(try await scheduler.stop() == KnitSystem.ExitStatus(code: 0))
        #expect(scheduler.log.contains("knit-scheduler stopped"))
    }
}
