internal import KnitArchive
internal import KnitCore
internal import KnitDigest
internal import KnitHTTP

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// The few calls of the registry API (distribution spec v2) that `knit image load` needs, against the registry
/// Knit's nginx serves under `/v2/` with the profile's CA and the token as the Basic password (what nginx's
/// auth_request hands to knitd).
struct RegistryClient {
    let http: HTTPClient
    /// `https://HOST:PORT`
    let base: String
    let authorization: String?

    init(client: KnitAPIClient) {
        http = client.http
        var root = Substring(client.profile.apiRoot)
        var scheme = "https://"
        if let range = root.firstRange(of: "://") {
            scheme = String(root[..<range.upperBound])
            root = root[range.upperBound...]
        }
        base = scheme + client.registryHost
        authorization = client.profile.token.map { "Basic " + Data("knit:\($0)".utf8).base64EncodedString() }
    }

    /// HEAD of a blob in `repository`: true when the registry has it linked there.
    func hasBlob(repository: String, digest: String) throws(KnitClientError) -> Bool {
        let response = try perform(HTTPRequest(method: "HEAD", url: "\(base)/v2/\(repository)/blobs/\(digest)"))
        switch response.status {
        case 200: return true
        case 404: return false
        default: throw Self.error(response, doing: "checking blob \(digest)")
        }
    }

    /// Uploads a blob held in memory.
    func uploadBlob(repository: String, bytes: [UInt8], digest: String) throws(KnitClientError) {
        let location = try startUpload(repository: repository)
        let response = try perform(
            HTTPRequest(
                method: "PUT",
                url: Self.appendingDigest(resolve(location), digest),
                headers: ["Content-Type": "application/octet-stream"],
                body: .bytes(bytes)
            )
        )
        guard response.status == 201 else { throw Self.error(response, doing: "uploading blob \(digest)") }
    }

    /// Streams the current entry of `box` (`size` bytes) to the registry as one blob: `PATCH` with the data,
    /// hashed on the way, then `PUT ?digest=` with the digest that came out.
    func streamBlob(
        repository: String,
        entry: String,
        size: Int64,
        box: EntryBox,
        progress: ((ImageLoadProgress) -> Void)?
    ) throws(KnitClientError) -> BlobRecord {
        let location = try startUpload(repository: repository)
        let hash = HashingCounter()
        progress?(ImageLoadProgress(entry: entry, bytes: 0, total: size))
        let patched = try perform(
            HTTPRequest(
                method: "PATCH",
                url: resolve(location),
                headers: ["Content-Type": "application/octet-stream"],
                body: .stream(length: size) { buffer in
                    let count = try box.reader.readChunk(into: buffer)
                    if count == 0 {
                        guard hash.count == size else {
                            throw KnitClientError(
                                .archive,
                                "archive entry \(entry) ended after \(hash.count) of \(size) bytes"
                            )
                        }
                        return 0
                    }
                    hash.add(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                    progress?(ImageLoadProgress(entry: entry, bytes: hash.count, total: size))
                    return count
                }
            )
        )
        guard patched.status == 202, let next = patched.headers["Location"] else {
            throw Self.error(patched, doing: "uploading \(entry)")
        }
        // The body source stops at `size` bytes (curl sends exactly the announced length); the entry may
        // still hold its end-of-data marker for libarchive, so drain it to see the entry really ended there.
        var scratch = [UInt8](repeating: 0, count: 512)
        let extra: Int
        do { extra = try scratch.withUnsafeMutableBytes { try box.reader.readChunk(into: $0) } } catch {
            if let error = error as? ArchiveError { throw ImageArchive.archiveError(error, source: entry) }
            throw KnitClientError(.io, "archive entry \(entry): \(error)", underlying: error)
        }
        guard extra == 0, hash.count == size else {
            throw KnitClientError(
                .archive,
                "archive entry \(entry) does not hold the \(size) bytes its header declares"
            )
        }
        let digest = "sha256:" + hash.finish()
        let finished = try perform(
            HTTPRequest(method: "PUT", url: Self.appendingDigest(resolve(next), digest), body: .bytes([]))
        )
        guard finished.status == 201 else { throw Self.error(finished, doing: "finishing the upload of \(entry)") }
        return BlobRecord(digest: digest, size: size, magic: hash.magic)
    }

    /// Links a blob of `from` into `into` without moving bytes (cross-repository mount).
    func mountBlob(digest: String, from: String, into: String) throws(KnitClientError) {
        let url = "\(base)/v2/\(into)/blobs/uploads/?mount=\(Self.queryEscaped(digest))&from=\(Self.queryEscaped(from))"
        let response = try perform(HTTPRequest(method: "POST", url: url, body: .bytes([])))
        if response.status == 201 { return }
        if response.status == 202, let location = response.headers["Location"] {
            // The registry started an ordinary upload instead: the blob was not in `from`. Cancel it.
            _ = try? perform(HTTPRequest(method: "DELETE", url: resolve(location)))
        }
        throw Self.error(response, doing: "linking blob \(digest) into \(into)")
    }

    /// PUTs a manifest; returns the digest the registry computed (checked against ours).
    func putManifest(repository: String, reference: String, mediaType: String, body: [UInt8]) throws(KnitClientError)
        -> String
    {
        let response = try perform(
            HTTPRequest(
                method: "PUT",
                url: "\(base)/v2/\(repository)/manifests/\(reference)",
                headers: ["Content-Type": mediaType],
                body: .bytes(body)
            )
        )
        guard response.status == 201 else {
            throw Self.error(response, doing: "storing the manifest of \(repository):\(reference)")
        }
        let digest = "sha256:" + SHA256Digest.hex(of: body)
        if let stored = response.headers["Docker-Content-Digest"], stored != digest {
            throw KnitClientError(
                .response,
                "the registry stored manifest \(stored) for \(repository):\(reference), but \(digest) was sent"
            )
        }
        return digest
    }

    // MARK: - Helpers

    private func startUpload(repository: String) throws(KnitClientError) -> String {
        let response = try perform(
            HTTPRequest(method: "POST", url: "\(base)/v2/\(repository)/blobs/uploads/", body: .bytes([]))
        )
        guard response.status == 202, let location = response.headers["Location"] else {
            throw Self.error(response, doing: "starting an upload to \(repository)")
        }
        return location
    }

    private func perform(_ request: HTTPRequest) throws(KnitClientError) -> HTTPResponse {
        var request = request
        if let authorization { request.headers.append("Authorization", authorization) }
        do { return try http.perform(request) } catch {
            if let underlying = error.underlying {
                if let clientError = underlying as? KnitClientError { throw clientError }
                if let archiveError = underlying as? ArchiveError {
                    throw ImageArchive.archiveError(archiveError, source: "the input")
                }
                throw KnitClientError(.transport, "\(underlying)", underlying: underlying)
            }
            throw KnitClientError(.transport, error.message, underlying: error)
        }
    }

    /// Location headers are relative (`http.relativeurls`) or absolute.
    private func resolve(_ location: String) -> String {
        if location.hasPrefix("https://") || location.hasPrefix("http://") { return location }
        return base + (location.hasPrefix("/") ? location : "/" + location)
    }

    static func appendingDigest(_ url: String, _ digest: String) -> String {
        url + (url.contains("?") ? "&" : "?") + "digest=" + queryEscaped(digest)
    }

    static func queryEscaped(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            let c = Character(Unicode.Scalar(byte))
            if c.isLetter && byte < 0x80 || c.isNumber && byte < 0x80 || "-._~/".contains(c) {
                out.append(c)
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    /// The registry's `{"errors":[{"code","message"}]}` (or nginx's) as one line.
    static func error(_ response: HTTPResponse, doing what: String) -> KnitClientError {
        var text = ""
        if let errors = JSONValue.parse(response.body)?["errors"]?.arrayValue {
            text = errors.map { item in
                [item["code"]?.stringValue, item["message"]?.stringValue].compactMap { $0 }.joined(separator: ": ")
            }.joined(separator: "; ")
        }
        if text.isEmpty { text = String(decoding: response.body.prefix(300), as: UTF8.self) }
        text = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        if text.isEmpty { text = "the registry answered \(response.status)" }
        switch response.status {
        case 401: text += " (the profile's token was not accepted)"
        case 403: text += " (pushing needs a role that may write)"
        case 404 where text.contains("UNSUPPORTED"): break
        default: break
        }
        return KnitClientError(.server, "\(what): \(text)", status: response.status)
    }
}

/// SHA-256, byte count and first bytes of a streamed blob; a class because the upload's body closure updates it.
final class HashingCounter {
    private var digest: SHA256Stream? = SHA256Stream()
    private(set) var count: Int64 = 0
    private(set) var magic: [UInt8] = []

    func add(_ bytes: UnsafeRawBufferPointer) {
        digest!.update(bytes)
        count += Int64(bytes.count)
        if magic.count < 4 { magic += bytes.prefix(4 - magic.count) }
    }

    /// Once only.
    func finish() -> String {
        guard let done = digest.take() else { preconditionFailure("HashingCounter.finish called twice") }
        return done.finalizeHex()
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
