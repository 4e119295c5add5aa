public import KnitCore
import KnitHTTP
import Synchronization

/// Requests to the Kubernetes API server with a ``KubeConfig``'s CA and credentials: create, get, list and
/// delete of JSON objects, watches and streamed bodies (a followed pod log). Every request is counted by verb
/// (``requestCounts``), shared by every copy of this value, so a scheduler can log and a benchmark can read
/// what observing its Runs costs the API server.
public struct KubeAPI: Sendable {
    public let config: KubeConfig
    /// Requests sent so far, by Kubernetes verb: `create`, `get`, `list`, `watch`, `update`, `delete`, and
    /// `log` (a pod log, plain or followed).
    public var requestCounts: [String: Int] { counter.counts.withLock { $0 } }
    private let counter = RequestCounter()
    private let http: HTTPClient
    /// For watches and followed logs, which may stay silent for long: a Run that prints nothing for minutes
    /// is normal, and a watch is bounded by its own `timeoutSeconds`.
    private let streamHTTP: HTTPClient

    /// - Throws: when the kubeconfig asks for something Knit will not do (skip TLS verification, or a
    ///   `tls-server-name` the client cannot honour yet).
    /// - Parameters:
    ///   - stallTimeoutSeconds: a plain request silent this long is abandoned.
    ///   - streamStallTimeoutSeconds: the same for watches and ``stream(_:sink:)``.
    public init(
        config: KubeConfig,
        connectTimeoutSeconds: Int = 10,
        stallTimeoutSeconds: Int = 60,
        streamStallTimeoutSeconds: Int = 24 * 3600
    ) throws(KubeConfigError) {
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
        func client(stall: Int) -> HTTPClient {
            HTTPClient(
                caPEM: config.certificateAuthorityPEM,
                clientCertificatePEM: certificate,
                clientKeyPEM: key,
                connectTimeoutSeconds: connectTimeoutSeconds,
                stallTimeoutSeconds: stall,
                userAgent: "knit-scheduler"
            )
        }
        self.http = client(stall: stallTimeoutSeconds)
        self.streamHTTP = client(stall: streamStallTimeoutSeconds)
    }

    /// POSTs `object` to the collection at `path` (`/api/v1/namespaces/NS/persistentvolumeclaims`); unknown
    /// fields are refused by the server (`fieldValidation=Strict`), as the unit tests' strict schema check does.
    /// Answers the object as the server stored it.
    public func create(_ path: String, _ object: JSONValue) throws(KubeAPIError) -> JSONValue {
        let response = try send(
            "POST",
            path + "?fieldManager=knit&fieldValidation=Strict",
            body: object,
            verb: "create"
        )
        return try decoded(response, "POST", path)
    }

    /// PUTs `object` over the object at `path`: a whole replacement, guarded by the `metadata.resourceVersion`
    /// it carries (a concurrent change answers 409). Answers the object as the server stored it.
    public func replace(_ path: String, _ object: JSONValue) throws(KubeAPIError) -> JSONValue {
        let response = try send(
            "PUT",
            path + "?fieldManager=knit&fieldValidation=Strict",
            body: object,
            verb: "update"
        )
        return try decoded(response, "PUT", path)
    }

    /// GETs the object at `path`; nil when it does not exist.
    public func get(_ path: String) throws(KubeAPIError) -> JSONValue? {
        let response = try send("GET", path, body: nil, verb: "get")
        if response.status == 404 { return nil }
        return try decoded(response, "GET", path)
    }

    /// DELETEs the object at `path`; true when it existed.
    /// - Parameters:
    ///   - gracePeriodSeconds: how long a pod's containers get between SIGTERM and SIGKILL (0: at once); nil
    ///     keeps the pod's own `terminationGracePeriodSeconds`. It goes in the body's DeleteOptions: the API
    ///     server ignores a query parameter when the body has DeleteOptions.
    ///   - propagationPolicy: what becomes of dependents (a Job's Pods): `Background` deletes them after the
    ///     owner, `Foreground` before it, `Orphan` keeps them.
    @discardableResult
    public func delete(
        _ path: String,
        gracePeriodSeconds: Int? = nil,
        propagationPolicy: String = "Background"
    ) throws(KubeAPIError) -> Bool {
        let response = try send(
            "DELETE",
            path,
            body: Self.deleteOptions(gracePeriodSeconds: gracePeriodSeconds, propagationPolicy: propagationPolicy),
            verb: "delete"
        )
        if response.status == 404 { return false }
        _ = try decoded(response, "DELETE", path)
        return true
    }

    static func deleteOptions(gracePeriodSeconds: Int?, propagationPolicy: String) -> JSONValue {
        var members: [(String, JSONValue)] = [("apiVersion", .string("v1")), ("kind", .string("DeleteOptions"))]
        if let gracePeriodSeconds { members.append(("gracePeriodSeconds", .number("\(max(0, gracePeriodSeconds))"))) }
        members.append(("propagationPolicy", .string(propagationPolicy)))
        return .object(members)
    }

    /// The items of the collection at `path` whose labels match `labelSelector` (`key=value,…`), and the list's
    /// resourceVersion, from which a watch continues without missing a change.
    public func list(_ path: String, labelSelector: String) throws(KubeAPIError) -> (
        items: [JSONValue], resourceVersion: String
    ) {
        let query = path + "?labelSelector=" + Self.percentEncoded(labelSelector)
        let list = try decoded(try send("GET", query, body: nil, verb: "list"), "GET", path)
        return (list["items"]?.arrayValue ?? [], list["metadata"]?["resourceVersion"]?.stringValue ?? "")
    }

    /// Watches the collection at `path` for objects matching `labelSelector`, from `resourceVersion`, until the
    /// server ends the stream (after `timeoutSeconds`) or `onEvent` throws. Bookmarks are asked for, so a
    /// restarted watch resumes close to where it stopped; an `ERROR` event (410 Gone: the version is too old)
    /// is handed over like any other, and the caller lists again.
    /// `isCancelled` is asked about once a second, events or not; true ends the watch (``KubeAPIError``).
    /// - Throws: ``KubeAPIError``, or what `onEvent` threw (which ends the watch).
    public func watch(
        _ path: String,
        labelSelector: String,
        resourceVersion: String,
        timeoutSeconds: Int = 300,
        isCancelled: (@Sendable () -> Bool)? = nil,
        onEvent: (KubeWatchEvent) throws -> Void
    ) throws {
        let query =
            path + "?watch=true&allowWatchBookmarks=true&labelSelector=" + Self.percentEncoded(labelSelector)
            + "&resourceVersion=" + Self.percentEncoded(resourceVersion) + "&timeoutSeconds=\(timeoutSeconds)"
        var pending: [UInt8] = []
        try stream(query, verb: "watch", isCancelled: isCancelled) { chunk in
            pending.append(contentsOf: chunk)
            // One JSON event per line; a line may arrive split over several chunks.
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = pending[..<newline]
                defer { pending.removeSubrange(...newline) }
                guard !line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) else { continue }
                guard let event = JSONValue.parse(line), let type = event["type"]?.stringValue,
                    let object = event["object"]
                else { throw KubeAPIError("GET", path, reason: "a watch event is not JSON") }
                try onEvent(KubeWatchEvent(type: type, object: object))
            }
        }
    }

    /// GETs `path` and hands the body to `sink` as it arrives (a pod's log with `follow=true`, a watch).
    /// `isCancelled` is asked about once a second, bytes or not; true ends the transfer (``KubeAPIError``).
    /// - Throws: ``KubeAPIError``, or what `sink` threw (which ends the transfer).
    public func stream(
        _ path: String,
        isCancelled: (@Sendable () -> Bool)? = nil,
        sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        try stream(path, verb: path.contains("/log") ? "log" : "get", isCancelled: isCancelled, sink: sink)
    }

    private func stream(
        _ path: String,
        verb: String,
        isCancelled: (@Sendable () -> Bool)?,
        sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        var sinkError: (any Error)?
        let response: HTTPResponse
        do {
            response = try withoutActuallyEscaping(sink) { (sink) throws(KubeAPIError) -> HTTPResponse in
                try send("GET", path, body: nil, verb: verb, isCancelled: isCancelled) { chunk in
                    do { try sink(chunk) } catch {
                        sinkError = error
                        throw error
                    }
                }
            }
        } catch {
            // The caller's own error, not a transport failure, when its sink stopped the transfer.
            if let sinkError { throw sinkError }
            throw error
        }
        _ = try decoded(response, "GET", path, bodyExpected: false)
    }

    /// `text` with everything but unreserved characters percent-encoded, for a query value.
    static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            let unreserved =
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "~")
            if unreserved {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 15)]], as: UTF8.self)
            }
        }
        return out
    }

    private func send(
        _ method: String,
        _ path: String,
        body: JSONValue?,
        verb: String,
        isCancelled: (@Sendable () -> Bool)? = nil,
        sink: ((UnsafeRawBufferPointer) throws -> Void)? = nil
    ) throws(KubeAPIError) -> HTTPResponse {
        counter.counts.withLock { $0[verb, default: 0] += 1 }
        var headers: HTTPHeaders = ["Accept": "application/json"]
        if body != nil { headers.append("Content-Type", "application/json") }
        let token: String?
        do { token = try config.currentBearerToken() } catch { throw KubeAPIError(method, path, reason: "\(error)") }
        if let token { headers.append("Authorization", "Bearer \(token)") }
        let request = HTTPRequest(
            method: method,
            url: config.server + path,
            headers: headers,
            body: body.map { .bytes(Array($0.rendered(indent: 0).utf8)) },
            isCancelled: isCancelled
        )
        do { return try (sink == nil ? http : streamHTTP).perform(request, sink: sink) } catch {
            throw KubeAPIError(method, path, reason: "no response (\(error.code)): \(error.message)")
        }
    }

    private func decoded(_ response: HTTPResponse, _ method: String, _ path: String, bodyExpected: Bool = true)
        throws(KubeAPIError) -> JSONValue
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
        guard bodyExpected else { return .null }
        guard let body else { throw KubeAPIError(method, path, reason: "the response is not JSON") }
        return body
    }
}

private final class RequestCounter: Sendable {
    let counts = Mutex<[String: Int]>([:])
}

/// One line of a watch stream: `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` (only `metadata.resourceVersion`
/// is meaningful) or `ERROR` (the object is a `Status`).
public struct KubeWatchEvent: Sendable, Equatable {
    public var type: String
    public var object: JSONValue

    public init(type: String, object: JSONValue) {
        self.type = type
        self.object = object
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
