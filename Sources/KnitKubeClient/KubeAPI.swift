public import KnitCore
import KnitHTTP

/// Plain requests to the Kubernetes API server with a ``KubeConfig``'s CA and credentials: create, get and
/// delete of JSON objects. Watches and log streams are not here yet.
public struct KubeAPI: Sendable {
    public let config: KubeConfig
    private let http: HTTPClient

    /// - Throws: when the kubeconfig asks for something Knit will not do (skip TLS verification, or a
    ///   `tls-server-name` the client cannot honour yet).
    public init(config: KubeConfig, connectTimeoutSeconds: Int = 10) throws(KubeConfigError) {
        guard !config.insecureSkipTLSVerify else {
            throw KubeConfigError("the kubeconfig sets insecure-skip-tls-verify; Knit always verifies the server")
        }
        guard config.tlsServerName == nil else {
            throw KubeConfigError("the kubeconfig sets tls-server-name, which Knit does not support yet")
        }
        var certificate: String?
        var key: String?
        if case .clientCertificate(let certificatePEM, let keyPEM) = config.credentials {
            certificate = certificatePEM
            key = keyPEM
        }
        self.config = config
        self.http = HTTPClient(
            caPEM: config.certificateAuthorityPEM,
            clientCertificatePEM: certificate,
            clientKeyPEM: key,
            connectTimeoutSeconds: connectTimeoutSeconds,
            stallTimeoutSeconds: 60,
            userAgent: "knit-scheduler"
        )
    }

    /// POSTs `object` to the collection at `path` (`/api/v1/namespaces/NS/persistentvolumeclaims`); unknown
    /// fields are refused by the server (`fieldValidation=Strict`), as the unit tests' strict schema check does.
    /// Answers the object as the server stored it.
    public func create(_ path: String, _ object: JSONValue) throws(KubeAPIError) -> JSONValue {
        let response = try send("POST", path + "?fieldManager=knit&fieldValidation=Strict", body: object)
        return try decoded(response, "POST", path)
    }

    /// GETs the object at `path`; nil when it does not exist.
    public func get(_ path: String) throws(KubeAPIError) -> JSONValue? {
        let response = try send("GET", path, body: nil)
        if response.status == 404 { return nil }
        return try decoded(response, "GET", path)
    }

    /// DELETEs the object at `path`, its dependents in the background (a Job's Pods); true when it existed.
    @discardableResult
    public func delete(_ path: String) throws(KubeAPIError) -> Bool {
        let options: JSONValue = .object([
            ("apiVersion", .string("v1")), ("kind", .string("DeleteOptions")),
            ("propagationPolicy", .string("Background")),
        ])
        let response = try send("DELETE", path, body: options)
        if response.status == 404 { return false }
        _ = try decoded(response, "DELETE", path)
        return true
    }

    private func send(_ method: String, _ path: String, body: JSONValue?) throws(KubeAPIError) -> HTTPResponse {
        var headers: HTTPHeaders = ["Accept": "application/json"]
        if body != nil { headers.append("Content-Type", "application/json") }
        let token: String?
        do { token = try config.currentBearerToken() } catch { throw KubeAPIError(method, path, reason: "\(error)") }
        if let token { headers.append("Authorization", "Bearer \(token)") }
        let request = HTTPRequest(
            method: method,
            url: config.server + path,
            headers: headers,
            body: body.map { .bytes(Array($0.rendered(indent: 0).utf8)) }
        )
        do { return try http.perform(request) } catch {
            throw KubeAPIError(method, path, reason: "no response (\(error.code)): \(error.message)")
        }
    }

    private func decoded(_ response: HTTPResponse, _ method: String, _ path: String) throws(KubeAPIError)
        -> JSONValue
    {
        let body = JSONValue.parse(response.body)
        guard response.isSuccess else {
            // The API server explains every refusal in a `Status` object: reason (`AlreadyExists`,
            // `Forbidden`, …) and message.
            throw KubeAPIError(
                method,
                path,
                status: response.status,
                reason: body?["reason"]?.stringValue ?? "",
                message: body?["message"]?.stringValue ?? String(decoding: response.body.prefix(512), as: UTF8.self)
            )
        }
        guard let body else { throw KubeAPIError(method, path, reason: "the response is not JSON") }
        return body
    }
}

/// A request the API server refused (`status` and its `Status` reason and message) or never answered.
public struct KubeAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    public let method: String
    public let path: String
    /// The HTTP status; nil when there was no response.
    public let status: Int?
    /// The `Status` reason (`AlreadyExists`, `Forbidden`, `NotFound`, `Invalid`, …), or why there was none.
    public let reason: String
    public let message: String

    init(_ method: String, _ path: String, status: Int? = nil, reason: String, message: String = "") {
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.message = message
    }

    public var description: String {
        let head = "\(method) \(path)"
        guard let status else { return "\(head): \(reason)" }
        return "\(head): \(status) \(reason)" + (message.isEmpty ? "" : ": \(message)")
    }
}
