public import KnitArchive
public import KnitCore
internal import KnitDigest
internal import KnitHTTP
internal import KnitSystem

#if canImport(Glibc)
    internal import Glibc
#endif

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// What `GET /api/health` says about the server.
public struct ServerInfo: Sendable, Equatable {
    public var status: String
    public var version: String?
    /// Archive formats the server accepts and offers, in the server's order.
    public var formats: [ArchiveFormat]
    /// Whether the server reads an upload's trailers (the `x-checksum-md5` one): false only when it says so
    /// (knitd, behind nginx, never sees them); Knitfab's server, which says nothing, reads it.
    public var readsUploadTrailers: Bool

    public init(status: String, version: String?, formats: [ArchiveFormat], readsUploadTrailers: Bool = true) {
        self.status = status
        self.version = version
        self.formats = formats
        self.readsUploadTrailers = readsUploadTrailers
    }
}

/// A Data Detail as decoded, plus the JSON it came from (to re-print it with the server's field order).
public struct DataReply: Sendable {
    public let detail: DataDetailJSON
    public let json: JSONValue
}

/// Progress of an upload or download. For a push `bytes`/`total` count file content archived so far
/// against the size of the tree; for a pull they count archive bytes received against Content-Length.
public struct TransferProgress: Sendable, Equatable {
    public var bytes: Int64
    public var total: Int64?
}

/// How a pull ended.
public struct PullResult: Sendable, Equatable {
    /// The format the server actually sent (from `Content-Type`); nil when it named none Knit knows.
    public var format: ArchiveFormat?
    public var contentType: String?
    public var bytes: Int64
    /// The MD5 of the bytes received, when the server sent one (`x-checksum-md5`) and it matched; nil when the
    /// server sent none. A mismatch is an error (``KnitClientError/Code/checksum``), never a result.
    public var checksum: String?
    /// For ``KnitAPIClient/pullArchive(knitId:into:progress:)``: the file written.
    public var path: String?
}

/// `--transient` of `knit data find`.
public enum TransientFilter: String, Sendable, CaseIterable {
    case both, yes, no

    public init?(flag: String) {
        switch flag {
        case "both": self = .both
        case "yes", "true": self = .yes
        case "no", "false": self = .no
        default: return nil
        }
    }
}

/// `--format` of `knit data push` and `knit data pull -x`: a wire format, or `auto` for the server's first
/// (``KnitAPIClient/negotiatedFormats()``).
public enum FormatChoice: String, Sendable, CaseIterable {
    case auto
    case tar
    case tarZstd = "tar+zstd"
    case tarGzip = "tar+gzip"

    /// nil for `auto`.
    public var format: ArchiveFormat? {
        switch self {
        case .auto: nil
        case .tar: .tar
        case .tarZstd: .tarZstd
        case .tarGzip: .tarGzip
        }
    }
}

/// Knit's (and Knitfab's) REST API, blocking, one request at a time per call. Never prints.
public struct KnitAPIClient: Sendable {
    public let profile: KnitProfile
    let http: HTTPClient

    public static let checksumHeader = "x-checksum-md5"

    public init(profile: KnitProfile) {
        self.profile = profile
        http = HTTPClient(caPEM: profile.caPEM, userAgent: "knit/" + knitClientVersion)
    }

    // MARK: health

    /// `GET {apiRoot}/health` (no token needed).
    public func health() throws(KnitClientError) -> ServerInfo {
        let response = try send(HTTPRequest(url: url("health"), headers: ["Accept": "application/json"]))
        guard let json = JSONValue.parse(response.body), case .object = json else {
            throw KnitClientError(.response, "GET /health: the server did not answer JSON")
        }
        let formats = (json["formats"]?.arrayValue ?? []).compactMap {
            $0.stringValue.flatMap(ArchiveFormat.init(contentType:))
        }
        return ServerInfo(
            status: json["status"]?.stringValue ?? "",
            version: json["version"]?.stringValue,
            formats: formats,
            readsUploadTrailers: json["uploadTrailers"] != .bool(false)
        )
    }

    /// The formats to use with this server, best first: tar+zstd, x-tar, tar+gzip among those `/health`
    /// lists; tar+gzip alone when it lists none or cannot be asked (Knitfab has no `/health` formats).
    public func negotiatedFormats() -> [ArchiveFormat] { Self.formats(offeredBy: try? health()) }

    private static func formats(offeredBy server: ServerInfo?) -> [ArchiveFormat] {
        let offered = server?.formats ?? []
        let ranked = [ArchiveFormat.tarZstd, .tar, .tarGzip].filter(offered.contains)
        return ranked.isEmpty ? [.tarGzip] : ranked
    }

    // MARK: data

    /// Uploads `directory` as a new Data tagged `tags`.
    ///
    /// The archive is written on a second thread into a bounded queue that the upload drains, so
    /// compression and network overlap. The MD5 of the body goes out as the `x-checksum-md5` trailer, unless
    /// the server says it never sees upload trailers (knitd: then the MD5 would be computed for nothing). Tags
    /// travel as `?tag=`; a server that ignores them (Knitfab) gets a follow-up `PUT` with the missing ones.
    /// - Parameters:
    ///   - format: nil picks ``negotiatedFormats()``'s first.
    ///   - progress: called on the calling thread.
    ///   - busyRetryLimit: how long to keep trying while the server answers 503 (all its transfer slots, or
    ///     the caller's share of them, are busy): the archive is sent again after a growing pause. A busy
    ///     server is the normal state of a shared one, not a failure of this push.
    public func pushData(
        directory: String,
        tags: [Tag],
        dereference: Bool = false,
        format: ArchiveFormat? = nil,
        busyRetryLimit: Double = 600,
        progress: ((TransferProgress) -> Void)? = nil
    ) throws(KnitClientError) -> DataReply {
        let deadline = monotonicSeconds() + busyRetryLimit
        var pause = 0.2
        while true {
            do {
                return try pushDataOnce(
                    directory: directory,
                    tags: tags,
                    dereference: dereference,
                    format: format,
                    progress: progress
                )
            } catch  where error.status == 503 && monotonicSeconds() + pause < deadline {
                // Jitter spreads clients that were refused together.
                usleep(useconds_t(pause * Double.random(in: 0.5...1.0) * 1_000_000))
                pause = min(pause * 2, 5)
            }
        }
    }

    private func pushDataOnce(
        directory: String,
        tags: [Tag],
        dereference: Bool,
        format: ArchiveFormat?,
        progress: ((TransferProgress) -> Void)?
    ) throws(KnitClientError) -> DataReply {
        let server = try? health()
        let format = format ?? Self.formats(offeredBy: server)[0]
        let sendsChecksum = server?.readsUploadTrailers ?? true
        var total: Int64?
        if progress != nil {
            do { total = try treeSize(of: directory, dereference: dereference) } catch {
                throw KnitClientError(.archive, error.message, underlying: error)
            }
        }

        let queue = ChunkQueue()
        let outcome = ProducerOutcome()
        let producer = WorkerThread {
            var writer = ChunkWriter(queue)
            var digest: MD5Digest? = sendsChecksum ? MD5Digest() : nil
            do {
                try writeArchive(
                    of: directory,
                    format: format,
                    dereference: dereference,
                    progress: { queue.progress = $0 }
                ) { bytes in
                    digest?.update(bytes)
                    try writer.write(bytes)
                }
                try writer.flush()
                if let hex = digest.take()?.finalizeHex() { outcome.set(checksum: hex) }
                queue.finish()
            } catch {
                outcome.set(error: error)
                queue.finish(error: error)
            }
        }
        let reader = ChunkReader(queue)
        let query = tags.isEmpty ? "" : "?" + PercentEncoding.tagQuery(tags)
        let request = HTTPRequest(
            method: "POST",
            url: url("data/") + query,
            headers: authorized(["Content-Type": format.contentType, "Accept": "application/json"]),
            body: .stream(length: nil, read: reader.read(into:)),
            trailers: sendsChecksum
                ? HTTPTrailers(names: [Self.checksumHeader]) {
                    outcome.checksum.map { [Self.checksumHeader: $0] } ?? [:]
                } : nil,
            progress: progress.map { report in { _ in report(TransferProgress(bytes: queue.progress, total: total)) } }
        )
        let result = Result { () throws(KnitClientError) in try send(request) }
        queue.cancel()
        producer.join()

        if let error = outcome.error, !Self.isCancellation(error) {
            let message = (error as? ArchiveError)?.message ?? "\(error)"
            throw KnitClientError(.archive, "\(directory): \(message)", underlying: error)
        }
        let response = try result.get()
        let reply = try Self.decodeData(response.body, what: "POST /data")
        let missing = tags.filter { !reply.detail.tags.contains($0) }
        guard !missing.isEmpty else { return reply }
        return try updateTags(knitId: reply.detail.knitId, change: TagChangeJSON(add: missing))
    }

    /// Streams Data `knitId`'s archive to `sink` as it arrives, asking for `formats` (best first).
    ///
    /// When the server sent an `x-checksum-md5` (a header from Knit, a trailer from Knitfab), the MD5 of the
    /// bytes received must match it, or this throws ``KnitClientError/Code/checksum`` after the last byte went
    /// to `sink`: the caller discards what it wrote.
    public func pullData(
        knitId: String,
        formats: [ArchiveFormat]? = nil,
        progress: ((TransferProgress) -> Void)? = nil,
        to sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws(KnitClientError) -> PullResult {
        let digest = RunningMD5()
        let (response, count) = try receive(knitId: knitId, formats: formats, progress: progress) { bytes in
            digest.update(bytes)
            try sink(bytes)
        }
        return try checked(response, knitId: knitId, bytes: count, md5: digest.finalizeHex())
    }

    /// Streams the body of `GET data/<knitId>/` to `sink`; the response and how many bytes it carried.
    private func receive(
        knitId: String,
        formats: [ArchiveFormat]?,
        progress: ((TransferProgress) -> Void)?,
        to sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws(KnitClientError) -> (HTTPResponse, Int64) {
        let formats = formats ?? negotiatedFormats()
        var count: Int64 = 0
        let response = try withoutActuallyEscaping(sink) { (sink) throws(KnitClientError) -> HTTPResponse in
            try send(
                HTTPRequest(
                    url: url("data/\(PercentEncoding.encode(knitId))/"),
                    headers: authorized(["Accept": Self.accept(formats)]),
                    progress: progress.map { report in
                        { report(TransferProgress(bytes: $0.downloaded, total: $0.downloadTotal)) }
                    }
                ),
                sink: { bytes in
                    count += Int64(bytes.count)
                    try sink(bytes)
                }
            )
        }
        return (response, count)
    }

    /// The result of a download whose body had MD5 `md5`; fails when the server's `x-checksum-md5` differs.
    private func checked(
        _ response: HTTPResponse,
        knitId: String,
        bytes count: Int64,
        md5 actual: String
    ) throws(KnitClientError) -> PullResult {
        let contentType = response.headers["Content-Type"]
        let expected = response.field(Self.checksumHeader)?.lowercased()
        if let expected, expected != actual {
            throw KnitClientError(
                .checksum,
                "checksum mismatch: \(knitId): the server sent x-checksum-md5 \(expected), the \(count) bytes received "
                    + "have MD5 \(actual); the download is damaged, try again"
            )
        }
        return PullResult(
            format: contentType.flatMap(ArchiveFormat.init(contentType:)),
            contentType: contentType,
            bytes: count,
            checksum: expected
        )
    }

    /// Streams Data `knitId` as tar+gzip (what Knitfab users expect of a saved archive) to `sink`.
    public func pullTarGzip(
        knitId: String,
        progress: ((TransferProgress) -> Void)? = nil,
        to sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws(KnitClientError) -> PullResult {
        try pullData(knitId: knitId, formats: [.tarGzip], progress: progress, to: sink)
    }

    /// Downloads Data `knitId` and extracts it into `directory` (which must exist and be empty).
    /// Download, extraction and the MD5 of the body run on three threads, the download handing the same chunks
    /// to two bounded queues: MD5 (~600 MB/s) on the download thread was the largest single cost of a pull.
    /// On a checksum mismatch what was extracted is removed again, so `directory` is left empty.
    /// - Parameter format: the format to ask for; nil asks for ``negotiatedFormats()``.
    public func pullData(
        knitId: String,
        extractInto directory: String,
        format: ArchiveFormat? = nil,
        progress: ((TransferProgress) -> Void)? = nil
    ) throws(KnitClientError) -> PullResult {
        let queue = ChunkQueue()
        let outcome = ProducerOutcome()
        let extractor = WorkerThread {
            let reader = ChunkReader(queue)
            do {
                _ = try extractArchive(into: directory, read: reader.read(into:))
            } catch {
                outcome.set(error: error)
                queue.cancel(error)
                return
            }
            // Bytes after the end-of-archive marker (padding) still belong to the checksummed body.
            let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 8)
            defer { scratch.deallocate() }
            while (try? reader.read(into: scratch)) ?? 0 > 0 {}
        }
        let digestQueue = ChunkQueue()
        let digested = DigestOutcome()
        let digester = WorkerThread {
            let digest = RunningMD5()
            while let chunk = try? digestQueue.pop() {
                chunk.withUnsafeBytes { digest.update($0) }
            }
            digested.set(digest.finalizeHex())
        }
        // curl delivers ~16 KiB at a time; batching to 256 KiB keeps thread hand-offs off the profile.
        var batcher = ChunkWriter(queue, alsoTo: digestQueue)
        let received = Result { () throws(KnitClientError) -> (HTTPResponse, Int64) in
            try receive(knitId: knitId, formats: format.map { [$0] }, progress: progress) { bytes in
                try batcher.write(bytes)
            }
        }
        // flush only throws when the extractor gave up, and then its error is the one reported below.
        if case .success = received { try? batcher.flush() }
        queue.finish(error: received.failureValue)
        // The digest is of every byte received, so it ends only once the download did.
        digestQueue.finish(error: received.failureValue)
        extractor.join()
        digester.join()
        let result = Result { () throws(KnitClientError) -> PullResult in
            let (response, count) = try received.get()
            return try checked(response, knitId: knitId, bytes: count, md5: digested.hex ?? "")
        }
        // A failure of the download itself explains a broken archive better than the archive does.
        if case .failure(let failure) = result, !(failure.underlying is ArchiveError) {
            if failure.code == .checksum { FileSystem.removeContents(of: directory) }
            throw failure
        }
        if let error = outcome.error {
            let message = (error as? ArchiveError)?.message ?? "\(error)"
            throw KnitClientError(.archive, "\(knitId): \(message)", underlying: error)
        }
        return try result.get()
    }

    /// Downloads Data `knitId` as an archive file `directory/<knitId>.<ext>`, the extension matching the
    /// format received (`tar.gz` unless the server sent another). Written under a temporary name and
    /// renamed when complete. Asks for tar+gzip only, the file Knitfab users expect.
    public func pullArchive(
        knitId: String,
        into directory: String,
        progress: ((TransferProgress) -> Void)? = nil
    ) throws(KnitClientError) -> PullResult {
        let base = (directory.hasSuffix("/") ? directory : directory + "/")
        let temporary = base + ".\(knitId).download"
        let file = try OutputFile(creating: temporary)
        var result: PullResult
        do {
            result = try pullData(knitId: knitId, formats: [.tarGzip], progress: progress) { try file.write($0) }
            try file.close()
        } catch {
            file.remove()
            throw error
        }
        let path = base + knitId + "." + (result.format ?? .tarGzip).fileExtension
        try file.rename(to: path)
        result.path = path
        return result
    }

    /// `GET {apiRoot}/data/?tag=…&since=…&duration=…&creator=…`, filtered by `transient` here (the server has
    /// no such parameter). `duration` is passed through as written (Go syntax), so check it before. `creator`
    /// is checked here too, so a server that ignores the parameter (Knitfab) does not widen the answer.
    public func findData(
        tags: [Tag],
        since: KnitTime? = nil,
        duration: String? = nil,
        transient: TransientFilter = .both,
        creator: String? = nil
    ) throws(KnitClientError) -> [DataReply] {
        guard duration == nil || since != nil else { throw KnitClientError(.usage, "duration requires since") }
        var query = tags.map { "tag=" + PercentEncoding.encode($0.description) }
        if let since { query.append("since=" + PercentEncoding.encode(since.description)) }
        if let duration { query.append("duration=" + PercentEncoding.encode(duration)) }
        if let creator { query.append("creator=" + PercentEncoding.encode(creator)) }
        let response = try send(
            HTTPRequest(
                url: url("data/") + Self.queryString(query),
                headers: authorized(["Accept": "application/json"])
            )
        )
        var replies: [DataReply] = []
        for item in try Self.jsonArray(response, what: "GET /data") {
            let reply = try Self.decodeData(item, what: "GET /data")
            if let creator, reply.detail.creator != creator { continue }
            let isTransient = reply.detail.tags.contains { $0.key == SystemTag.transient }
            switch transient {
            case .both: replies.append(reply)
            case .yes: if isTransient { replies.append(reply) }
            case .no: if !isTransient { replies.append(reply) }
            }
        }
        return replies
    }

    /// The items of a response body that must be a JSON array (the answers of every find endpoint).
    static func jsonArray(_ response: HTTPResponse, what: String) throws(KnitClientError) -> [JSONValue] {
        guard let items = JSONValue.parse(response.body)?.arrayValue else {
            throw KnitClientError(.response, "\(what): the server did not answer a JSON array")
        }
        return items
    }

    /// `?a=1&b=2`, or nothing for no items (already percent-encoded).
    static func queryString(_ items: [String]) -> String {
        items.isEmpty ? "" : "?" + items.joined(separator: "&")
    }

    /// `PUT {apiRoot}/data/{knitId}/` with `change`; returns the Data after the change.
    public func updateTags(knitId: String, change: TagChangeJSON) throws(KnitClientError) -> DataReply {
        let body: [UInt8]
        do { body = Array(try JSONEncoder().encode(change)) } catch {
            fatalError("TagChangeJSON must encode: \(error)")
        }
        let response = try send(
            HTTPRequest(
                method: "PUT",
                url: url("data/\(PercentEncoding.encode(knitId))/"),
                headers: authorized(["Content-Type": "application/json", "Accept": "application/json"]),
                body: .bytes(body)
            )
        )
        return try Self.decodeData(response.body, what: "PUT /data/\(knitId)")
    }

    // MARK: plumbing

    func url(_ path: String) -> String { profile.apiRoot + "/" + path }

    func authorized(_ headers: HTTPHeaders) -> HTTPHeaders {
        var headers = headers
        if let token = profile.token { headers.append("Authorization", "Bearer " + token) }
        return headers
    }

    /// Performs `request`; a transport failure or a non-2xx status becomes a ``KnitClientError``.
    func send(_ request: HTTPRequest, sink: ((UnsafeRawBufferPointer) throws -> Void)? = nil)
        throws(KnitClientError) -> HTTPResponse
    {
        let response: HTTPResponse
        do { response = try http.perform(request, sink: sink) } catch {
            if let underlying = error.underlying {
                if let clientError = underlying as? KnitClientError { throw clientError }
                throw KnitClientError(.transport, "\(underlying)", underlying: underlying)
            }
            throw KnitClientError(.transport, error.message, underlying: error)
        }
        guard response.isSuccess else { throw Self.serverError(response) }
        return response
    }

    /// The server's `{"message","reason","advice","see"}` (or Knitfab's `{"message"}`) as one line.
    static func serverError(_ response: HTTPResponse) -> KnitClientError {
        var text: String
        if let json = JSONValue.parse(response.body), case .object = json {
            let reason = json["reason"]?.stringValue ?? ""
            let advice = json["advice"]?.stringValue ?? ""
            if !reason.isEmpty {
                text = advice.isEmpty ? reason : reason + " (" + advice + ")"
            } else {
                text = json["message"]?.stringValue ?? ""
            }
        } else {
            text = String(decoding: response.body.prefix(512), as: UTF8.self)
        }
        text = text.split(whereSeparator: \.isNewline).map { $0.trimmed(.spaceTabAndReturn) }.filter { !$0.isEmpty }
            .joined(separator: " ")
        if text.isEmpty { text = "the server answered \(response.status)" }
        return KnitClientError(.server, text, status: response.status)
    }

    /// True for the errors a worker sees only because the other side stopped first.
    static func isCancellation(_ error: any Error) -> Bool {
        error is ChunkQueue.Cancelled || (error as? ArchiveError)?.underlying is ChunkQueue.Cancelled
    }

    static func accept(_ formats: [ArchiveFormat]) -> String {
        var parts: [String] = []
        for (index, format) in formats.enumerated() {
            let q = ["", ";q=0.9", ";q=0.8", ";q=0.7"][min(index, 3)]
            parts.append(format.contentType + q)
        }
        return parts.joined(separator: ", ")
    }

    static func decodeData(_ body: [UInt8], what: String) throws(KnitClientError) -> DataReply {
        guard let json = JSONValue.parse(body) else {
            throw KnitClientError(.response, "\(what): the server did not answer JSON")
        }
        return try decodeData(json, what: what)
    }

    static func decodeData(_ json: JSONValue, what: String) throws(KnitClientError) -> DataReply {
        do {
            let detail = try JSONDecoder().decode(DataDetailJSON.self, from: Data(json.rendered(indent: 0).utf8))
            return DataReply(detail: detail, json: json)
        } catch {
            throw KnitClientError(.response, "\(what): unexpected Data Detail: \(error)", underlying: error)
        }
    }
}

/// What a worker thread reports back. `@unchecked Sendable`: fields are written by the worker before
/// the queue is finished/cancelled and read by the caller after `join()`, except `checksum`, which curl's
/// trailer callback reads after the body ended — i.e. after the producer set it and finished the queue,
/// an ordering the queue's mutex establishes.
final class ProducerOutcome: @unchecked Sendable {
    private(set) var checksum: String?
    private(set) var error: (any Error)?
    init() {}
    func set(checksum: String) { self.checksum = checksum }
    func set(error: any Error) { self.error = error }
}

/// The MD5 (hex) a digest thread arrives at; read after joining it.
final class DigestOutcome: @unchecked Sendable {
    private(set) var hex: String?
    init() {}
    func set(_ hex: String) { self.hex = hex }
}

/// An MD5 that escaping closures can feed (a `~Copyable` digest cannot be captured by one).
final class RunningMD5 {
    private var digest: MD5Digest? = MD5Digest()
    init() {}
    func update(_ bytes: UnsafeRawBufferPointer) { digest!.update(bytes) }
    func finalizeHex() -> String { digest.take()!.finalizeHex() }
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

/// Seconds on the monotonic clock, for retry deadlines that wall-clock changes cannot stretch.
private func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
