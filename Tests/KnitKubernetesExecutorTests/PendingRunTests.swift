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

// In the executor's suite, not a suite of its own: each suite with the cluster trait waits for the machine's
// cluster lock on a thread of the test process, and a third waiting suite would take every thread of a
// two-core machine's pool from the one that holds the lock.
extension KubernetesExecutorTests {
    @Test func aRunAskingMoreCPUThanAnyNodeHasStaysStartingWithTheReasonOnItsDetail() async throws {
        let home = try makeTemporaryDirectory(prefix: "knit-k8s-store-")
        defer { try? removeTree(home) }
        let store = try KnitStore(
            home: home,
            logger: Logger(label: "knit.test", factory: { _ in SwiftLogNoOpLogHandler() }),
            mapSize: 64 << 20
        )
        let spec = PlanSpecJSON(
            image: KubernetesExecutorTests.busybox,
            entrypoint: ["sh", "-c", "echo never"],
            inputs: [MountpointJSON(path: "/in", tags: TagSet([try Tag(parsing: "k8s:pending")]))],
            outputs: [MountpointJSON(path: "/out", tags: TagSet([try Tag(parsing: "k8s:result")]))],
            log: LogPointJSON(tags: TagSet([try Tag(parsing: "k8s:log")])),
            resources: ["cpu": "64"]
        )
        let plan = try store.registerPlan(spec, creator: "test")
        let ticket = try store.beginUpload(creator: "test")
        try Self.writeFile("x\n", to: ticket.stagingPath + "/input")
        _ = try store.finishUpload(ticket, tags: [try Tag(parsing: "k8s:pending")], sizeBytes: 2)
        let runId = try #require(try store.findRuns(planIds: [plan.planId]).first?.runId)

        let cluster = try #require(KubernetesTestCluster.directory)
        let executor = KubernetesExecutor(
            api: try KubeAPI(config: try KubeConfig.load(path: cluster + "/admin.kubeconfig")),
            settings: try KubernetesSettings(
                namespace: "default",
                instance: "knit-pending",
                volumes: .hostPath,
                dataDirectory: store.layout.data
            ),
            imagePullPolicy: "Never",
            startWait: .seconds(5)
        )
        defer { executor.shutdown() }
        let driver = RunDriver(
            ledger: store,
            executor: executor,
            configuration: .init(capacity: Capacity(cpuMillis: 128_000, memoryBytes: 64 << 30))
        )
        var detail = try store.runDetail(runId: runId)
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(60))
        while detail.waitingFor == nil && clock.now < deadline {
            _ = await driver.tick()
            detail = try store.runDetail(runId: runId)
        }
        #expect(detail.status == "starting")
        #expect(detail.waitingFor?.contains("Insufficient cpu") == true)
        // What `knit run show` prints: the Run's JSON, with the reason beside its status.
        let json = JSONValue.parse(try KnitJSON.encode(detail))
        #expect(json?["waitingFor"]?.stringValue?.contains("Insufficient cpu") == true)
        // It stays so, tick after tick.
        for _ in 0..<5 { _ = await driver.tick() }
        #expect(try store.runDetail(runId: runId).status == "starting")

        // An abort ends it as on podman, clears the reason and leaves nothing in the cluster.
        _ = try store.requestStop(runId: runId, fail: true)
        for _ in 0..<3 { _ = await driver.tick() }
        let ended = try store.runDetail(runId: runId)
        #expect(ended.status == "failed")
        #expect(ended.exit?.code == 253)
        #expect(ended.waitingFor == nil)
        #expect(try await executor.list() == [])
    }
}
