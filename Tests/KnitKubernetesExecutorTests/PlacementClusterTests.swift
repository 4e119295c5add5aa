import Foundation
import KnitCore
import KnitKubeClient
import KnitKubernetes
import KnitKubernetesExecutor
import KnitScheduler
import KnitSystem
import KnitTestSupport
import Testing

extension KubernetesWiringTests {
    /// A plan's `must` label the node lacks keeps the pod Pending (the Run `starting`, the scheduler's reason
    /// shown); labelling the node lets it run. The plan's service account is the pod's identity.
    @Test func aMustLabelKeepsThePodPendingUntilTheNodeHasItAndTheServiceAccountIsThePods() async throws {
        let cluster = try #require(KubernetesTestCluster.directory)
        let dataDirectory = try makeTemporaryDirectory(prefix: "knit-k8s-data-")
        defer { try? removeTree(dataDirectory) }
        let suffix = "\(UInt32.random(in: 0...UInt32.max))"
        let account = "trainer-\(suffix)"
        try await Self.kubectlOK(["create", "serviceaccount", account, "--namespace", "default"])
        let settings = try KubernetesSettings(
            namespace: "default",
            instance: "knit-wiring",
            volumes: .hostPath,
            dataDirectory: dataDirectory
        )
        let executor = KubernetesExecutor(
            api: try KubeAPI(config: try KubeConfig.load(path: cluster + "/admin.kubeconfig")),
            settings: settings,
            imagePullPolicy: "Never",
            startWait: .seconds(2)
        )
        let runId = "placed-\(suffix)"
        let launch = Self.launch(
            runId,
            "echo placed as $(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)",
            dataDirectory: dataDirectory,
            onNode: [OnNodeLabel(mode: .must, key: "knit-test-pool", value: suffix)],
            serviceAccount: account
        )
        // A pod no node can take does not run: start says so (`timedOut`, which leaves the Run `starting`).
        await #expect(throws: ExecutorError.self) { try await executor.start(launch) }
        defer { _ = Task { try? await executor.cleanup(runId: runId) } }
        // Give the cluster's scheduler time to try (and fail) to place it.
        try await Task.sleep(for: .seconds(5))
        let waiting = try await executor.observe(runId: runId)
        guard case .pending(let reason) = waiting else {
            Issue.record("not pending: \(waiting)")
            return
        }
        #expect(reason.hasPrefix("Unschedulable: "), "\(reason)")
        let pod = try JSONSerialization.jsonObject(
            with: Data(
                try await Self.kubectlOK(["get", "pods", "-l", "knit.run=\(runId)", "-o", "json"]).utf8
            )
        )
        let items = (pod as? [String: Any])?["items"] as? [[String: Any]] ?? []
        let spec = items.first?["spec"] as? [String: Any]
        #expect(spec?["serviceAccountName"] as? String == account)
        #expect(spec?["nodeName"] == nil, "scheduled although no node has the label")
        let conditions = (items.first?["status"] as? [String: Any])?["conditions"] as? [[String: Any]] ?? []
        let scheduled = conditions.first { $0["type"] as? String == "PodScheduled" }
        #expect(scheduled?["reason"] as? String == "Unschedulable", "\(conditions)")

        try await Self.kubectlOK(["label", "node", "knit-node", "knit-test-pool=\(suffix)"])
        defer { _ = Task { try? await Self.kubectl(["label", "node", "knit-node", "knit-test-pool-"]) } }
        let end = try await Self.waitForEnd(executor, runId)
        #expect(end == .exited(code: 0, oomKilled: false, message: "exited with code 0"))
        #expect(readTextFile(launch.logPath!) == "placed as default\n")
        try await executor.cleanup(runId: runId)
        try await Self.kubectlOK(["label", "node", "knit-node", "knit-test-pool-"])
        try await Self.kubectlOK(["delete", "serviceaccount", account, "--namespace", "default"])
    }
}
