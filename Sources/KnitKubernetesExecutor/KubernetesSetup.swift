internal import Glibc
public import KnitKubeClient
public import KnitKubernetes

/// `knit-scheduler --executor kubernetes`: its flags turned into a ``KubernetesExecutor``, and the look at the
/// API server made before the driver starts. The command only parses flags and hands them here, so every
/// refusal below is a message a test can read.
public struct KubernetesSetup: Sendable {
    public let api: KubeAPI
    public let settings: KubernetesSettings
    public let executor: KubernetesExecutor
    /// The registry pull Secret kept from `--registry-authfile`, which every Job names; nil without one.
    public let pullSecret: RegistryPullSecret?

    /// The API server's URL and the namespace, for the log.
    public var server: String { api.config.server }
    public var namespace: String { settings.namespace }

    /// The values `--image-pull-policy` takes, as Kubernetes spells them.
    public static let pullPolicies = ["Always", "IfNotPresent", "Never"]
    /// The namespace when neither `--namespace` nor the kubeconfig's context names one, as kubectl does.
    public static let defaultNamespace = "default"

    /// - Parameters:
    ///   - kubeconfig: `--kubeconfig`; nil reads the pod's service-account files (in-cluster credentials).
    ///   - namespace: `--namespace`; nil takes the kubeconfig context's (or the pod's), else `default`.
    ///   - volumes: `--volumes`: `hostpath` or `nfs://SERVER/EXPORT`.
    ///   - imagePullPolicy: `--image-pull-policy`, one of ``pullPolicies``.
    ///   - pullFailureGrace: `--pull-failure-grace`: how long a pod may fail to pull its image before its Run
    ///     fails 255 `[ImageNotFound]` (a registry briefly away must not fail Runs).
    ///   - instance: `--instance`, the label value on every object.
    ///   - dataDirectory: the store's data directory: the host path, or what the NFS export stands for.
    ///   - registryAuthFile: `--registry-authfile`, the registry credentials kept in the pull Secret
    ///     ``RegistryPullSecret/defaultName`` that every Job names in `imagePullSecrets`; nil for none.
    ///   - environment: the process environment (`KUBERNETES_SERVICE_HOST`/`_PORT` for in-cluster use).
    ///   - serviceAccountDirectory: where a pod's service-account files are (tests point it elsewhere).
    public init(
        kubeconfig: String?,
        namespace: String?,
        volumes: String,
        imagePullPolicy: String,
        pullFailureGrace: Duration = .seconds(60),
        instance: String,
        dataDirectory: String,
        registryAuthFile: String? = nil,
        environment: [String: String],
        serviceAccountDirectory: String = KubeConfig.serviceAccountDirectory
    ) throws(KubernetesSetupError) {
        guard Self.pullPolicies.contains(imagePullPolicy) else {
            throw KubernetesSetupError(
                "--image-pull-policy \(imagePullPolicy) is none of \(Self.pullPolicies.joined(separator: ", "))"
            )
        }
        let parsedVolumes: KubernetesSettings.Volumes
        do { parsedVolumes = try KubernetesSettings.volumes(parsing: volumes) } catch {
            throw KubernetesSetupError("--volumes: \(error)")
        }
        let config: KubeConfig
        if let kubeconfig {
            var info = stat()
            guard stat(kubeconfig, &info) == 0 else {
                throw KubernetesSetupError("--kubeconfig \(kubeconfig) does not exist")
            }
            guard info.st_mode & S_IFMT == S_IFREG else {
                throw KubernetesSetupError("--kubeconfig \(kubeconfig) is not a file")
            }
            guard access(kubeconfig, R_OK) == 0 else {
                throw KubernetesSetupError("--kubeconfig \(kubeconfig) is not readable by this user")
            }
            do { config = try KubeConfig.load(path: kubeconfig) } catch {
                throw KubernetesSetupError("--kubeconfig \(kubeconfig): \(error)")
            }
        } else {
            do {
                config = try KubeConfig.inCluster(directory: serviceAccountDirectory, environment: environment)
            } catch {
                throw KubernetesSetupError("no --kubeconfig, and no in-cluster credentials: \(error)")
            }
        }
        let chosenNamespace = namespace ?? config.namespace ?? Self.defaultNamespace
        do {
            settings = try KubernetesSettings(
                namespace: chosenNamespace,
                instance: instance,
                volumes: parsedVolumes,
                dataDirectory: dataDirectory,
                imagePullSecret: registryAuthFile == nil ? nil : RegistryPullSecret.defaultName
            )
        } catch {
            throw KubernetesSetupError("\(error)")
        }
        do { api = try KubeAPI(config: config) } catch { throw KubernetesSetupError("\(error)") }
        executor = KubernetesExecutor(
            api: api,
            settings: settings,
            imagePullPolicy: imagePullPolicy,
            pullFailureGrace: pullFailureGrace,
            startWait: .zero
        )
        if let registryAuthFile {
            pullSecret = RegistryPullSecret(api: api, settings: settings, authFile: registryAuthFile)
        } else {
            pullSecret = nil
        }
    }

    /// What one look at the API server found.
    public enum Probe: Sendable, Equatable {
        /// The namespace exists.
        case ready
        /// The server answers but the account may not read the namespace object; whether the namespace exists
        /// shows at the first Run (the manifests in `deploy/kubernetes/` grant the read).
        case namespaceUnchecked(String)
        /// No answer, or a server error: worth asking again later.
        case unreachable(String)
    }

    /// Reads the namespace object: the cheapest request that proves the server answers, the credentials are
    /// accepted and the namespace exists.
    /// - Throws: ``KubernetesSetupError`` when asking again cannot help: the namespace does not exist, or the
    ///   server refuses the credentials (401) or the request itself.
    public func probe() throws(KubernetesSetupError) -> Probe {
        let server = api.config.server
        do {
            guard try api.get("/api/v1/namespaces/\(settings.namespace)") != nil else {
                throw KubernetesSetupError("namespace \(settings.namespace) does not exist on \(server)")
            }
            return .ready
        } catch let error as KubernetesSetupError {
            throw error
        } catch let error as KubeAPIError {
            switch error.status {
            case nil: return .unreachable("\(error)")
            case 403?: return .namespaceUnchecked("\(error)")
            case 401?: throw KubernetesSetupError("\(server) refused the credentials: \(error)")
            case let status? where status >= 500 || status == 429: return .unreachable("\(error)")
            default: throw KubernetesSetupError("\(server): \(error)")
            }
        } catch {
            return .unreachable("\(error)")
        }
    }
}

/// Why `--executor kubernetes` cannot start: a bad flag, kubeconfig or namespace.
public struct KubernetesSetupError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
