import KnitCore
import KnitKubeClient
import KnitKubernetes
import KnitKubernetesExecutor
import KnitScheduler
import KnitStore
import KnitSystem
import KnitTestSupport
import Logging
import Testing

/// A plan's `on_node` and `service_account` on their way: the store's ScheduledRun → the driver's RunLaunch →
/// the Job the executor builds.
struct PlacementTests {
    /// A store with one plan (`onNode`, `serviceAccount`) and one input, so it holds one startable Run.
    static func scheduledRun(onNode: OnNodeJSON?, serviceAccount: String?) throws -> ScheduledRun {
        let home = scratchDirectory("knit-placement-")
        defer { try? removeTree(home) }
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let store = try KnitStore(home: home, logger: logger, mapSize: 64 << 20)
        defer { store.close() }
        let tag = try Tag(parsing: "stage:x")
        _ = try store.registerPlan(
            PlanSpecJSON(
                image: "registry.knit.example:5000/train:v1",
                inputs: [MountpointJSON(path: "/in/x", tags: TagSet([tag]))],
                onNode: onNode,
                serviceAccount: serviceAccount
            ),
            creator: "alice"
        )
        let ticket = try store.beginUpload(creator: "alice")
        writeFile(ticket.stagingPath + "/file.txt", "hello")
        _ = try store.finishUpload(ticket, tags: [tag], sizeBytes: 5)
        let runs = try store.runsToStart(limit: 10)
        try #require(runs.count == 1)
        return runs[0]
    }

    static let settings = try! KubernetesSettings(
        namespace: "knit",
        instance: "knit",
        volumes: .hostPath,
        dataDirectory: "/var/lib/knit/data"
    )

    @Test func onNodeAndServiceAccountGoFromThePlanToTheJob() throws {
        let run = try Self.scheduledRun(
            onNode: OnNodeJSON(may: ["spot=yes"], must: ["accelerator=gpu"]),
            serviceAccount: "trainer"
        )
        #expect(
            run.onNode == [
                OnNodeLabel(mode: .may, key: "spot", value: "yes"),
                OnNodeLabel(mode: .must, key: "accelerator", value: "gpu"),
            ]
        )
        #expect(run.serviceAccount == "trainer")
        #expect(run.placementSettings == ["on_node", "service_account"])

        let launch = RunLaunch(run, environment: ["KNIT_RUN_ID": run.runId])
        let kubernetesRun = KubernetesRun(launch)
        #expect(kubernetesRun.onNode == run.onNode)
        #expect(kubernetesRun.serviceAccount == "trainer")
        #expect(kubernetesRun.environment == ["KNIT_RUN_ID": run.runId])

        let pod = try KubernetesObjects.build(kubernetesRun, settings: Self.settings).job["spec"]?["template"]?["spec"]
        #expect(pod?["serviceAccountName"] == .string("trainer"))
        #expect(pod?["automountServiceAccountToken"] == .bool(true))
        let required = pod?["affinity"]?["nodeAffinity"]?["requiredDuringSchedulingIgnoredDuringExecution"]
        let term = required?["nodeSelectorTerms"]?.arrayValue?.first
        let expression = term?["matchExpressions"]?.arrayValue?.first
        #expect(expression?["key"] == .string("accelerator"))
        #expect(expression?["values"] == .array([.string("gpu")]))
        let tolerated = (pod?["tolerations"]?.arrayValue ?? []).compactMap { $0["key"]?.stringValue }
        #expect(Set(tolerated) == ["accelerator", "spot"])
    }

    @Test func aPlanWithoutPlacementGivesAJobWithoutIt() throws {
        let run = try Self.scheduledRun(onNode: nil, serviceAccount: nil)
        #expect(run.onNode.isEmpty && run.serviceAccount == nil && run.placementSettings.isEmpty)
        let pod = try KubernetesObjects.build(KubernetesRun(RunLaunch(run)), settings: Self.settings)
            .job["spec"]?["template"]?["spec"]
        #expect(pod?["serviceAccountName"] == nil)
        #expect(pod?["affinity"] == nil)
        #expect(pod?["tolerations"] == nil || pod?["tolerations"] == .array([]))
    }

    @Test func theKubernetesExecutorHonoursPlacementAndThePodmanExecutorDoesNot() throws {
        let config = KubeConfig(server: "https://127.0.0.1:1", certificateAuthorityPEM: nil, credentials: .none)
        let api = try KubeAPI(config: config)
        #expect(KubernetesExecutor(api: api, settings: Self.settings).honoursPlacement)
        let podman = PodmanExecutor(
            configuration: .init(podmanPath: "/usr/bin/podman", instance: "knit", runDirectory: "/nonexistent"),
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        )
        #expect(!podman.honoursPlacement)
    }
}
