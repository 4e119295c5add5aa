internal import CKnitFastCGI

#if canImport(Glibc)
    import Glibc
#endif

/// One FastCGI request, from accept to finish.
///
/// `~Copyable` so a request cannot be answered twice: ``respond(status:headers:)`` consumes it and hands back
/// the only ``FastCGIResponse`` that may write the body. Dropping either finishes the request.
public struct FastCGIRequest: ~Copyable {
    private let raw: UnsafeMutablePointer<FCGX_Request>

    init(raw: UnsafeMutablePointer<FCGX_Request>) { self.raw = raw }

    /// A CGI parameter (`REQUEST_METHOD`, `REQUEST_URI`, `CONTENT_TYPE`, `HTTP_AUTHORIZATION`, …).
    public func parameter(_ name: String) -> String? {
        guard let value = FCGX_GetParam(name, raw.pointee.envp) else { return nil }
        return String(cString: value)
    }

    func rawEnvironment() -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? { raw.pointee.envp }

    /// Reads request body bytes into `buffer`; returns 0 at the end of the body.
    ///
    /// An aborted upload looks like a short read to libfcgi, so the stream's error state is checked: a body
    /// that ends without FastCGI's end-of-stream record throws `.connectionLost` instead of returning 0.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(FastCGIError) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        let count = FCGX_GetStr(base.assumingMemoryBound(to: CChar.self), Int32(clamping: buffer.count), raw.pointee.in)
        if count < buffer.count {
            let error = FCGX_GetError(raw.pointee.in)
            if error != 0 { throw FastCGIError(.connectionLost, "request body ended early", cause: error) }
        }
        return Int(max(count, 0))
    }

    /// Sends the status line and headers; the returned response writes the body.
    public consuming func respond(status: Int, headers: [(String, String)]) throws(FastCGIError) -> FastCGIResponse {
        let response = FastCGIResponse(raw: raw)
        discard self
        try response.write(responseHead(status: status, headers: headers))
        return response
    }

    deinit { FCGX_Finish_r(raw) }
}

/// The body side of a request whose head has been sent.
public struct FastCGIResponse: ~Copyable {
    private let raw: UnsafeMutablePointer<FCGX_Request>

    init(raw: UnsafeMutablePointer<FCGX_Request>) { self.raw = raw }

    /// Writes body bytes. Throws `.connectionLost` when the web server dropped the connection.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(FastCGIError) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var offset = 0
        while offset < bytes.count {
            let chunk = min(bytes.count - offset, Int(Int32.max))
            let written = FCGX_PutStr(
                (base + offset).assumingMemoryBound(to: CChar.self),
                Int32(chunk),
                raw.pointee.out
            )
            guard written == Int32(chunk) else {
                throw FastCGIError(.connectionLost, "client went away", cause: FCGX_GetError(raw.pointee.out))
            }
            offset += chunk
        }
    }

    public func write(_ bytes: [UInt8]) throws(FastCGIError) {
        let result: Result<Void, FastCGIError> = bytes.withUnsafeBytes { buffer in
            Result { () throws(FastCGIError) in try write(buffer) }
        }
        try result.get()
    }

    /// Sends what libfcgi has buffered (it writes in 8 KiB records) to the web server now: for responses a
    /// reader follows live, such as a run log.
    public func flush() {
        _ = FCGX_FFlush(raw.pointee.out)
    }

    /// Whether the web server has closed the connection: nginx does so when its client goes away, while
    /// the response is still being written. A response that waits for data (a followed log) asks this,
    /// since it has no write that would fail. Uses `poll` and `recv(MSG_PEEK)` on the connection.
    public func peerHasClosed() -> Bool {
        let fd = raw.pointee.ipcFd
        guard fd >= 0 else { return true }
        // POLLRDHUP (Linux, 0x2000) is hidden behind _GNU_SOURCE in the C headers Swift imports.
        let readHangUp: Int16 = 0x2000
        var entry = pollfd(fd: fd, events: Int16(POLLIN) | readHangUp, revents: 0)
        guard poll(&entry, 1, 0) > 0 else { return false }
        if entry.revents & (Int16(POLLHUP) | Int16(POLLERR) | readHangUp | Int16(POLLNVAL)) != 0 { return true }
        var byte: UInt8 = 0
        // Readable: either end of stream (0) or a record we do not expect now; only the former means gone.
        return recv(fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)) == 0
    }

    /// Ends the request; the connection to the web server is closed.
    public consuming func finish() {
        FCGX_Finish_r(raw)
        discard self
    }

    deinit { FCGX_Finish_r(raw) }
}

/// The CGI response head: `Status:` line, headers, blank line. Written byte by byte into one buffer: building
/// it as a String (a filtered copy of every value, then the UTF-8 copy) was ~1 % of knitd's CPU per query.
func responseHead(status: Int, headers: [(String, String)]) -> [UInt8] {
    var head: [UInt8] = []
    head.reserveCapacity(128 + headers.count * 48)
    head.append(contentsOf: "Status: ".utf8)
    head.append(contentsOf: String(status).utf8)
    head.append(UInt8(ascii: " "))
    head.append(contentsOf: reasonPhrase(status).utf8)
    head.append(contentsOf: "\r\n".utf8)
    for (name, value) in headers {
        head.append(contentsOf: name.utf8)
        head.append(contentsOf: ": ".utf8)
        // Header injection guard: values we send never legitimately contain line breaks.
        for byte in value.utf8 where byte != UInt8(ascii: "\r") && byte != UInt8(ascii: "\n") { head.append(byte) }
        head.append(contentsOf: "\r\n".utf8)
    }
    head.append(contentsOf: "\r\n".utf8)
    return head
}

func reasonPhrase(_ status: Int) -> String {
    switch status {
    case 200: return "OK"
    case 201: return "Created"
    case 204: return "No Content"
    case 400: return "Bad Request"
    case 401: return "Unauthorized"
    case 403: return "Forbidden"
    case 404: return "Not Found"
    case 405: return "Method Not Allowed"
    case 409: return "Conflict"
    case 413: return "Payload Too Large"
    case 414: return "URI Too Long"
    case 415: return "Unsupported Media Type"
    case 500: return "Internal Server Error"
    case 503: return "Service Unavailable"
    case 507: return "Insufficient Storage"
    default: return "Status"
    }
}

extension FastCGIRequest {
    /// Every CGI parameter of the request, e.g. to collect the `HTTP_*` headers.
    public func allParameters() -> [String: String] {
        var result: [String: String] = [:]
        guard var cursor = rawEnvironment() else { return result }
        while let entry = cursor.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            cursor += 1
        }
        return result
    }
}

extension FastCGIRequest {
    /// The request's HTTP headers by lower-case name (`HTTP_X_FORWARDED_FOR` → `x-forwarded-for`), with
    /// `content-type` and `content-length` from their CGI parameters when not empty.
    ///
    /// One pass over the parameters that makes Strings of these only: nginx sends some twenty other CGI
    /// parameters per request, and copying every one into a dictionary (``allParameters()``) was 6 % of
    /// knitd's CPU for a tag query.
    public func httpHeaders() -> [String: String] {
        var headers: [String: String] = [:]
        // The CGI parameters win over `HTTP_CONTENT_*`, wherever they come in the list.
        var cgiContentType: String?
        var cgiContentLength: String?
        guard var cursor = rawEnvironment() else { return headers }
        while let entry = cursor.pointee {
            cursor += 1
            guard let equals = strchr(entry, Int32(UInt8(ascii: "="))) else { continue }
            let nameLength = equals - entry
            let value = equals + 1
            entry.withMemoryRebound(to: UInt8.self, capacity: nameLength) { name in
                let bytes = UnsafeBufferPointer(start: name, count: nameLength)
                if bytes.starts(with: httpPrefix) {
                    let headerName = String(unsafeUninitializedCapacity: nameLength - httpPrefix.count) { out in
                        for (index, byte) in bytes.dropFirst(httpPrefix.count).enumerated() {
                            out[index] =
                                byte == UInt8(ascii: "_")
                                ? UInt8(ascii: "-")
                                : (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte)
                        }
                        return nameLength - httpPrefix.count
                    }
                    headers[headerName] = String(cString: value)
                } else if value.pointee != 0, bytes.elementsEqual(contentType) {
                    cgiContentType = String(cString: value)
                } else if value.pointee != 0, bytes.elementsEqual(contentLength) {
                    cgiContentLength = String(cString: value)
                }
            }
        }
        if let cgiContentType { headers["content-type"] = cgiContentType }
        if let cgiContentLength { headers["content-length"] = cgiContentLength }
        return headers
    }
}

private let httpPrefix = Array("HTTP_".utf8)
private let contentType = Array("CONTENT_TYPE".utf8)
private let contentLength = Array("CONTENT_LENGTH".utf8)
