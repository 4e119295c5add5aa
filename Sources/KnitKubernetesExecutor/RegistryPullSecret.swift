internal import Foundation
internal import KnitCore
public import KnitKubeClient
public import KnitKubernetes
public import KnitScheduler

/// The `kubernetes.io/dockerconfigjson` Secret through which the kubelets pull a plan's `HOST:PORT/name:tag`
/// from Knit's registry, kept equal to the registry auth file the podman path uses (`--registry-authfile`:
/// its JSON, `{"auths":{"HOST:PORT":{"auth":"base64(user:token)"}}}`, is exactly what the Secret holds).
///
/// ``sync()`` compares and writes only when they differ, so the scheduler can call it at start and then
/// every minute: a rotated token reaches the cluster within a minute, and a Secret deleted by hand comes back.
public struct RegistryPullSecret: Sendable {
    public let api: KubeAPI
    public let namespace: String
    public let name: String
    /// The `knit.executor` label value, as on every object of the instance.
    public let instance: String
    public let authFile: String

    /// The Secret's name unless configured otherwise.
    public static let defaultName = "knit-registry"
    /// The Secret's one key, as Kubernetes requires for its type.
    public static let dataKey = ".dockerconfigjson"

    public init(api: KubeAPI, settings: KubernetesSettings, authFile: String, name: String = Self.defaultName) {
        self.api = api
        namespace = settings.namespace
        self.name = name
        instance = settings.instance
        self.authFile = authFile
    }

    public enum Outcome: Sendable, Equatable {
        case created, updated, unchanged
    }

    private var collection: String { "/api/v1/namespaces/\(namespace)/secrets" }

    /// Makes the Secret hold the auth file's current content.
    /// - Throws: ``ExecutorError`` `invalidLaunch` when the file cannot be read or is not an auth file (the
    ///   Secret is left as it was), `commandFailed` when the API server refuses or does not answer.
    @discardableResult
    public func sync() throws(ExecutorError) -> Outcome {
        guard let bytes = FileManager.default.contents(atPath: authFile) else {
            throw ExecutorError(.invalidLaunch, "cannot read the registry auth file \(authFile)")
        }
        guard let parsed = JSONValue.parse(Array(bytes)), case .object = parsed["auths"] ?? .null else {
            throw ExecutorError(
                .invalidLaunch,
                "the registry auth file \(authFile) is not {\"auths\":{…}} JSON; the Secret \(name) is left as it was"
            )
        }
        let encoded = bytes.base64EncodedString()
        let path = collection + "/" + name
        let existing: JSONValue?
        do { existing = try api.get(path) } catch { throw Self.failure(error, name) }
        guard let existing else {
            do { _ = try api.create(collection, secret(encoded, resourceVersion: nil)) } catch {
                throw Self.failure(error, name)
            }
            return .created
        }
        let current = existing["data"]?[Self.dataKey]?.stringValue
        let labelled = existing["metadata"]?["labels"]?[KubernetesObjects.instanceLabel]?.stringValue == instance
        let typed = existing["type"]?.stringValue == "kubernetes.io/dockerconfigjson"
        if current == encoded && labelled && typed { return .unchanged }
        guard typed else {
            // The type of a Secret cannot change; a Secret of another type under this name is not Knit's.
            throw ExecutorError(
                .commandFailed,
                "Secret \(namespace)/\(name) exists with type \(existing["type"]?.stringValue ?? "?"), "
                    + "not kubernetes.io/dockerconfigjson; delete it or choose another name"
            )
        }
        let version = existing["metadata"]?["resourceVersion"]?.stringValue
        do { _ = try api.replace(path, secret(encoded, resourceVersion: version)) } catch {
            throw Self.failure(error, name)
        }
        return .updated
    }

    private func secret(_ encoded: String, resourceVersion: String?) -> JSONValue {
        var metadata: [(String, JSONValue)] = [
            ("name", .string(name)), ("namespace", .string(namespace)),
            ("labels", .object([(KubernetesObjects.instanceLabel, .string(instance))])),
        ]
        // A replace names the version it replaces: a concurrent change makes it a 409, tried again next time.
        if let resourceVersion { metadata.append(("resourceVersion", .string(resourceVersion))) }
        return .object([
            ("apiVersion", .string("v1")), ("kind", .string("Secret")), ("metadata", .object(metadata)),
            ("type", .string("kubernetes.io/dockerconfigjson")),
            ("data", .object([(Self.dataKey, .string(encoded))])),
        ])
    }

    private static func failure(_ error: KubeAPIError, _ name: String) -> ExecutorError {
        ExecutorError(.commandFailed, "registry pull Secret \(name): \(error)")
    }
}
