import Foundation
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

extension KubernetesWiringTests {
    static func openStore(_ home: String) throws -> KnitStore {
        try KnitStore(
            home: home,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
            mapSize: 64 << 20
        )
    }

    /// Makes a store in `home` with a plan running `script` in busybox (input `/in/x`, output `/out/y`, a log)
    /// and one Data for its input (`file.txt`: `hello`), so it holds one startable Run; answers the plan id.
    static func storeWithOneRun(home: String, script: String) throws -> String {
        let store = try openStore(home)
        defer { store.close() }
        let input = try Tag(parsing: "stage:x")
        let planId = try store.registerPlan(
            PlanSpecJSON(
                image: KubernetesExecutorTests.busybox,
                entrypoint: ["sh", "-c", script],
                inputs: [MountpointJSON(path: "/in/x", tags: TagSet([input]))],
                outputs: [MountpointJSON(path: "/out/y", tags: TagSet([try Tag(parsing: "stage:y")]))],
                log: LogPointJSON(tags: TagSet([try Tag(parsing: "stage:log")]))
            ),
            creator: "alice"
        ).planId
        let ticket = try store.beginUpload(creator: "alice")
        writeFile(ticket.stagingPath + "/file.txt", "hello")
        _ = try store.finishUpload(ticket, tags: [input], sizeBytes: 5)
        return planId
    }

    /// The one Run of `planId` in the store at `home`, as `knit run show` reads it.
    static func onlyRun(home: String, planId: String) throws -> RunDetailJSON {
        let store = try openStore(home)
        defer { store.close() }
        let runs = try store.findRuns(planIds: [planId])
        try #require(runs.count == 1)
        return try store.runDetail(runId: runs[0].runId)
    }

    /// Applies deploy/kubernetes/ (as an admin would, `kubectl apply -f deploy/kubernetes/`) and answers the
    /// kubeconfig of its ServiceAccount `knit/knit-scheduler`.
    static func deployedAccountKubeconfig() async throws -> String {
        try await kubectlOK(["apply", "-f", repositoryRoot + "/deploy/kubernetes/"])
        return try await serviceAccountKubeconfig(namespace: "knit")
    }

    static func serviceAccountKubeconfig(namespace: String) async throws -> String {
        let cluster = try #require(KubernetesTestCluster.directory)
        let made = try await runCommand(
            [repositoryRoot + "/scripts/k8s-cluster", "sa-kubeconfig", cluster, namespace, "knit-scheduler"],
            environment: KubernetesTestCluster.environment,
            directory: repositoryRoot,
            timeout: .seconds(120)
        )
        try #require(made.status == 0, "sa-kubeconfig: \(made.stderr)")
        return made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Everything the scheduler does on a cluster, as the deploy/kubernetes/ account and not as an admin: the
    /// start-up check, the pull Secret, and a Run's whole life (start twice, observe, the log, stop, a second
    /// Run that ends by itself, clean-up, list). Any verb the manifests lack is a Forbidden here.
    @Test func theDeployedAccountMayDoEverythingTheSchedulerDoes() async throws {
        let kubeconfig = try await Self.deployedAccountKubeconfig()
        let directory = try makeTemporaryDirectory(prefix: "knit-k8s-data-")
        defer { try? removeTree(directory) }
        let auth = directory + "/auth.json"
        try Self.authFile(auth, host: "registry.example:8443", user: "knit-scheduler", token: "one")
        let setup = try KubernetesSetup(
            kubeconfig: kubeconfig,
            namespace: "knit",
            volumes: "hostpath",
            imagePullPolicy: "Never",
            instance: "knit-rbac",
            dataDirectory: directory,
            registryAuthFile: auth,
            environment: [:]
        )
        #expect(try setup.probe() == .ready)
        let pullSecret = try #require(setup.pullSecret)
        #expect(try pullSecret.sync() == .created)
        #expect(try pullSecret.sync() == .unchanged)
        try Self.authFile(auth, host: "registry.example:8443", user: "knit-scheduler", token: "two")
        #expect(try pullSecret.sync() == .updated)

        let executor = KubernetesExecutor(api: setup.api, settings: setup.settings, imagePullPolicy: "Never")
        let input = directory + "/in-1"
        let output = directory + "/out-1"
        _ = mkdir(input, 0o755)
        _ = mkdir(output, 0o755)
        writeFile(input + "/v", "input\n")
        let runId = "rbac-\(UInt32.random(in: 0...UInt32.max))"
        var launch = Self.launch(
            runId,
            "cat /in/v; cp /in/v /out/v; echo waiting; sleep 300",
            dataDirectory: directory
        )
        launch.inputs = [RunMount(knitId: "in-1", hostPath: input, containerPath: "/in")]
        launch.outputs = [RunMount(knitId: "out-1", hostPath: output, containerPath: "/out")]
        try await executor.start(launch)
        // A repeated start reads what is there (get of each object).
        try await executor.start(launch)
        #expect(try await executor.observe(runIds: [runId]) == [runId: .running])
        #expect(try await executor.list().contains(runId))
        try await executor.stop(runId: runId, grace: .seconds(1))
        #expect(readTextFile(launch.logPath!)?.hasPrefix("input\n") == true, "\(readTextFile(launch.logPath!) ?? "")")
        #expect(readTextFile(output + "/v") == "input\n")
        try await executor.cleanup(runId: runId)
        #expect(!(try await executor.list().contains(runId)))

        let ended = "rbac-end-\(UInt32.random(in: 0...UInt32.max))"
        let second = Self.launch(ended, "echo ended by itself", dataDirectory: directory)
        try await executor.start(second)
        let end = try await Self.waitForEnd(executor, ended)
        #expect(end == .exited(code: 0, oomKilled: false, message: "exited with code 0"))
        #expect(readTextFile(second.logPath!) == "ended by itself\n")
        try await executor.cleanup(runId: ended)
        #expect(try await executor.list() == [])
    }

    /// An account that lacks `create` on jobs: the Run a user started fails at once with the API server's
    /// Forbidden, which names the verb and the resource; nothing of it is left in the cluster.
    @Test func anAccountThatMayNotCreateJobsFailsTheRunWithTheForbiddenReason() async throws {
        let namespace = "knit-limited"
        guard let role = readTextFile(repositoryRoot + "/deploy/kubernetes/role.yaml") else {
            Issue.record("no role.yaml")
            return
        }
        let full = #"verbs: ["create", "get", "list", "watch", "delete"]"#
        try #require(role.contains(full))
        let limited = role.replacingOccurrences(of: "namespace: knit", with: "namespace: \(namespace)")
            .replacingOccurrences(of: #"resourceNames: ["knit"]"#, with: #"resourceNames: ["\#(namespace)"]"#)
            .replacingOccurrences(of: full, with: #"verbs: ["get", "list", "watch", "delete"]"#)
        let binding = try #require(readTextFile(repositoryRoot + "/deploy/kubernetes/rolebinding.yaml"))
            .replacingOccurrences(of: "namespace: knit", with: "namespace: \(namespace)")
        let scratch = TemporaryDirectory()
        scratch.write("role.yaml", limited)
        scratch.write("rolebinding.yaml", binding)
        // The cluster-wide part (PersistentVolumes) as deployed, bound to this account too.
        try await Self.kubectlOK(["apply", "-f", repositoryRoot + "/deploy/kubernetes/clusterrole.yaml"])
        try await Self.kubectlOK(["create", "namespace", namespace])
        try await Self.kubectlOK(["apply", "-f", scratch.file("role.yaml"), "-f", scratch.file("rolebinding.yaml")])
        try await Self.kubectlOK([
            "create", "clusterrolebinding", "knit-limited", "--clusterrole", "knit-scheduler",
            "--serviceaccount", "\(namespace):knit-scheduler",
        ])
        let kubeconfig = try await Self.serviceAccountKubeconfig(namespace: namespace)

        // A store holding one startable Run, and the real scheduler on it, as that account.
        let home = scratchDirectory("knit-rbac-home-")
        let planId = try Self.storeWithOneRun(home: home, script: "echo never")
        let scheduler = try SchedulerProcess(
            [
                "--executor", "kubernetes", "--kubeconfig", kubeconfig, "--namespace", namespace,
                "--instance", "knit-limited", "--image-pull-policy", "Never",
            ],
            home: home
        )
        let failed = await scheduler.waitForLog("run finished")
        #expect(failed, "\(scheduler.log)")
        #expect(try await scheduler.stop() == KnitSystem.ExitStatus(code: 0))

        let run = try Self.onlyRun(home: home, planId: planId)
        // What `knit run show` prints.
        #expect(run.status == "failed")
        #expect(run.exit?.code == 255)
        let message = run.exit?.message ?? ""
        #expect(message.hasPrefix("(container knit-run-\(run.runId)) [StartFailed]"), "\(message)")
        #expect(message.contains("403 Forbidden"), "\(message)")
        #expect(message.contains(#"cannot create resource "jobs" in API group "batch""#), "\(message)")
        // Its volumes and claims were swept: nothing of the Run is left in the cluster.
        let leftovers = try await Self.kubectlOK([
            "get", "pv,pvc,jobs,pods", "--all-namespaces", "-l", "knit.executor=knit-limited", "-o", "name",
        ])
        #expect(leftovers.isEmpty, "\(leftovers)")
    }
}
