public import KnitCore

/// What the Kubernetes executor is told at start-up (`--namespace`, `--volumes`, the instance name) and
/// applies to every Run's objects.
public struct KubernetesSettings: Sendable, Equatable {
    /// How a Data directory of the Knit host reaches the nodes.
    public enum Volumes: Sendable, Equatable {
        /// The store's data directory is at the same path on every node (one node, or nodes mounting it).
        case hostPath
        /// The Knit host exports the store's data directory as `server:export`.
        case nfs(server: String, export: String)
    }

    public let namespace: String
    /// The Knit instance's name, a label value on every object, so two instances can share a cluster.
    public let instance: String
    public let volumes: Volumes
    /// The store's data directory on the Knit host (``InstanceLayout/data``): what an NFS export stands for.
    public let dataDirectory: String
    /// The size each PersistentVolume claims. Kubernetes requires one; neither hostPath nor NFS enforces it.
    public let storageCapacity: ResourceQuantity
    /// The Secret holding the registry's pull credentials, or nil when images need none.
    public let imagePullSecret: String?

    public init(
        namespace: String,
        instance: String,
        volumes: Volumes,
        dataDirectory: String,
        storageCapacity: ResourceQuantity = Self.defaultStorageCapacity,
        imagePullSecret: String? = nil
    ) throws(KubernetesObjectError) {
        guard KubernetesNames.isLabel(namespace) else {
            throw KubernetesObjectError("namespace \(JSONValue.quoted(namespace)) is not a DNS-1123 label")
        }
        guard KubernetesNames.isLabelValue(instance), !instance.isEmpty else {
            throw KubernetesObjectError("instance \(JSONValue.quoted(instance)) cannot be a label value")
        }
        if let secret = imagePullSecret, !KubernetesNames.isSubdomain(secret) {
            throw KubernetesObjectError("image pull secret \(JSONValue.quoted(secret)) is not a DNS-1123 subdomain")
        }
        guard dataDirectory.hasPrefix("/") else {
            throw KubernetesObjectError("data directory \(JSONValue.quoted(dataDirectory)) is not absolute")
        }
        self.namespace = namespace
        self.instance = instance
        self.volumes = volumes
        self.dataDirectory =
            dataDirectory.count > 1 && dataDirectory.hasSuffix("/")
            ? String(dataDirectory.dropLast()) : dataDirectory
        self.storageCapacity = storageCapacity
        self.imagePullSecret = imagePullSecret
    }

    public static let defaultStorageCapacity = try! ResourceQuantity(parsing: "1Gi")

    /// Reads `--volumes`: `hostpath`, or `nfs://SERVER/EXPORT` (EXPORT absolute, as in `/etc/exports`).
    public static func volumes(parsing text: String) throws(KubernetesObjectError) -> Volumes {
        if text == "hostpath" { return .hostPath }
        let scheme = "nfs://"
        guard text.hasPrefix(scheme) else {
            throw KubernetesObjectError("volumes \(JSONValue.quoted(text)) is neither hostpath nor nfs://SERVER/EXPORT")
        }
        let rest = text.dropFirst(scheme.count)
        guard let slash = rest.firstIndex(of: "/"), slash != rest.startIndex else {
            throw KubernetesObjectError("volumes \(JSONValue.quoted(text)) names no server or no export path")
        }
        var export = String(rest[slash...])
        while export.count > 1 && export.hasSuffix("/") { export.removeLast() }
        return .nfs(server: String(rest[..<slash]), export: export)
    }
}

/// Why objects could not be built: a setting or a Run that Kubernetes would refuse.
public struct KubernetesObjectError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Kubernetes' name rules, checked before sending so a bad name is Knit's clear error, not a 422.
enum KubernetesNames {
    /// DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
    static func isLabel(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= 63 else { return false }
        guard isLowerAlphanumeric(bytes.first!), isLowerAlphanumeric(bytes.last!) else { return false }
        return bytes.allSatisfy { isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") }
    }

    /// DNS-1123 subdomain: dot-separated labels, at most 253 characters.
    static func isSubdomain(_ text: String) -> Bool {
        text.utf8.count <= 253
            && text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy {
                isLabel(String($0))
            }
    }

    /// Label value: empty, or `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?` of at most 63 characters.
    static func isLabelValue(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { return true }
        guard bytes.count <= 63, isAlphanumeric(bytes.first!), isAlphanumeric(bytes.last!) else { return false }
        return bytes.allSatisfy {
            isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")
        }
    }

    private static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        isLowerAlphanumeric(byte) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
    }
}
