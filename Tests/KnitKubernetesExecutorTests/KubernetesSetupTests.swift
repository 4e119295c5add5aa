import Glibc
import KnitKubeClient
import KnitKubernetes
import KnitKubernetesExecutor
import KnitSystem
import KnitTestSupport
import Testing

/// `knit-scheduler --executor kubernetes`'s flags, without a cluster: every refusal names the flag and why.
struct KubernetesSetupTests {
    /// A kubeconfig without credentials for `server`, its context naming `namespace` when given.
    static func kubeconfig(server: String, namespace: String? = nil, in directory: String) -> String {
        let path = directory + "/kubeconfig"
        let namespaceLine = namespace.map { "\n    namespace: \($0)" } ?? ""
        writeFile(
            path,
            """
            apiVersion: v1
            kind: Config
            clusters:
            - name: c
              cluster:
                server: \(server)
            contexts:
            - name: ctx
              context:
                cluster: c\(namespaceLine)
            current-context: ctx

            """
        )
        return path
    }

    static func setup(
        kubeconfig: String?,
        namespace: String? = nil,
        volumes: String = "hostpath",
        imagePullPolicy: String = "Always",
        environment: [String: String] = [:],
        serviceAccountDirectory: String = "/nonexistent"
    ) throws(KubernetesSetupError) -> KubernetesSetup {
        try KubernetesSetup(
            kubeconfig: kubeconfig,
            namespace: namespace,
            volumes: volumes,
            imagePullPolicy: imagePullPolicy,
            instance: "knit",
            dataDirectory: "/var/lib/knit/data",
            environment: environment,
            serviceAccountDirectory: serviceAccountDirectory
        )
    }

    static func refusal(_ body: () throws(KubernetesSetupError) -> KubernetesSetup) -> String {
        do {
            let setup = try body()
            return "accepted: \(setup.settings)"
        } catch {
            return error.description
        }
    }

    @Test func badFlagsAreRefusedNamingTheFlagAndWhy() throws {
        let directory = scratchDirectory()
        defer { try? removeTree(directory) }
        let config = Self.kubeconfig(server: "https://127.0.0.1:1", in: directory)

        let badVolumes = Self.refusal { () throws(KubernetesSetupError) in
            try Self.setup(kubeconfig: config, volumes: "tmpfs")
        }
        #expect(badVolumes.hasPrefix("--volumes: volumes \"tmpfs\" is neither hostpath nor nfs://SERVER/EXPORT"))
        let noExport = Self.refusal { () throws(KubernetesSetupError) in
            try Self.setup(kubeconfig: config, volumes: "nfs://server")
        }
        #expect(noExport.hasPrefix("--volumes: "), "\(noExport)")
        #expect(noExport.contains("no server or no export path"))

        let badPolicy = Self.refusal { () throws(KubernetesSetupError) in
            try Self.setup(kubeconfig: config, imagePullPolicy: "Sometimes")
        }
        #expect(badPolicy == "--image-pull-policy Sometimes is none of Always, IfNotPresent, Never")

        let missing = Self.refusal { () throws(KubernetesSetupError) in
            try Self.setup(kubeconfig: directory + "/absent")
        }
        #expect(missing == "--kubeconfig \(directory)/absent does not exist")

        let notAFile = Self.refusal { () throws(KubernetesSetupError) in try Self.setup(kubeconfig: directory) }
        #expect(notAFile == "--kubeconfig \(directory) is not a file")

        writeFile(directory + "/garbage", "clusters: [")
        let notYAML = Self.refusal { () throws(KubernetesSetupError) in
            try Self.setup(kubeconfig: directory + "/garbage")
        }
        #expect(notYAML.hasPrefix("--kubeconfig \(directory)/garbage: kubeconfig is not YAML"), "\(notYAML)")

        let badNamespace = Self.refusal { () throws(KubernetesSetupError) in
            try Self.setup(kubeconfig: config, namespace: "Team_A")
        }
        #expect(badNamespace == "namespace \"Team_A\" is not a DNS-1123 label")

        let notInCluster = Self.refusal { () throws(KubernetesSetupError) in try Self.setup(kubeconfig: nil) }
        #expect(
            notInCluster
                == "no --kubeconfig, and no in-cluster credentials: not in a cluster: KUBERNETES_SERVICE_HOST "
                + "and KUBERNETES_SERVICE_PORT are unset"
        )
    }

    @Test func theNamespaceIsTheFlagsElseTheContextsElseDefault() throws {
        let directory = scratchDirectory()
        defer { try? removeTree(directory) }
        let withNamespace = Self.kubeconfig(server: "https://127.0.0.1:1", namespace: "team-a", in: directory)
        #expect(try Self.setup(kubeconfig: withNamespace).settings.namespace == "team-a")
        #expect(try Self.setup(kubeconfig: withNamespace, namespace: "knit").settings.namespace == "knit")
        let without = Self.kubeconfig(server: "https://127.0.0.1:1", in: directory)
        let setup = try Self.setup(kubeconfig: without, volumes: "nfs://files.example/srv/knit/")
        #expect(setup.settings.namespace == "default")
        #expect(setup.settings.volumes == .nfs(server: "files.example", export: "/srv/knit"))
        #expect(setup.settings.dataDirectory == "/var/lib/knit/data")
        #expect(setup.executor.imagePullPolicy == "Always")
        #expect(try Self.setup(kubeconfig: without, imagePullPolicy: "Never").executor.imagePullPolicy == "Never")
    }

    @Test func withoutAKubeconfigThePodsServiceAccountIsUsed() throws {
        let directory = scratchDirectory()
        defer { try? removeTree(directory) }
        writeFile(directory + "/token", "a-token\n")
        writeFile(directory + "/ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
        writeFile(directory + "/namespace", "knit\n")
        let environment = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
        let setup = try Self.setup(
            kubeconfig: nil,
            environment: environment,
            serviceAccountDirectory: directory
        )
        #expect(setup.api.config.server == "https://10.96.0.1:443")
        #expect(setup.api.config.credentials == .bearerTokenFile(directory + "/token"))
        #expect(setup.settings.namespace == "knit")
    }

    @Test func aServerThatDoesNotAnswerIsWorthAskingAgain() throws {
        let directory = scratchDirectory()
        defer { try? removeTree(directory) }
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let setup = try Self.setup(kubeconfig: Self.kubeconfig(server: "https://127.0.0.1:1", in: directory))
        guard case .unreachable(let reason) = try setup.probe() else {
            Issue.record("not unreachable")
            return
        }
        #expect(reason.contains("GET /api/v1/namespaces/default: no response"), "\(reason)")
    }
}
