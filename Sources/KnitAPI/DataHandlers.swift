import KnitArchive
import KnitCore
import KnitDigest
import KnitStore
import KnitSystem
import Logging

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// Archive formats the server speaks, in the order clients should prefer them: zstd is fast and carries a
/// content checksum, plain tar costs no CPU, gzip is what Knitfab clients send.
enum ServedFormat {
    static let preferenceOrder: [ArchiveFormat] = [.tarZstd, .tar, .tarGzip]

    /// Picks the response format from an `Accept` header (q-values honoured); gzip when nothing matches,
    /// since that is all a Knitfab client understands.
    static func negotiate(accept: String?) -> ArchiveFormat {
        guard let accept, !accept.isEmpty else { return .tarGzip }
        var best: (format: ArchiveFormat, quality: Double)?
        for item in accept.split(separator: ",") {
            let parts = item.split(separator: ";").map { $0.trimmed() }
            guard let type = parts.first, let format = ArchiveFormat(contentType: String(type)) else { continue }
            var quality = 1.0
            for parameter in parts.dropFirst() where parameter.hasPrefix("q=") {
                quality = Double(parameter.dropFirst(2)) ?? 0
            }
            guard quality > 0 else { continue }
            let rank = preferenceOrder.firstIndex(of: format) ?? preferenceOrder.count
            if let current = best {
                let currentRank = preferenceOrder.firstIndex(of: current.format) ?? preferenceOrder.count
                if quality > current.quality || (quality == current.quality && rank < currentRank) {
                    best = (format, quality)
                }
            } else {
                best = (format, quality)
            }
        }
        return best?.format ?? .tarGzip
    }

    static func fileExtension(_ format: ArchiveFormat) -> String {
        switch format {
        case .tar: return "tar"
        case .tarGzip: return "tar.gz"
        case .tarZstd: return "tar.zst"
        }
    }
}

extension KnitAPI {
    // MARK: GET /api/data

    func findData(_ request: APIRequest) throws -> APIResponse {
        let tags = try request.queryValues("tag").map(parseQueryTag)
        let (since, durationMs) = try timeWindow(request)
        let creator = request.creatorFilter
        let answer = try storeCall { () throws(StoreError) in
            try store.findDataJSON(tags: tags, since: since, durationMs: durationMs, creator: creator)
        }
        return APIResponse(status: 200, headers: [("Content-Type", "application/json")], body: .bytes(answer))
    }

    // MARK: PUT /api/data/{knitId}

    func updateTags(knitId: String, readBody: BodyReader) throws -> APIResponse {
        let body = try readSmallBody(readBody, limit: RequestLimits.jsonBodyBytes)
        let change: TagChangeJSON
        do { change = try JSONDecoder().decode(TagChangeJSON.self, from: Data(body)) } catch {
            throw KnitAPIError.badRequest(
                "format error: body must be JSON {\"add\":[\"k:v\"],\"remove\":[\"k:v\"],\"remove_key\":[\"k\"]}",
                advice: describeDecodingError(error)
            )
        }
        let changeSize = change.add.count + change.remove.count + change.removeKey.count
        guard changeSize <= RequestLimits.tagsPerChange else {
            throw KnitAPIError.badRequest(
                "a tag change may name at most \(RequestLimits.tagsPerChange) tags; this one names \(changeSize)",
                advice: "split the change into several requests"
            )
        }
        let systemKeys = change.add.map(\.key) + change.remove.map(\.key) + change.removeKey
        if let reserved = systemKeys.first(where: { $0.hasPrefix(SystemTag.prefix) }) {
            throw KnitAPIError.badRequest("system tags cannot be changed: '\(reserved)'")
        }
        let detail = try storeCall { () throws(StoreError) in try store.updateTags(knitId: knitId, change: change) }
        return .json(detail)
    }

    // MARK: POST /api/data

    func uploadData(_ request: APIRequest, caller: Caller, readBody: BodyReader, logger: Logger) throws -> APIResponse {
        // Everything that can be checked before reading the body is checked first, so a rejected upload
        // costs nothing and leaves nothing.
        let tags = try request.queryValues("tag").map(parseQueryTag)
        if let reserved = tags.first(where: \.isSystem) {
            throw KnitAPIError.badRequest("system tags cannot be set: '\(reserved)'")
        }
        let expectedMD5 = (request.header("x-checksum-md5") ?? request.queryValue("md5"))?.lowercased()
        if let expectedMD5, expectedMD5.utf8.count != 32 || !expectedMD5.utf8.allSatisfy(isHexDigit) {
            throw KnitAPIError.badRequest("x-checksum-md5 must be 32 hex digits")
        }
        let slot = try transfers.acquire(user: caller.name)
        defer { withExtendedLifetime(slot) {} }

        let ticket = try storeCall { () throws(StoreError) in try store.beginUpload(creator: caller.name) }
        var uploadLogger = logger
        uploadLogger[metadataKey: "data.id"] = "\(ticket.knitId)"
        // Measured before any of the body is read.
        var limit = uploadLimit()
        var quotaBinds = false
        if let left = ticket.quotaBytesLeft, left < limit.limits.maxTotalBytes {
            // The archive's declared sizes are checked against this before their content is written, so an
            // upload over the quota stops at the first entry that crosses it.
            limit.limits.maxTotalBytes = left
            quotaBinds = true
        }
        var response = try BodyPrefetcher.withPrefetching(readBody) { prefetched in
            try receiveUpload(
                ticket: ticket,
                tags: tags,
                expectedMD5: expectedMD5,
                limit: limit,
                quotaBinds: quotaBinds,
                caller: caller,
                readBody: prefetched,
                logger: uploadLogger
            )
        }
        response.createdIds = [ticket.knitId]
        return response
    }

    private func receiveUpload(
        ticket: UploadTicket,
        tags: [Tag],
        expectedMD5: String?,
        limit: (limits: ArchiveLimits, description: String),
        quotaBinds: Bool,
        caller: Caller,
        readBody: BodyReader,
        logger uploadLogger: Logger
    ) throws -> APIResponse {
        var digest: MD5Digest? = expectedMD5 == nil ? nil : MD5Digest()
        var received: Int64 = 0
        var transportFailure: (any Error)?
        let read: (UnsafeMutableRawBufferPointer) throws -> Int = { buffer in
            do {
                let count = try readBody(buffer)
                if count > 0 {
                    received += Int64(count)
                    digest?.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                }
                return count
            } catch {
                transportFailure = error
                throw error
            }
        }
        do {
            let summary = try extractArchive(into: ticket.stagingPath, limits: limit.limits, read: read)
            // libarchive stops at the end-of-archive marker; the rest of the body still counts for the checksum
            // and must be consumed so the connection ends cleanly.
            try drain(read)
            if let expectedMD5, let actual = digest.take()?.finalizeHex(), actual != expectedMD5 {
                store.abandonUpload(ticket)
                uploadLogger.info("upload rejected: checksum mismatch")
                throw KnitAPIError.badRequest("hash is not match.", advice: "expected \(expectedMD5), got \(actual)")
            }
            let detail: DataDetailJSON
            do { detail = try store.finishUpload(ticket, tags: tags, sizeBytes: summary.bytes) } catch {
                // fsync and rename failures (EIO) say what happened; the path stays in the log.
                if error.code == .io {
                    logger.error("publishing an upload failed", metadata: ["error": "\(error)"])
                    throw KnitAPIError(
                        status: 500,
                        reason: "the server could not store the Data: writing it to disk failed",
                        advice: "nothing was stored; see the server log and retry later"
                    )
                }
                throw apiError(for: error)
            }
            uploadLogger.info(
                "upload done",
                metadata: [
                    "bytes.received": "\(received)", "bytes.content": "\(summary.bytes)",
                    "entries": "\(summary.entries)",
                ]
            )
            return .json(detail)
        } catch let error as ArchiveError {
            store.abandonUpload(ticket)
            if let transportFailure {
                uploadLogger.info("upload aborted by client", metadata: ["error": "\(transportFailure)"])
                throw KnitAPIError.badRequest("upload interrupted: the request body ended early")
            }
            uploadLogger.info("upload rejected", metadata: ["error": "\(error)"])
            if error.code == .contentTooLarge, quotaBinds, let left = ticket.quotaBytesLeft,
                let quota = ticket.quotaBytesLimit
            {
                throw KnitAPIError(
                    status: 507,
                    reason: "quota exceeded: user \(caller.name) holds \(quota - left) bytes of a bytes quota "
                        + "of \(quota) bytes; this Data declares more than the \(left) bytes left",
                    advice: "nothing was stored; delete Data you no longer need, or ask your administrator to raise "
                        + "the quota (knitadm quota set \(caller.name) --bytes …)"
                )
            }
            if error.code == .contentTooLarge {
                let at = error.path.map { " (at entry \($0))" } ?? ""
                throw KnitAPIError(
                    status: 413,
                    reason: "the Data declares more content than \(limit.description)\(at)",
                    advice: "sizes count as declared in the archive, holes of sparse files included; "
                        + "split the Data, or ask your administrator"
                )
            }
            throw archiveFailure(error)
        } catch {
            store.abandonUpload(ticket)
            if let apiError = error as? KnitAPIError { throw apiError }
            if transportFailure != nil {
                throw KnitAPIError.badRequest("upload interrupted: the request body ended early")
            }
            throw error
        }
    }

    /// The limits of one upload: `--max-data-bytes`, and the space the store's file system has free now, so
    /// an archive declaring more than can be stored (a sparse file of 50 GB in a 10 KB tar) is refused before
    /// its content is written.
    func uploadLimit() -> (limits: ArchiveLimits, description: String) {
        var limits = ArchiveLimits.default
        var description = "the limit"
        var info = statvfs()
        if statvfs(store.layout.staging, &info) == 0 {
            let (bytes, overflow) = UInt64(info.f_bavail).multipliedReportingOverflow(by: UInt64(info.f_frsize))
            let free = overflow ? Int64.max : Int64(clamping: bytes)
            limits.maxTotalBytes = free
            description = "the server's free space (\(free) bytes)"
        }
        if let maxDataBytes, maxDataBytes <= limits.maxTotalBytes {
            limits.maxTotalBytes = maxDataBytes
            description = "the server's maximum Data size (\(maxDataBytes) bytes, knitd --max-data-bytes)"
        }
        return (limits, description)
    }

    // MARK: GET /api/data/{knitId}

    func downloadData(_ request: APIRequest, knitId: String, caller: Caller, logger: Logger) throws -> APIResponse {
        let detail = try storeCall { () throws(StoreError) in try store.dataDetail(knitId: knitId) }
        let format = ServedFormat.negotiate(accept: request.header("accept"))
        // tar+gzip is what Knitfab's CLI asks for, and it turns a directory entry `sub/` into an empty file `sub`
        // (then fails on `sub/x`): that format has no directory entries, as Knitfab's own server writes it.
        let directoryEntries = format != .tarGzip
        let directory = store.dataDirectory(knitId: detail.knitId)
        // Only content that can no longer change has a digest worth keeping: an upload or Run that ended.
        let final = detail.tags.contains { $0.key == SystemTag.timestamp } && isDirectory(directory)
        let variant = format.rawValue
        var digest =
            final ? store.downloadDigest(knitId: detail.knitId, variant: variant, writer: archiveWriterVersion) : nil
        var headers = [
            ("Content-Type", format.contentType),
            ("Content-Disposition", "attachment; filename=\"\(detail.knitId).\(ServedFormat.fileExtension(format))\""),
        ]
        if request.method == "HEAD" {
            if let digest { headers.append((Self.checksumHeader, digest)) }
            return APIResponse(status: 200, headers: headers)
        }
        let slot = try transfers.acquire(user: caller.name)
        if final, digest == nil, let size = try? treeSize(of: directory, dereference: false),
            size <= digestDryRunLimit
        {
            var md5 = MD5Digest()
            do {
                try writeArchive(of: directory, format: format, directoryEntries: directoryEntries) { md5.update($0) }
                let hex = md5.finalizeHex()
                store.recordDownloadDigest(
                    knitId: detail.knitId,
                    variant: variant,
                    writer: archiveWriterVersion,
                    md5: hex
                )
                digest = hex
            } catch {
                logger.info("download digest not computed", metadata: ["error": "\(error)"])
            }
        }
        if let digest { headers.append((Self.checksumHeader, digest)) }
        let computeOnTheWay = final && digest == nil
        let streamLogger = logger
        let digests = self.store
        let knitId = detail.knitId
        return APIResponse(
            status: 200,
            headers: headers,
            body: .stream { sink in
                try withExtendedLifetime(slot) {
                    do {
                        // Content of a Data whose upload has not finished is not there yet: it streams as empty.
                        if isDirectory(directory) {
                            let running = computeOnTheWay ? RunningDigest() : nil
                            try writeArchive(of: directory, format: format, directoryEntries: directoryEntries) {
                                bytes in
                                running?.update(bytes)
                                try sink(bytes)
                            }
                            if let running {
                                digests.recordDownloadDigest(
                                    knitId: knitId,
                                    variant: variant,
                                    writer: archiveWriterVersion,
                                    md5: running.finalizeHex()
                                )
                            }
                        } else {
                            let empty = try TemporaryDirectory(prefix: "knit-empty-")
                            try writeArchive(of: empty.path, format: format) { bytes in try sink(bytes) }
                        }
                    } catch {
                        streamLogger.info("download ended early", metadata: ["error": "\(error)"])
                        throw error
                    }
                }
            }
        )
    }

    static let checksumHeader = "x-checksum-md5"

    // MARK: helpers

    /// Runs a store operation; its failure becomes the API's answer (``apiError(for:)``).
    func storeCall<T>(_ body: () throws(StoreError) -> T) throws -> T {
        do { return try body() } catch { throw apiError(for: error) }
    }

    /// The one mapping of store failures to statuses: reason, advice and `see` pass through; failures of the
    /// server itself are logged and answered without their details.
    func apiError(for error: StoreError) -> KnitAPIError {
        switch error.code {
        case .notFound: return KnitAPIError(status: 404, reason: error.message, advice: error.advice)
        case .invalid: return .badRequest(error.message, advice: error.advice)
        case .conflict: return .conflict(error.message, advice: error.advice, see: error.see)
        case .storageFull:
            // The user is told only "full"; the administrator needs to know which: the disk, or the LMDB map
            // (raise the map size), which the store's message names.
            logger.error("storage full", metadata: ["error": "\(error)"])
            return KnitAPIError(status: 507, reason: "the server's storage is full", advice: "ask your administrator")
        case .quotaExceeded: return KnitAPIError(status: 507, reason: error.message, advice: error.advice)
        default:
            logger.error("store failure", metadata: ["error": "\(error)"])
            return KnitAPIError(status: 500, reason: "internal error", advice: "see the server log")
        }
    }

    func archiveFailure(_ error: ArchiveError) -> KnitAPIError {
        switch error.code {
        case .io, .writeFailed:
            if error.isDiskFull {
                logger.error("storage full", metadata: ["error": "\(error)"])
                return KnitAPIError(
                    status: 507,
                    reason: "the server's storage is full",
                    advice: "ask your administrator"
                )
            }
            logger.error("archive extraction failed on the server side", metadata: ["error": "\(error)"])
            let cause = error.errno.map { Errno($0).description } ?? "I/O error"
            return KnitAPIError(
                status: 500,
                reason: "the server could not write the Data: \(cause)",
                advice: "nothing was stored; see the server log and retry later"
            )
        default:
            return .badRequest("bad archive: \(error.message)", advice: error.path.map { "entry: \($0)" })
        }
    }
}

/// `since` (RFC 3339) and `duration` (Go syntax, only with `since`) of a find query: Knitfab's time window,
/// `since <= t < since + duration`.
func timeWindow(_ request: APIRequest) throws -> (since: KnitTime?, durationMs: Int64?) {
    var since: KnitTime?
    if let text = request.queryValue("since"), !text.isEmpty {
        do { since = try KnitTime(rfc3339: text) } catch {
            throw KnitAPIError.badRequest("invalid 'since': \(error.description)")
        }
    }
    var durationMs: Int64?
    if let text = request.queryValue("duration"), !text.isEmpty {
        guard let parsed = parseGoDuration(text) else {
            throw KnitAPIError.badRequest("invalid 'duration': '\(text)' (use e.g. 300ms, 1.5h, 2h45m)")
        }
        // Knitfab v1.6.1 dereferences a nil `since` here; a clear 400 is the useful answer.
        guard since != nil else { throw KnitAPIError.badRequest("'duration' needs 'since'") }
        durationMs = parsed
    }
    return (since, durationMs)
}

func parseQueryTag(_ text: String) throws -> Tag {
    do { return try Tag(parsing: text) } catch { throw KnitAPIError.badRequest("invalid tag: \(error.description)") }
}

func readSmallBody(_ readBody: KnitAPI.BodyReader, limit: Int) throws -> [UInt8] {
    var collected: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let count = try buffer.withUnsafeMutableBytes { try readBody($0) }
        if count == 0 { return collected }
        collected.append(contentsOf: buffer[0..<count])
        if collected.count > limit { throw KnitAPIError(status: 413, reason: "request body is too large") }
    }
}

private func drain(_ read: (UnsafeMutableRawBufferPointer) throws -> Int) throws {
    var buffer = [UInt8](repeating: 0, count: 256 * 1024)
    while try buffer.withUnsafeMutableBytes({ try read($0) }) > 0 {}
}

private func isHexDigit(_ byte: UInt8) -> Bool {
    (0x30...0x39).contains(byte) || (0x61...0x66).contains(byte)
}

private func describeDecodingError(_ error: any Error) -> String {
    if let decoding = error as? DecodingError {
        switch decoding {
        case .dataCorrupted(let context): return context.debugDescription
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context):
            return context.debugDescription
        @unknown default: return "invalid JSON"
        }
    }
    return "invalid JSON"
}

/// An MD5 fed from a closure.
private final class RunningDigest {
    private var digest: MD5Digest? = MD5Digest()
    func update(_ bytes: UnsafeRawBufferPointer) { digest!.update(bytes) }
    func finalizeHex() -> String { digest.take()!.finalizeHex() }
}

extension ArchiveError {
    /// ENOSPC while writing the Data: the archive is fine, the server is not.
    var isDiskFull: Bool { errno == ENOSPC || errno == EDQUOT }
}
