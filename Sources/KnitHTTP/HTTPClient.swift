internal import CKnitCurl
internal import CKnitShims
internal import KnitSystem

/// A blocking HTTP/1.1 client over libcurl. Each request gets its own easy handle, so one client may be
/// used from several threads at once.
public struct HTTPClient: Sendable {
    /// PEM of the only CA to trust; nil means the system's trust store.
    let caPEM: [UInt8]?
    /// A client certificate and its key (PEM), presented when the server asks for one (a Kubernetes API
    /// server authenticates kubeconfig users this way).
    let clientIdentity: (certificatePEM: [UInt8], keyPEM: [UInt8])?
    public var connectTimeoutSeconds: Int
    /// A transfer slower than 1 byte/s for this long is abandoned.
    public var stallTimeoutSeconds: Int
    public var userAgent: String

    /// - Parameters:
    ///   - caPEM: when given, the server certificate must chain to this CA and no other.
    ///   - clientCertificatePEM, clientKeyPEM: this client's certificate and private key, both or neither.
    public init(
        caPEM: String? = nil,
        clientCertificatePEM: String? = nil,
        clientKeyPEM: String? = nil,
        connectTimeoutSeconds: Int = 30,
        stallTimeoutSeconds: Int = 300,
        userAgent: String = "knit"
    ) {
        _ = curlGlobalInit
        self.caPEM = caPEM.map { Array($0.utf8) }
        if let clientCertificatePEM, let clientKeyPEM {
            clientIdentity = (Array(clientCertificatePEM.utf8), Array(clientKeyPEM.utf8))
        } else {
            precondition(clientCertificatePEM == nil && clientKeyPEM == nil, "a client certificate needs its key")
            clientIdentity = nil
        }
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.stallTimeoutSeconds = stallTimeoutSeconds
        self.userAgent = userAgent
    }

    /// Sends `request` and waits for the whole response.
    ///
    /// - Parameter sink: receives the body of a 2xx response as it arrives; throwing aborts the transfer
    ///   (the error comes back as ``HTTPError/underlying``). Non-2xx bodies, and all bodies when `sink`
    ///   is nil, are collected into ``HTTPResponse/body``.
    /// - Throws: ``HTTPError`` when no complete response was received.
    public func perform(_ request: HTTPRequest, sink: ((UnsafeRawBufferPointer) throws -> Void)? = nil)
        throws(HTTPError) -> HTTPResponse
    {
        var handle = EasyHandle()
        return try handle.perform(request, client: self, sink: sink)
    }
}

/// `curl_global_init` is not thread-safe, so it runs once, from Swift's thread-safe global initializer.
private let curlGlobalInit: Void = {
    let rc = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
    precondition(rc == CURLE_OK, "curl_global_init failed: \(rc.rawValue)")
}()

/// State the C callbacks reach through their `userdata` pointer.
final class TransferState {
    var readBody: ((UnsafeMutableRawBufferPointer) throws -> Int)?
    var pendingBytes: [UInt8] = []
    var pendingOffset = 0
    var trailers: HTTPTrailers?
    var sink: ((UnsafeRawBufferPointer) throws -> Void)?
    var progress: ((HTTPProgress) -> Void)?
    var isCancelled: (@Sendable () -> Bool)?
    var uploadTotal: Int64?
    var maximumCollectedBody = 0

    var status = 0
    var headers = HTTPHeaders()
    var trailerFields = HTTPHeaders()
    var phase = Phase.statusLine
    var body: [UInt8] = []
    /// Why our side stopped the transfer; reported instead of curl's generic callback error.
    var failure: HTTPError?

    enum Phase { case statusLine, headers, body }

    init() {}

    func headerLine(_ raw: UnsafeRawBufferPointer) {
        var line = Substring(decoding: raw, as: UTF8.self)
        while let last = line.last, last == "\r\n" || last == "\n" || last == "\r" { line.removeLast() }
        if line.hasPrefix("HTTP/") {
            // A new status line (after a 1xx, or the final one) starts a fresh header block.
            let parts = line.split(separator: " ", maxSplits: 2)
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            headers = HTTPHeaders()
            phase = .headers
            return
        }
        if line.isEmpty {
            if phase == .headers { phase = .body }
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = String(line[..<colon]).trimmed()
        let value = String(line[line.index(after: colon)...]).trimmed()
        if phase == .body { trailerFields.append(name, value) } else { headers.append(name, value) }
    }

    /// Returns false to make curl stop.
    func bodyBytes(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if (200..<300).contains(status), let sink {
            do { try sink(bytes) } catch {
                failure = HTTPError(
                    code: .aborted,
                    message: "response body handler failed: \(error)",
                    underlying: error
                )
                return false
            }
            return true
        }
        guard body.count + bytes.count <= maximumCollectedBody else {
            failure = HTTPError(code: .other, message: "response body is larger than \(maximumCollectedBody) bytes")
            return false
        }
        body.append(contentsOf: bytes)
        return true
    }

    /// Returns the byte count, or nil to abort.
    func fillUpload(_ buffer: UnsafeMutableRawBufferPointer) -> Int? {
        guard let readBody else { return 0 }
        do { return try readBody(buffer) } catch {
            failure = HTTPError(code: .aborted, message: "request body source failed: \(error)", underlying: error)
            return nil
        }
    }
}
