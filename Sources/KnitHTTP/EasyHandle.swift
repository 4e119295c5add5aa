internal import CKnitCurl
internal import CKnitShims

/// Owns one `CURL*` easy handle, its header list and its error buffer for the length of one request.
struct EasyHandle: ~Copyable {
    private let curl: UnsafeMutableRawPointer
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    init() {
        guard let curl = curl_easy_init() else { fatalError("curl_easy_init failed: out of memory") }
        self.curl = curl
        errorBuffer.initialize(to: 0)
    }

    deinit {
        curl_easy_cleanup(curl)
        curl_slist_free_all(headerList)
        errorBuffer.deallocate()
    }

    mutating func perform(
        _ request: HTTPRequest,
        client: HTTPClient,
        sink: ((UnsafeRawBufferPointer) throws -> Void)?
    ) throws(HTTPError) -> HTTPResponse {
        let state = TransferState()
        state.sink = sink
        state.progress = request.progress
        state.isCancelled = request.isCancelled
        state.trailers = request.trailers
        state.maximumCollectedBody = request.maximumCollectedBody
        let context = Unmanaged.passUnretained(state).toOpaque()

        set(CURLOPT_URL, request.url)
        set(CURLOPT_NOSIGNAL, 1)  // curl must not use SIGALRM in a threaded process
        setPointer(CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(errorBuffer))
        set(CURLOPT_PROTOCOLS_STR, "http,https")
        set(CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1)  // trailers and chunked uploads are HTTP/1.1
        set(CURLOPT_USERAGENT, client.userAgent)
        set(CURLOPT_CONNECTTIMEOUT, client.connectTimeoutSeconds)
        set(CURLOPT_LOW_SPEED_LIMIT, 1)
        set(CURLOPT_LOW_SPEED_TIME, client.stallTimeoutSeconds)
        set(CURLOPT_TCP_KEEPALIVE, 1)
        set(CURLOPT_BUFFERSIZE, 512 << 10)
        set(CURLOPT_UPLOAD_BUFFERSIZE, 512 << 10)
        set(CURLOPT_SSL_VERIFYPEER, 1)
        set(CURLOPT_SSL_VERIFYHOST, 2)
        if var ca = client.caPEM {
            // Only this CA: drop the built-in bundle and directory, then load the PEM from memory.
            set(CURLOPT_CAINFO, nil)
            set(CURLOPT_CAPATH, nil)
            let rc = ca.withUnsafeMutableBytes {
                cknit_curl_setopt_blob(curl, CURLOPT_CAINFO_BLOB, $0.baseAddress!, $0.count)
            }
            guard rc == CURLE_OK else { throw failure(rc, request) }
        }
        if var identity = client.clientIdentity {
            // From memory, like the CA: the key never has to exist as a file this process writes.
            set(CURLOPT_SSLCERTTYPE, "PEM")
            set(CURLOPT_SSLKEYTYPE, "PEM")
            var rc = identity.certificatePEM.withUnsafeMutableBytes {
                cknit_curl_setopt_blob(curl, CURLOPT_SSLCERT_BLOB, $0.baseAddress!, $0.count)
            }
            guard rc == CURLE_OK else { throw failure(rc, request) }
            rc = identity.keyPEM.withUnsafeMutableBytes {
                cknit_curl_setopt_blob(curl, CURLOPT_SSLKEY_BLOB, $0.baseAddress!, $0.count)
            }
            guard rc == CURLE_OK else { throw failure(rc, request) }
        }

        var headerLines = request.headers.map { "\($0.name): \($0.value)" }
        headerLines.append("Expect:")  // no 100-continue round trip before streaming a body

        if let body = request.body {
            set(CURLOPT_UPLOAD, 1)
            if request.method != "PUT" { set(CURLOPT_CUSTOMREQUEST, request.method) }
            switch body {
            case .bytes(let bytes):
                state.pendingBytes = bytes
                state.uploadTotal = Int64(bytes.count)
                setOff(CURLOPT_INFILESIZE_LARGE, Int64(bytes.count))
            case .stream(let length, let read):
                state.readBody = read
                state.uploadTotal = length
                if let length {
                    setOff(CURLOPT_INFILESIZE_LARGE, length)
                } else {
                    headerLines.append("Transfer-Encoding: chunked")
                    if let trailers = request.trailers, !trailers.names.isEmpty {
                        headerLines.append("Trailer: " + trailers.names.joined(separator: ", "))
                        _ = cknit_curl_setopt_trailer(curl, trailerCallback, context)
                    }
                }
            }
            _ = cknit_curl_setopt_read(curl, readCallback, context)
        } else if request.method == "HEAD" {
            set(CURLOPT_NOBODY, 1)
        } else {
            set(CURLOPT_HTTPGET, 1)
            if request.method != "GET" { set(CURLOPT_CUSTOMREQUEST, request.method) }
        }
        for line in headerLines { headerList = curl_slist_append(headerList, line) }
        _ = cknit_curl_setopt_slist(curl, CURLOPT_HTTPHEADER, headerList)
        _ = cknit_curl_setopt_header(curl, headerCallback, context)
        _ = cknit_curl_setopt_write(curl, writeCallback, context)
        if request.progress != nil || request.isCancelled != nil {
            _ = cknit_curl_setopt_progress(curl, progressCallback, context)
        }

        let rc = withExtendedLifetime(state) { curl_easy_perform(curl) }
        if let failure = state.failure { throw failure }
        guard rc == CURLE_OK else { throw failure(rc, request) }
        var status = 0
        _ = cknit_curl_getinfo_long(curl, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(
            status: status != 0 ? status : state.status,
            headers: state.headers,
            trailers: state.trailerFields,
            body: state.body
        )
    }

    private func failure(_ rc: CURLcode, _ request: HTTPRequest) -> HTTPError {
        let detail = errorBuffer.pointee != 0 ? String(cString: errorBuffer) : String(cString: curl_easy_strerror(rc))
        let code: HTTPError.Code
        switch rc {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT: code = .connect
        case CURLE_OPERATION_TIMEDOUT: code = .timeout
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
            CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH,
            CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CRL_BADFILE, CURLE_USE_SSL_FAILED:
            code = .tls
        case CURLE_ABORTED_BY_CALLBACK, CURLE_READ_ERROR, CURLE_WRITE_ERROR: code = .aborted
        default: code = .other
        }
        return HTTPError(code: code, message: "\(request.method) \(request.url): \(detail)", curlCode: Int(rc.rawValue))
    }

    private func set(_ option: CURLoption, _ value: Int) {
        let rc = cknit_curl_setopt_long(curl, option, value)
        precondition(rc == CURLE_OK, "curl_easy_setopt(\(option.rawValue)) failed: \(rc.rawValue)")
    }

    private func set(_ option: CURLoption, _ value: String?) {
        // curl copies string options (since 7.17), so the temporary C string may go right after.
        let rc = cknit_curl_setopt_string(curl, option, value)
        precondition(rc == CURLE_OK, "curl_easy_setopt(\(option.rawValue)) failed: \(rc.rawValue)")
    }

    private func setOff(_ option: CURLoption, _ value: Int64) {
        let rc = cknit_curl_setopt_off(curl, option, curl_off_t(value))
        precondition(rc == CURLE_OK, "curl_easy_setopt(\(option.rawValue)) failed: \(rc.rawValue)")
    }

    private func setPointer(_ option: CURLoption, _ value: UnsafeMutableRawPointer?) {
        let rc = cknit_curl_setopt_pointer(curl, option, value)
        precondition(rc == CURLE_OK, "curl_easy_setopt(\(option.rawValue)) failed: \(rc.rawValue)")
    }
}

private func state(_ userdata: UnsafeMutableRawPointer?) -> TransferState {
    Unmanaged<TransferState>.fromOpaque(userdata!).takeUnretainedValue()
}

private let headerCallback: cknit_curl_data_cb = { pointer, size, count, userdata in
    state(userdata).headerLine(UnsafeRawBufferPointer(start: pointer, count: size * count))
    return size * count
}

private let writeCallback: cknit_curl_data_cb = { pointer, size, count, userdata in
    state(userdata).bodyBytes(UnsafeRawBufferPointer(start: pointer, count: size * count)) ? size * count : 0
}

private let readCallback: cknit_curl_data_cb = { pointer, size, count, userdata in
    let transfer = state(userdata)
    let buffer = UnsafeMutableRawBufferPointer(start: pointer, count: size * count)
    if transfer.readBody == nil {
        let remaining = transfer.pendingBytes.count - transfer.pendingOffset
        let n = min(remaining, buffer.count)
        transfer.pendingBytes.withUnsafeBytes {
            buffer.copyMemory(
                from: UnsafeRawBufferPointer(rebasing: $0[transfer.pendingOffset..<transfer.pendingOffset + n])
            )
        }
        transfer.pendingOffset += n
        return n
    }
    guard let n = transfer.fillUpload(buffer) else { return cknit_curl_readfunc_abort() }
    precondition(n >= 0 && n <= buffer.count, "body source returned \(n) for a buffer of \(buffer.count)")
    return n
}

private let trailerCallback:
    @convention(c) (UnsafeMutablePointer<UnsafeMutablePointer<curl_slist>?>, UnsafeMutableRawPointer?) -> Int32 = {
        list,
        userdata in
        guard let trailers = state(userdata).trailers else { return Int32(CURL_TRAILERFUNC_OK) }
        for field in trailers.values() {
            list.pointee = curl_slist_append(list.pointee, "\(field.name): \(field.value)")
        }
        return Int32(CURL_TRAILERFUNC_OK)
    }

private let progressCallback: cknit_curl_progress_cb = { userdata, downloadTotal, downloaded, _, uploaded in
    let transfer = state(userdata)
    transfer.progress?(
        HTTPProgress(
            uploaded: Int64(uploaded),
            uploadTotal: transfer.uploadTotal,
            downloaded: Int64(downloaded),
            downloadTotal: downloadTotal > 0 ? Int64(downloadTotal) : nil
        )
    )
    if transfer.isCancelled?() == true {
        transfer.failure = HTTPError(code: .aborted, message: "the transfer was cancelled")
        return 1
    }
    return 0
}
