import Foundation
import KnitCore
import KnitKubeClient
import KnitKubernetes
import KnitKubernetesExecutor
import KnitScheduler
import KnitSystem
import KnitTestSupport
import KnitTesting
import Testing

extension KubernetesWiringTests {
    static func adminAPI() throws -> KubeAPI {
        try KubeAPI(config: try KubeConfig.load(path: try adminKubeconfig))
    }

    static func authFile(_ path: String, host: String, user: String, token: String) throws {
        let credentials = Data("\(user):\(token)".utf8).base64EncodedString()
        try #"{"auths":{"\#(host)":{"auth":"\#(credentials)"}}}"#.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// The Secret is created from the auth file, left alone while the file is the same, replaced when it
    /// changes, kept when the file turns bad, and made again when deleted by hand.
    @Test func thePullSecretFollowsTheAuthFile() throws {
        let api = try Self.adminAPI()
        let directory = scratchDirectory()
        defer { try? removeTree(directory) }
        let settings = try KubernetesSettings(
            namespace: "default",
            instance: "knit-wiring",
            volumes: .hostPath,
            dataDirectory: directory,
            imagePullSecret: RegistryPullSecret.defaultName
        )
        let file = directory + "/auth.json"
        let secret = RegistryPullSecret(api: api, settings: settings, authFile: file)
        let path = "/api/v1/namespaces/default/secrets/\(RegistryPullSecret.defaultName)"
        defer { _ = try? api.delete(path) }
        _ = try? api.delete(path)

        try Self.authFile(file, host: "registry.example:8443", user: "knit-scheduler", token: "first")
        #expect(try secret.sync() == .created)
        let created = try #require(try api.get(path))
        #expect(created["type"] == .string("kubernetes.io/dockerconfigjson"))
        #expect(created["metadata"]?["labels"]?["knit.executor"] == .string("knit-wiring"))
        let first = try #require(FileManager.default.contents(atPath: file)).base64EncodedString()
        #expect(created["data"]?[".dockerconfigjson"] == .string(first))
        #expect(try secret.sync() == .unchanged)

        try Self.authFile(file, host: "registry.example:8443", user: "knit-scheduler", token: "rotated")
        #expect(try secret.sync() == .updated)
        let second = try #require(FileManager.default.contents(atPath: file)).base64EncodedString()
        #expect(try api.get(path)?["data"]?[".dockerconfigjson"] == .string(second))

        try "not json".write(toFile: file, atomically: true, encoding: .utf8)
        do {
            try secret.sync()
            Issue.record("a bad auth file was accepted")
        } catch {
            #expect(error.code == .invalidLaunch)
            #expect(error.message.contains("is not {\"auths\":{…}} JSON"), "\(error.message)")
        }
        #expect(try api.get(path)?["data"]?[".dockerconfigjson"] == .string(second))

        try Self.authFile(file, host: "registry.example:8443", user: "knit-scheduler", token: "rotated")
        try api.delete(path)
        #expect(try secret.sync() == .created)
    }

    /// The real path: an image in a live Knit instance's registry, the nodes trusting its CA, the pull
    /// credentials only in the Secret. A wrong token fails the pull; the rotated one in the file reaches the
    /// Secret and the next pod pulls with it.
    @Test func aPodPullsFromKnitsRegistryThroughTheSecretAndARotatedTokenReachesIt() async throws {
        let cluster = try #require(KubernetesTestCluster.directory)
        let knit = try KnitInstance(options: .init(registry: true))
        defer { knit.stop() }
        let binaries = try #require(readTextFile(cluster + "/bin-path")).trimmingCharacters(in: .whitespacesAndNewlines)
        let archive = URL(fileURLWithPath: binaries).deletingLastPathComponent().path + "/images/busybox.tar"
        let repository = "pulled-\(UInt32.random(in: 0...UInt32.max))"
        let loaded = knit.runKnit(["image", "load", "-i", archive, "-t", "\(repository):1"])
        try #require(loaded.status == 0, "knit image load: \(loaded.stderr)")
        let trust = try await runCommand(
            [repositoryRoot + "/scripts/k8s-cluster", "trust-registry", cluster, knit.registryHost, knit.caPath],
            environment: KubernetesTestCluster.environment,
            directory: repositoryRoot,
            timeout: .seconds(60)
        )
        try #require(trust.status == 0, "trust-registry: \(trust.stderr)")

        let directory = try makeTemporaryDirectory(prefix: "knit-k8s-data-")
        defer { try? removeTree(directory) }
        let file = directory + "/auth.json"
        try Self.authFile(file, host: knit.registryHost, user: "knit-scheduler", token: "knit_not-a-token")
        let setup = try KubernetesSetup(
            kubeconfig: try Self.adminKubeconfig,
            namespace: "default",
            volumes: "hostpath",
            imagePullPolicy: "Always",
            instance: "knit-wiring",
            dataDirectory: directory,
            registryAuthFile: file,
            environment: [:]
        )
        let pullSecret = try #require(setup.pullSecret)
        defer { _ = try? setup.api.delete("/api/v1/namespaces/default/secrets/\(pullSecret.name)") }
        _ = try? setup.api.delete("/api/v1/namespaces/default/secrets/\(pullSecret.name)")
        #expect(try pullSecret.sync() == .created)
        func executor(pullFailureGrace: Duration) -> KubernetesExecutor {
            KubernetesExecutor(
                api: setup.api,
                settings: setup.settings,
                imagePullPolicy: "Always",
                pullFailureGrace: pullFailureGrace,
                startWait: .seconds(2)
            )
        }
        // The setup's executor, with a short grace for the failing pull.
        let quick = executor(pullFailureGrace: .seconds(3))
        let image = "\(knit.registryHost)/\(repository):1"

        let refused = "refused-\(UInt32.random(in: 0...UInt32.max))"
        var launch = Self.launch(refused, "echo pulled", dataDirectory: directory)
        launch.image = image
        try await quick.start(launch)
        let failed = try await Self.waitForEnd(quick, refused)
        guard case .exited(255, _, let message) = failed else {
            Issue.record("a wrong token did not fail the pull: \(failed)")
            return
        }
        #expect(message.hasPrefix("[ImageNotFound]"), "\(message)")
        try await quick.cleanup(runId: refused)

        try Self.authFile(file, host: knit.registryHost, user: "knit-scheduler", token: knit.token(for: "rita"))
        #expect(try pullSecret.sync() == .updated)
        let pulled = "pulled-\(UInt32.random(in: 0...UInt32.max))"
        launch = Self.launch(pulled, "echo pulled from knit", dataDirectory: directory)
        launch.image = image
        // The kubelet may make the new pod's first pull without the Secret's credentials (when it cannot read the
        // Secret in time; CI's nginx log showed a lone unauthenticated request) and tries again after its back-off
        // (~10 s). The scheduler's default grace (60 s) covers that; the 3 s that make the refused pod quick do not.
        let patient = executor(pullFailureGrace: .seconds(60))
        let clock = ContinuousClock()
        let started = clock.now
        try await patient.start(launch)
        let end = try await Self.waitForEnd(patient, pulled)
        print("pull from Knit's registry through the Secret: start → exited in \(clock.now - started)")
        let manifests = (readTextFile(knit.root + "/log/nginx-access.log") ?? "").split(separator: "\n")
            .filter { $0.contains("/v2/\(repository)/manifests/") }
        print("manifest requests seen by nginx:\n" + manifests.joined(separator: "\n"))
        #expect(end == .exited(code: 0, oomKilled: false, message: "exited with code 0"))
        #expect(readTextFile(launch.logPath!) == "pulled from knit\n")
        try await patient.cleanup(runId: pulled)
    }
}
