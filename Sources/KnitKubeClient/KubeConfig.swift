import Foundation
import KnitSystem
import KnitYAML

/// Where the Kubernetes API server is and how Knit proves who it is: read from a kubeconfig file (its
/// current context, or a named one) or from a pod's service-account files. Certificates and keys are held as
/// PEM text, whether the kubeconfig names a file or embeds base64 data, so the HTTP client hands libcurl
/// blobs and never a path that could change under it.
public struct KubeConfig: Sendable, Equatable {
    public enum Credentials: Sendable, Equatable {
        /// A client certificate and its private key (PEM).
        case clientCertificate(certificatePEM: String, keyPEM: String)
        /// A fixed bearer token.
        case bearerToken(String)
        /// A bearer token re-read from this file before each connection: service-account tokens are rotated.
        case bearerTokenFile(String)
        /// Nothing: the server must allow anonymous requests (only test clusters do).
        case none
    }

    /// `https://host:port`, without a trailing slash.
    public var server: String
    /// The CA that signs the server's certificate (PEM); nil trusts the system's CAs.
    public var certificateAuthorityPEM: String?
    /// The kubeconfig's `insecure-skip-tls-verify`: kept so the client can refuse it loudly.
    public var insecureSkipTLSVerify: Bool
    /// `tls-server-name`: the name to check the server's certificate against, when not the URL's host.
    public var tlsServerName: String?
    public var credentials: Credentials
    /// The context's namespace (or the pod's own); nil when neither says.
    public var namespace: String?

    public init(
        server: String,
        certificateAuthorityPEM: String?,
        insecureSkipTLSVerify: Bool = false,
        tlsServerName: String? = nil,
        credentials: Credentials,
        namespace: String? = nil
    ) {
        self.server = server
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.tlsServerName = tlsServerName
        self.credentials = credentials
        self.namespace = namespace
    }

    /// The service-account directory every pod gets.
    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// Reads the kubeconfig at `path`. Relative file names inside it are relative to its directory, as kubectl
    /// reads them.
    public static func load(path: String, context: String? = nil) throws(KubeConfigError) -> KubeConfig {
        guard let text = readTextFile(path) else { throw KubeConfigError("cannot read kubeconfig \(path)") }
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        return try parse(text, directory: directory.isEmpty ? "/" : directory, context: context)
    }

    /// Parses kubeconfig `text`; `directory` resolves relative file names.
    public static func parse(_ text: String, directory: String, context: String? = nil) throws(KubeConfigError)
        -> KubeConfig
    {
        let root: YAMLNode?
        do { root = try parseYAML(text) } catch { throw KubeConfigError("kubeconfig is not YAML: \(error)") }
        guard let root, root.entries != nil else { throw KubeConfigError("kubeconfig is not a mapping") }
        let contextName: String
        if let context {
            contextName = context
        } else {
            guard let current = root["current-context"]?.scalar, !current.isEmpty else {
                throw KubeConfigError("kubeconfig has no current-context; name a context")
            }
            contextName = current
        }
        let contextNode = try named("contexts", contextName, in: root, field: "context")
        guard let clusterName = contextNode["cluster"]?.scalar, !clusterName.isEmpty else {
            throw KubeConfigError("context \(contextName) names no cluster")
        }
        let cluster = try named("clusters", clusterName, in: root, field: "cluster")
        guard var server = cluster["server"]?.scalar, !server.isEmpty else {
            throw KubeConfigError("cluster \(clusterName) has no server")
        }
        while server.hasSuffix("/") { server.removeLast() }
        let files = FileReader(directory: directory)
        let authority = try files.pem(
            path: cluster["certificate-authority"]?.scalar,
            data: cluster["certificate-authority-data"]?.scalar,
            what: "cluster \(clusterName) certificate-authority"
        )
        var credentials = Credentials.none
        if let userName = contextNode["user"]?.scalar, !userName.isEmpty {
            credentials = try Self.credentials(try named("users", userName, in: root, field: "user"), userName, files)
        }
        let namespace = contextNode["namespace"]?.scalar
        return KubeConfig(
            server: server,
            certificateAuthorityPEM: authority,
            insecureSkipTLSVerify: cluster["insecure-skip-tls-verify"]?.scalar == "true",
            tlsServerName: cluster["tls-server-name"]?.scalar,
            credentials: credentials,
            namespace: namespace?.isEmpty == false ? namespace : nil
        )
    }

    /// The credentials Kubernetes gives a pod: its service account's token (re-read on use), CA and namespace,
    /// and the API server from `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT`.
    public static func inCluster(
        directory: String = serviceAccountDirectory,
        environment: [String: String]
    ) throws(KubeConfigError) -> KubeConfig {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
            let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty
        else {
            throw KubeConfigError("not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset")
        }
        let tokenPath = directory + "/token"
        guard readTextFile(tokenPath) != nil else { throw KubeConfigError("cannot read \(tokenPath)") }
        guard let authority = readTextFile(directory + "/ca.crt") else {
            throw KubeConfigError("cannot read \(directory)/ca.crt")
        }
        // An IPv6 service address needs brackets in a URL.
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let namespace = readTextFile(directory + "/namespace")?.trimmingCharacters(in: .whitespacesAndNewlines)
        return KubeConfig(
            server: "https://\(hostPart):\(port)",
            certificateAuthorityPEM: authority,
            insecureSkipTLSVerify: false,
            tlsServerName: nil,
            credentials: .bearerTokenFile(tokenPath),
            namespace: namespace?.isEmpty == false ? namespace : nil
        )
    }

    /// The token to send now: the fixed one or the file's current content; nil for certificates or nothing.
    public func currentBearerToken() throws(KubeConfigError) -> String? {
        switch credentials {
        case .bearerToken(let token): return token
        case .bearerTokenFile(let path):
            guard let text = readTextFile(path) else { throw KubeConfigError("cannot read token file \(path)") }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        case .clientCertificate, .none: return nil
        }
    }

    private static func credentials(_ user: YAMLNode, _ name: String, _ files: FileReader) throws(KubeConfigError)
        -> Credentials
    {
        for unsupported in ["exec", "auth-provider", "username", "password"] where user[unsupported] != nil {
            throw KubeConfigError(
                "user \(name) uses \(unsupported), which Knit does not support; use a client "
                    + "certificate or a token"
            )
        }
        let certificate = try files.pem(
            path: user["client-certificate"]?.scalar,
            data: user["client-certificate-data"]?.scalar,
            what: "user \(name) client-certificate"
        )
        let key = try files.pem(
            path: user["client-key"]?.scalar,
            data: user["client-key-data"]?.scalar,
            what: "user \(name) client-key"
        )
        switch (certificate, key) {
        case let (certificate?, key?): return .clientCertificate(certificatePEM: certificate, keyPEM: key)
        case (.some, nil): throw KubeConfigError("user \(name) has a client certificate but no client key")
        case (nil, .some): throw KubeConfigError("user \(name) has a client key but no client certificate")
        case (nil, nil): break
        }
        if let token = user["token"]?.scalar, !token.isEmpty { return .bearerToken(token) }
        if let tokenFile = user["tokenFile"]?.scalar, !tokenFile.isEmpty {
            let path = files.resolve(tokenFile)
            guard readTextFile(path) != nil else { throw KubeConfigError("user \(name): cannot read \(path)") }
            return .bearerTokenFile(path)
        }
        return .none
    }

    /// The `field` mapping of the entry called `name` in the list `list` (`clusters`, `contexts`, `users`).
    private static func named(_ list: String, _ name: String, in root: YAMLNode, field: String)
        throws(KubeConfigError) -> YAMLNode
    {
        guard let entries = root[list]?.items,
            let entry = entries.first(where: { $0["name"]?.scalar == name })
        else { throw KubeConfigError("kubeconfig has no \(field) named \(name) in \(list)") }
        guard let value = entry[field], value.entries != nil else {
            throw KubeConfigError("\(list) entry \(name) has no \(field) mapping")
        }
        return value
    }
}

/// Why a kubeconfig or the service-account files could not be used.
public struct KubeConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Reads the PEM a kubeconfig names by file or embeds as base64 data.
private struct FileReader {
    let directory: String

    func resolve(_ path: String) -> String { path.hasPrefix("/") ? path : directory + "/" + path }

    func pem(path: String?, data: String?, what: String) throws(KubeConfigError) -> String? {
        // kubectl gives the embedded data precedence over the file.
        if let data, !data.isEmpty {
            let compact = data.filter { !$0.isWhitespace }
            guard let bytes = Data(base64Encoded: compact), let text = String(data: bytes, encoding: .utf8) else {
                throw KubeConfigError("\(what)-data is not base64 of PEM text")
            }
            return try checked(text, what)
        }
        guard let path, !path.isEmpty else { return nil }
        let resolved = resolve(path)
        guard let text = readTextFile(resolved) else { throw KubeConfigError("\(what): cannot read \(resolved)") }
        return try checked(text, what)
    }

    private func checked(_ text: String, _ what: String) throws(KubeConfigError) -> String {
        guard text.contains("-----BEGIN ") else { throw KubeConfigError("\(what) is not PEM") }
        return text
    }
}
