import Foundation
import KnitCore
import KnitTestSupport
import KnitTesting
import Testing

/// A live Knit whose scheduler runs every Run on the suite's real cluster (`.kubernetesCluster`): its own
/// KnitInstance with the image registry, the cluster's containerd trusting that registry's CA (containerd
/// runs in the host's network namespace, so the node pulls from nginx on loopback), the quickstart image
/// pushed into the registry with `knit image load` (the kubelet pulls it through the scheduler's pull
/// Secret; nothing is imported into containerd), hostPath volumes over the instance's data directory, and
/// knit-scheduler `--executor kubernetes` with the deploy/kubernetes/ ServiceAccount's token when the
/// repository has those manifests (else the cluster admin's certificate).
final class KubernetesKnit: @unchecked Sendable {
    /// The scheduler's `--pull-failure-grace`: shorter than the 60 s default, so the missing-image test is not a third
    /// of the suite, but longer than the kubelet's first image-pull back-off (10 s): a kubelet that could not read the
    /// pull Secret in time pulls once without credentials (CI: a lone unauthenticated 401 in nginx's log, no retry
    /// with credentials) and succeeds on its retry, as it does under the default.
    static let pullFailureGraceSeconds = 20

    // @unchecked: `scheduler` is only replaced by the one test that owns the suite at a time (serialized).
    @TaskLocal static var current: KubernetesKnit?

    static func instance() throws -> KubernetesKnit {
        try #require(current, "no KubernetesKnit: the suite needs the .kubernetesKnit trait")
    }

    let knit: KnitInstance
    /// The cluster's directory (`scripts/k8s-cluster up DIR`).
    let cluster: String
    let adminKubeconfig: String
    /// kubectl of the cached Kubernetes build: the tests look and act on the cluster with it; Knit never does.
    let kubectl: String
    /// The kubeconfig knit-scheduler uses.
    let schedulerKubeconfig: String
    /// Whether that is a ServiceAccount's (deploy/kubernetes/) rather than the cluster admin's.
    let leastPrivilege: Bool
    let namespace: String
    /// knit-scheduler's `--instance`: the `knit.executor` label of every object it makes.
    let label: String
    /// The quickstart image as plans name it: in this instance's registry, `127.0.0.1:PORT/…`.
    let image: String
    let authfile: String
    let schedulerArguments: [String]
    private(set) var scheduler: BackgroundProcess

    init(_ knit: KnitInstance) throws {
        self.knit = knit
        cluster = try #require(KubernetesTestCluster.directory, "no cluster: the suite needs .kubernetesCluster first")
        adminKubeconfig = cluster + "/admin.kubeconfig"
        let script = knit.packageRoot + "/scripts/k8s-cluster"

        let built = knit.run(script, ["build"])
        try #require(built.status == 0, "k8s-cluster build: \(built.stderr.suffix(2000))")
        let binaries = try #require(built.stdoutText.split(separator: "\n").last.map(String.init))
        kubectl = binaries + "/kubectl"
        try #require(FileManager.default.isExecutableFile(atPath: kubectl), "no kubectl in \(binaries)")

        let trusted = knit.run(script, ["trust-registry", cluster, knit.registryHost, knit.caPath])
        try #require(trusted.status == 0, "k8s-cluster trust-registry: \(trusted.stderr)")

        try buildQuickstartImage(knit)
        let archive = try makeScratchDirectory(knit, "image") + "/quickstart.tar"
        var podmanEnvironment = ProcessInfo.processInfo.environment
        podmanEnvironment["CONTAINERS_CONF"] = knit.packageRoot + "/containers/containers.conf"
        let saved = knit.run(
            "/usr/bin/podman",
            ["save", "--quiet", "-o", archive, quickstartImage],
            environment: podmanEnvironment
        )
        try #require(saved.status == 0, "podman save: \(saved.stderr)")
        let loaded = knit.runKnit(["image", "load", "-i", archive, "-t", "knit-quickstart:1"])
        try #require(loaded.status == 0, "knit image load: \(loaded.stderr)\n\(knit.logTails())")
        let answer = try JSONSerialization.jsonObject(with: loaded.stdout) as? [String: String]
        image = try #require(answer?["image"], "knit image load printed \(loaded.stdoutText)")

        // What knit-up gives the scheduler: a reader's token for the registry.
        authfile = knit.root + "/scheduler-auth.json"
        let credentials = Data("knit-scheduler:\(knit.token(for: "rita"))".utf8).base64EncodedString()
        try #"{"auths":{"\#(knit.registryHost)":{"auth":"\#(credentials)"}}}"#
            .write(toFile: authfile, atomically: true, encoding: .utf8)

        label = "knit-e2e-\(UUID().uuidString.prefix(8).lowercased())"
        let rbac = try Self.applyRBAC(knit: knit, kubectl: kubectl, admin: adminKubeconfig, cluster: cluster)
        schedulerKubeconfig = rbac?.kubeconfig ?? adminKubeconfig
        namespace = rbac?.namespace ?? "default"
        leastPrivilege = rbac != nil

        schedulerArguments = [
            "--home", knit.home, "--instance", label, "--log-level", "debug", "--cpu-budget", "64000",
            "--executor", "kubernetes", "--kubeconfig", schedulerKubeconfig, "--namespace", namespace,
            "--volumes", "hostpath", "--registry-authfile", authfile,
            // The missing-image test waits this out; the 60 s default would be a third of the suite.
            "--pull-failure-grace", "\(KubernetesKnit.pullFailureGraceSeconds)",
        ]
        scheduler = try Self.spawn(knit, schedulerArguments)
    }

    /// Starts knit-scheduler and waits until it says it runs (it checks the cluster first), so a scheduler that
    /// cannot start fails the test at once rather than as Runs that never finish.
    private static func spawn(_ knit: KnitInstance, _ arguments: [String]) throws -> BackgroundProcess {
        let process = try knit.background(
            String(knit.knitdPath.dropLast("knitd".count)) + "knit-scheduler",
            arguments,
            name: "knit-scheduler"
        )
        let started = eventually(timeout: 60) {
            !process.isRunning || process.stderrText.contains("knit-scheduler running")
        }
        try #require(
            started && process.isRunning,
            "knit-scheduler did not start (\(String(describing: process.exitStatus))): \(process.stderrText.suffix(3000))"
        )
        return process
    }

    /// Applies deploy/kubernetes/ as the cluster admin and returns the token kubeconfig of the
    /// ServiceAccount it defines and that account's namespace; nil when the repository has no such manifests.
    private static func applyRBAC(
        knit: KnitInstance,
        kubectl: String,
        admin: String,
        cluster: String
    ) throws -> (kubeconfig: String, namespace: String)? {
        let manifests = knit.packageRoot + "/deploy/kubernetes"
        guard FileManager.default.fileExists(atPath: manifests) else { return nil }
        let applied = knit.run(kubectl, ["--kubeconfig", admin, "apply", "-f", manifests])
        try #require(applied.status == 0, "kubectl apply -f deploy/kubernetes: \(applied.stderr)")
        let listed = knit.run(
            kubectl,
            ["--kubeconfig", admin, "get", "-f", manifests, "-o", "json"]
        )
        try #require(listed.status == 0, "kubectl get -f deploy/kubernetes: \(listed.stderr)")
        let list = try JSONSerialization.jsonObject(with: listed.stdout) as? [String: Any]
        let items = (list?["items"] as? [[String: Any]]) ?? []
        let account = try #require(
            items.first { $0["kind"] as? String == "ServiceAccount" },
            "deploy/kubernetes defines no ServiceAccount"
        )
        let metadata = account["metadata"] as? [String: Any]
        let name = try #require(metadata?["name"] as? String)
        let namespace = try #require(metadata?["namespace"] as? String)
        let made = knit.run(
            knit.packageRoot + "/scripts/k8s-cluster",
            ["sa-kubeconfig", cluster, namespace, name]
        )
        try #require(made.status == 0, "k8s-cluster sa-kubeconfig: \(made.stderr)")
        let path = try #require(made.stdoutText.split(separator: "\n").last.map(String.init))
        return (path, namespace)
    }

    // MARK: - The scheduler

    /// SIGKILL, as a crash: no clean-up of any kind.
    func killScheduler() throws {
        scheduler.signal(SIGKILL)
        try #require(scheduler.wait(timeout: 10), "knit-scheduler did not die after SIGKILL")
    }

    func restartScheduler() throws {
        if scheduler.isRunning { scheduler.stop(signal: SIGTERM, grace: 15) }
        scheduler = try Self.spawn(knit, schedulerArguments)
    }

    /// Stops the suite's scheduler, runs `body` with one that acts as `kubeconfig` instead (two schedulers must
    /// never drive one store), and brings the suite's scheduler back.
    func withScheduler(kubeconfig: String, _ body: (BackgroundProcess) throws -> Void) throws {
        scheduler.stop(signal: SIGTERM, grace: 15)
        var arguments = schedulerArguments
        if let index = arguments.firstIndex(of: "--kubeconfig") { arguments[index + 1] = kubeconfig }
        let other: BackgroundProcess
        do { other = try Self.spawn(knit, arguments) } catch {
            scheduler = try Self.spawn(knit, schedulerArguments)
            throw error
        }
        defer { other.stop(signal: SIGTERM, grace: 15) }
        try body(other)
        other.stop(signal: SIGTERM, grace: 15)
        scheduler = try Self.spawn(knit, schedulerArguments)
    }

    /// The scheduler's last log lines and the cluster's view of this instance, for failure messages.
    func context(_ lines: Int = 40) -> String {
        let text = scheduler.stderrText + scheduler.stdoutText
        let tail = text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
        return "--- knit-scheduler log:\n\(tail)\n--- cluster objects: \(objects())\n" + registryTrail()
    }

    /// The image pulls nginx saw and knitd's answers to its registry checks: a pod that cannot pull its image
    /// (a 401 seen once, after a scheduler restart) is explained only by these two logs.
    func registryTrail(_ lines: Int = 15) -> String {
        func matching(_ path: String, _ needle: String) -> String {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(no log)"
            return text.split(separator: "\n").filter { $0.contains(needle) }.suffix(lines).joined(separator: "\n")
        }
        return "--- nginx /v2/ requests:\n\(matching(knit.root + "/log/nginx-access.log", " /v2/"))\n"
            + "--- knitd registry checks:\n\(matching(knit.knitdLogPath, "auth/registry"))"
    }

    /// Stops the scheduler, then removes whatever it left so the cluster goes down clean.
    func stop() {
        scheduler.stop(signal: SIGTERM, grace: 15)
        _ = kubectlAdmin([
            "delete", "jobs,pods,pvc,secrets", "-n", namespace, "-l", "knit.executor=\(label)", "--wait=false",
        ])
        _ = kubectlAdmin(["delete", "pv", "-l", "knit.executor=\(label)", "--wait=false"])
    }

    // MARK: - Looking at the cluster (as its admin)

    func kubectlAdmin(_ args: [String]) -> ProcessResult {
        knit.run(kubectl, ["--kubeconfig", adminKubeconfig] + args)
    }

    /// The items of `kubectl get KINDS -o json` (namespaced kinds in the scheduler's namespace).
    func items(_ kinds: String, selector: String? = nil) -> [[String: Any]] {
        var args = ["get", kinds, "-n", namespace, "-o", "json"]
        if let selector { args += ["-l", selector] }
        let result = kubectlAdmin(args)
        guard result.status == 0 else { return [] }
        let list = try? JSONSerialization.jsonObject(with: result.stdout) as? [String: Any]
        return (list?["items"] as? [[String: Any]]) ?? []
    }

    /// `Kind/name` of every Job, Pod, PersistentVolumeClaim, PersistentVolume and Secret labelled with this
    /// instance (or `selector`), sorted. The pull Secret is left out unless `withPullSecret`: the scheduler
    /// keeps it as long as it runs.
    func objects(selector: String? = nil, withPullSecret: Bool = false) -> [String] {
        let chosen = selector ?? "knit.executor=\(label)"
        let found = items("jobs,pods,pvc,pv,secrets", selector: chosen).filter { item in
            withPullSecret || (item["type"] as? String) != "kubernetes.io/dockerconfigjson"
        }
        return found.map { item in
            let name = (item["metadata"] as? [String: Any])?["name"] as? String ?? "?"
            return "\(item["kind"] as? String ?? "?")/\(name)"
        }.sorted()
    }

    /// Waits (generously) until the cluster holds nothing of this instance but the pull Secret.
    func expectNothingLeft(timeout: Double = 60, sourceLocation: SourceLocation = #_sourceLocation) {
        var left: [String] = []
        let clean = eventually(timeout: timeout) {
            left = objects()
            return left.isEmpty
        }
        #expect(
            clean,
            "objects of the instance left in the cluster: \(left)\n\(context())",
            sourceLocation: sourceLocation
        )
    }

    /// uid of the Run's Job, nil when there is none.
    func jobUID(_ runId: String) -> String? {
        let found = items("jobs", selector: "knit.run=\(runId),knit.executor=\(label)")
        return found.count == 1 ? (found[0]["metadata"] as? [String: Any])?["uid"] as? String : nil
    }

    /// uids of the Run's Pods.
    func podUIDs(_ runId: String) -> [String] {
        items("pods", selector: "knit.run=\(runId),knit.executor=\(label)").compactMap {
            ($0["metadata"] as? [String: Any])?["uid"] as? String
        }
    }

    /// Events the cluster recorded about the Run's Job (they outlive the Job): the distinct Job uids they
    /// name, and how many pods the Job controller created. A Job made twice shows two uids.
    func jobHistory(_ runId: String) -> (jobUIDs: Set<String>, podsCreated: Int) {
        let events = items("events").filter { event in
            let involved = event["involvedObject"] as? [String: Any]
            return involved?["kind"] as? String == "Job" && involved?["name"] as? String == "knit-run-\(runId)"
        }
        let uids = Set(events.compactMap { ($0["involvedObject"] as? [String: Any])?["uid"] as? String })
        let created = events.filter { $0["reason"] as? String == "SuccessfulCreate" }
            .reduce(0) { $0 + (($1["count"] as? Int) ?? 1) }
        return (uids, created)
    }
}

/// Starts the KnitInstance (with registry) and its Kubernetes scheduler once around the suite; must come
/// after `.kubernetesCluster`. Stops both after, and leaves nothing of the instance in the cluster.
struct KubernetesKnitTrait: SuiteTrait, TestScoping {
    func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        let knit = try KnitInstance(options: .init(registry: true))
        defer { knit.stop() }
        let kube = try KubernetesKnit(knit)
        defer { kube.stop() }
        try await KubernetesKnit.$current.withValue(kube) {
            try await LiveKnit.$current.withValue(knit) { try await function() }
        }
    }
}

extension Trait where Self == KubernetesKnitTrait {
    static var kubernetesKnit: Self { KubernetesKnitTrait() }
}
