internal import KnitArchive
internal import KnitCore
internal import KnitDigest
internal import KnitHTTP

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

#if canImport(Glibc)
    internal import Glibc
#endif

/// What `knit image load` pushed.
public struct ImageLoadResult: Sendable, Equatable {
    /// `HOST:PORT/name:tag`, the name a plan uses.
    public var image: String
    /// `sha256:…` of the manifest the registry stored.
    public var digest: String
    /// Blobs sent (layers and config); blobs the registry had already are not counted.
    public var blobsSent: Int
    public var bytesSent: Int64
}

/// Progress of `knit image load`: the archive entry being sent and how far.
public struct ImageLoadProgress: Sendable, Equatable {
    public var entry: String
    public var bytes: Int64
    public var total: Int64

    /// The same, for the CLI's progress bar.
    public var transfer: TransferProgress { TransferProgress(bytes: bytes, total: total) }
}

extension KnitAPIClient {
    /// `HOST[:PORT]` of the server, which is also the registry part of image names (`HOST:PORT/name:tag`):
    /// the image registry is served by the same nginx as the API, under `/v2/`.
    public var registryHost: String {
        var rest = Substring(profile.apiRoot)
        if let scheme = rest.firstRange(of: "://") { rest = rest[scheme.upperBound...] }
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return String(authority.split(separator: "@").last ?? authority)
    }

    /// Pushes the image of a `docker save` / `podman save` archive (docker-archive, or an OCI layout tar as
    /// `podman save --format oci-archive` writes) to Knit's registry as `registryHost/name:tag`.
    ///
    /// One pass over the archive, front to back: every blob (layer, config) goes to the registry as its entry
    /// comes along, its SHA-256 computed while it streams, so memory stays bounded whatever the layer sizes; the
    /// small JSON files are kept, and when the index (`manifest.json`, or `index.json` for OCI) has been read,
    /// the image manifest is PUT. For a docker-archive that manifest is an OCI manifest written here: the layers
    /// as the archive holds them (uncompressed tar, whose digest is the config's diff_id, or gzip/zstd when the
    /// file is compressed) and the config as `application/vnd.oci.image.config.v1+json`. For an OCI layout the
    /// archive's own manifest is sent as it is.
    ///
    /// Entries whose name is their digest (`<hex>.tar`, `blobs/sha256/<hex>`) and that the registry already
    /// holds are skipped without reading; a name that lies about its content is caught by the registry or the
    /// puller, which verify digests.
    ///
    /// - Parameters:
    ///   - fileDescriptor: the archive (stdin or an opened file), left open.
    ///   - source: names the input in messages.
    ///   - name: `name:tag` in the registry (a `HOST:PORT/` prefix equal to ``registryHost`` is accepted); nil
    ///     takes the archive's own tag without its registry part (`localhost/train:v1` → `train:v1`).
    ///   - progress: called on the calling thread while blobs stream.
    public func loadImage(
        fileDescriptor: Int32,
        source: String,
        name: String?,
        progress: ((ImageLoadProgress) -> Void)? = nil
    ) throws(KnitClientError) -> ImageLoadResult {
        let wanted = try name.map { (text: String) throws(KnitClientError) -> ImageName in
            try ImageName.parse(text, registryHost: registryHost)
        }
        let registry = RegistryClient(client: self)
        let box: EntryBox
        do { box = EntryBox(try ArchiveEntryReader(fileDescriptor: fileDescriptor)) } catch {
            throw ImageArchive.archiveError(error, source: source)
        }

        // Blobs are pushed before the target repository is known (manifest.json comes last), so they go to a
        // staging repository when no name was given and are mounted into the real one at the end: a
        // cross-repository mount is a metadata operation in the registry, no bytes move.
        let stagingRepository = wanted?.repository ?? "knit-image-load/staging"
        var state = LoadState()
        var entries = 0
        do {
            while let header = try box.reader.next() {
                entries += 1
                guard header.kind == .file else { continue }
                let role = ArchiveRole(name: header.name)
                if role == .ignored { continue }
                let claimed = ArchiveRole.digestClaimed(by: header.name)
                if header.size <= LoadState.smallFileLimit {
                    // Configs, manifests, indexes and small layers: read whole, so the JSON can be kept.
                    let bytes = try box.reader.readData(limit: Int(LoadState.smallFileLimit))
                    if LoadState.looksLikeJSON(bytes) { state.small[header.name] = bytes }
                    if role == .index { continue }
                    let digest = "sha256:" + SHA256Digest.hex(of: bytes)
                    if let claimed, claimed != digest {
                        throw KnitClientError(
                            .archive,
                            "image archive from \(source): \(header.name) does not hold the blob its name says (\(digest))"
                        )
                    }
                    state.blobs[header.name] = BlobRecord(
                        digest: digest,
                        size: Int64(bytes.count),
                        magic: Array(bytes.prefix(4))
                    )
                    if try registry.hasBlob(repository: stagingRepository, digest: digest) { continue }
                    try registry.uploadBlob(repository: stagingRepository, bytes: bytes, digest: digest)
                    state.sent += 1
                    state.bytes += Int64(bytes.count)
                    continue
                }
                guard role != .index else {
                    throw KnitClientError(.archive, "image archive from \(source): \(header.name) is implausibly large")
                }
                // A layer. Skipped unread when the registry has the digest its name claims.
                if let claimed, try registry.hasBlob(repository: stagingRepository, digest: claimed) {
                    state.blobs[header.name] = BlobRecord(digest: claimed, size: header.size, magic: nil)
                    continue
                }
                let record = try registry.streamBlob(
                    repository: stagingRepository,
                    entry: header.name,
                    size: header.size,
                    box: box,
                    progress: progress
                )
                if let claimed, claimed != record.digest {
                    throw KnitClientError(
                        .archive,
                        "image archive from \(source): \(header.name) does not hold the blob its name says (\(record.digest))"
                    )
                }
                state.blobs[header.name] = record
                state.sent += 1
                state.bytes += header.size
            }
        } catch let error as KnitClientError {
            throw error
        } catch let error as ArchiveError {
            throw ImageArchive.archiveError(error, source: source)
        } catch {
            throw KnitClientError(.io, "image archive from \(source): \(error)", underlying: error)
        }
        if entries == 0 {
            throw KnitClientError(
                .archive,
                "image archive from \(source) is empty: expected the output of `docker save`"
            )
        }

        let plan = try state.manifest(source: source, wanted: wanted)
        let target: ImageName
        if let wanted {
            target = wanted
        } else {
            target = try ImageName.parse(plan.archiveTag ?? "", registryHost: registryHost, fromArchive: true)
        }
        if target.repository != stagingRepository {
            for digest in plan.blobDigests {
                try registry.mountBlob(digest: digest, from: stagingRepository, into: target.repository)
            }
        }
        let digest = try registry.putManifest(
            repository: target.repository,
            reference: target.tag,
            mediaType: plan.mediaType,
            body: plan.body
        )
        return ImageLoadResult(
            image: registryHost + "/" + target.repository + ":" + target.tag,
            digest: digest,
            blobsSent: state.sent,
            bytesSent: state.bytes
        )
    }
}

/// The reader, in a class so the upload's body closure can pull from it while the walk is paused on an entry.
final class EntryBox {
    var reader: ArchiveEntryReader
    init(_ reader: consuming ArchiveEntryReader) { self.reader = reader }
}

/// `repository:tag` in Knit's registry.
struct ImageName: Equatable {
    var repository: String
    var tag: String

    /// Parses `[HOST[:PORT]/]path[:tag]` (tag `latest` when missing). A registry part must be `registryHost`,
    /// except for a name read from an archive (`localhost/x:1`, `docker.io/library/x:1`), whose registry part is
    /// dropped.
    static func parse(_ text: String, registryHost: String, fromArchive: Bool = false) throws(KnitClientError)
        -> ImageName
    {
        guard !text.isEmpty else {
            throw KnitClientError(.usage, "the archive names no image: give one with -t NAME:TAG")
        }
        var rest = Substring(text)
        if let at = rest.firstIndex(of: "@") { rest = rest[..<at] }  // a digest reference: keep the name
        if let slash = rest.firstIndex(of: "/") {
            let first = rest[..<slash]
            if first.contains(".") || first.contains(":") || first == "localhost" {
                if !fromArchive && first != registryHost && first != "localhost" {
                    throw KnitClientError(
                        .usage,
                        "image name \(text) names registry \(first), but this Knit's registry is \(registryHost)"
                    )
                }
                rest = rest[rest.index(after: slash)...]
            }
        }
        var repository = String(rest)
        var tag = "latest"
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            repository = String(rest[..<colon])
            tag = String(rest[rest.index(after: colon)...])
        }
        if fromArchive, repository.hasPrefix("library/") { repository.removeFirst("library/".count) }
        guard Self.isRepository(repository) else {
            throw KnitClientError(
                .usage,
                "image name \(text): repository '\(repository)' must be lower-case letters, digits and separators "
                    + "(. _ - /), as registries require"
            )
        }
        guard Self.isTag(tag) else {
            throw KnitClientError(.usage, "image name \(text): tag '\(tag)' must be [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
        }
        return ImageName(repository: repository, tag: tag)
    }

    /// The distribution spec's `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
    static func isRepository(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 255 else { return false }
        for component in name.split(separator: "/", omittingEmptySubsequences: false) {
            guard let first = component.utf8.first, let last = component.utf8.last,
                isLowerAlnum(first), isLowerAlnum(last)
            else { return false }
            var previous: UInt8 = first
            var underscores = 0
            for byte in component.utf8.dropFirst() {
                if isLowerAlnum(byte) {
                    underscores = 0
                } else if byte == UInt8(ascii: "_") {
                    underscores += 1
                    if underscores > 2 || (previous != UInt8(ascii: "_") && !isLowerAlnum(previous)) { return false }
                } else if byte == UInt8(ascii: ".") {
                    if !isLowerAlnum(previous) { return false }
                } else if byte == UInt8(ascii: "-") {
                    if !isLowerAlnum(previous) && previous != UInt8(ascii: "-") { return false }
                } else {
                    return false
                }
                previous = byte
            }
        }
        return true
    }

    static func isTag(_ tag: String) -> Bool {
        let bytes = Array(tag.utf8)
        guard let first = bytes.first, bytes.count <= 128 else { return false }
        func word(_ b: UInt8) -> Bool {
            isLowerAlnum(b) || (b >= 0x41 && b <= 0x5A) || b == UInt8(ascii: "_")
        }
        return word(first)
            && bytes.dropFirst().allSatisfy { word($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    private static func isLowerAlnum(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x7A)
    }
}

/// What an archive entry is, from its name alone.
enum ArchiveRole: Equatable {
    /// `manifest.json` (docker-archive) or `index.json` (OCI layout): read, never uploaded.
    case index
    /// `repositories`, `oci-layout`, legacy `<id>/json` and `<id>/VERSION`: not needed.
    case ignored
    /// Anything else: layers and configs (`<hex>.tar`, `<hex>.json`, `blobs/sha256/<hex>`, legacy
    /// `<id>/layer.tar`), uploaded as blobs.
    case blob

    init(name: String) {
        let base = name.split(separator: "/").last.map(String.init) ?? name
        switch name {
        case "manifest.json", "index.json": self = .index
        case "repositories", "oci-layout": self = .ignored
        default:
            self = name.contains("/") && (base == "json" || base == "VERSION") ? .ignored : .blob
        }
    }

    /// `sha256:<hex>` for `<hex>.tar`, `<hex>.json` and `blobs/sha256/<hex>`.
    static func digestClaimed(by name: String) -> String? {
        var hex = Substring(name)
        if hex.hasPrefix("blobs/sha256/") {
            hex = hex.dropFirst("blobs/sha256/".count)
        } else if hex.hasSuffix(".tar") {
            hex = hex.dropLast(4)
        } else if hex.hasSuffix(".json") {
            hex = hex.dropLast(5)
        } else {
            return nil
        }
        guard hex.utf8.count == 64,
            hex.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
        else { return nil }
        return "sha256:" + hex
    }
}

struct BlobRecord {
    var digest: String
    var size: Int64
    /// The first bytes (gzip/zstd detection), nil when the blob was skipped unread.
    var magic: [UInt8]?

    var layerMediaType: String {
        guard let magic, magic.count >= 4 else { return "application/vnd.oci.image.layer.v1.tar" }
        if magic[0] == 0x1F && magic[1] == 0x8B { return "application/vnd.oci.image.layer.v1.tar+gzip" }
        if magic[0] == 0x28 && magic[1] == 0xB5 && magic[2] == 0x2F && magic[3] == 0xFD {
            return "application/vnd.oci.image.layer.v1.tar+zstd"
        }
        return "application/vnd.oci.image.layer.v1.tar"
    }
}

/// What one pass over the archive collected.
struct LoadState {
    /// JSON files (configs, manifests, indexes) are kilobytes; layers are what streams.
    static let smallFileLimit: Int64 = 4 << 20

    /// Small JSON files by entry name.
    var small: [String: [UInt8]] = [:]
    var blobs: [String: BlobRecord] = [:]
    var sent = 0
    var bytes: Int64 = 0

    struct ManifestPlan {
        var mediaType: String
        var body: [UInt8]
        var blobDigests: [String]
        /// The image's own name in the archive, when it has one.
        var archiveTag: String?
    }

    static func looksLikeJSON(_ bytes: [UInt8]) -> Bool {
        bytes.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) == UInt8(ascii: "{")
            || bytes.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) == UInt8(ascii: "[")
    }

    func manifest(source: String, wanted: ImageName?) throws(KnitClientError) -> ManifestPlan {
        if let index = small["manifest.json"] { return try dockerManifest(index, source: source, wanted: wanted) }
        if let index = small["index.json"] { return try ociManifest(index, source: source) }
        throw KnitClientError(
            .archive,
            "image archive from \(source) has neither manifest.json (docker-archive) nor index.json (OCI layout)"
        )
    }

    private func dockerManifest(_ index: [UInt8], source: String, wanted: ImageName?) throws(KnitClientError)
        -> ManifestPlan
    {
        guard let items = JSONValue.parse(index)?.arrayValue, !items.isEmpty else {
            throw KnitClientError(.archive, "image archive from \(source): manifest.json is not a non-empty JSON array")
        }
        var chosen = items[0]
        if items.count > 1 {
            // Several images: the one whose RepoTag is the requested name.
            let matches = items.filter { item in
                let tags = item["RepoTags"]?.arrayValue?.compactMap(\.stringValue) ?? []
                return tags.contains { tag in
                    (try? ImageName.parse(tag, registryHost: "", fromArchive: true)) == wanted
                }
            }
            guard wanted != nil, let first = matches.first else {
                throw KnitClientError(
                    .usage,
                    "image archive from \(source) holds \(items.count) images: name one of their tags with -t"
                )
            }
            chosen = first
        }
        guard let configName = chosen["Config"]?.stringValue,
            let config = blobs[ImageArchive.strippingDotSlash(configName)]
        else {
            throw KnitClientError(
                .archive,
                "image archive from \(source): the config named in manifest.json is missing"
            )
        }
        var layers: [BlobRecord] = []
        for layer in chosen["Layers"]?.arrayValue ?? [] {
            guard let name = layer.stringValue, let record = blobs[ImageArchive.strippingDotSlash(name)] else {
                throw KnitClientError(
                    .archive,
                    "image archive from \(source): layer \(layer.stringValue ?? "?") named in manifest.json is missing "
                        + "(or is a link, which this loader does not follow)"
                )
            }
            layers.append(record)
        }
        var text = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#
        text += #""config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"#
        text += JSONValue.quoted(config.digest) + #","size":\#(config.size)},"layers":["#
        text += layers.map { layer in
            #"{"mediaType":"# + JSONValue.quoted(layer.layerMediaType) + #","digest":"#
                + JSONValue.quoted(layer.digest) + #","size":\#(layer.size)}"#
        }.joined(separator: ",")
        text += "]}"
        let tag = chosen["RepoTags"]?.arrayValue?.first?.stringValue
        return ManifestPlan(
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            body: Array(text.utf8),
            blobDigests: [config.digest] + layers.map(\.digest),
            archiveTag: tag
        )
    }

    private func ociManifest(_ index: [UInt8], source: String) throws(KnitClientError) -> ManifestPlan {
        guard let entries = JSONValue.parse(index)?["manifests"]?.arrayValue, entries.count == 1,
            let digest = entries[0]["digest"]?.stringValue
        else {
            throw KnitClientError(
                .archive,
                "image archive from \(source): index.json must list exactly one manifest (save one image per archive)"
            )
        }
        let mediaType = entries[0]["mediaType"]?.stringValue ?? "application/vnd.oci.image.manifest.v1+json"
        guard mediaType.hasSuffix("manifest.v1+json") || mediaType.hasSuffix("manifest.v2+json"),
            digest.hasPrefix("sha256:"),
            let body = small["blobs/sha256/" + digest.dropFirst("sha256:".count)],
            let manifest = JSONValue.parse(body)
        else {
            throw KnitClientError(
                .archive,
                "image archive from \(source): the manifest \(digest) of index.json is missing or is not an image manifest"
            )
        }
        var digests: [String] = []
        if let config = manifest["config"]?["digest"]?.stringValue { digests.append(config) }
        for layer in manifest["layers"]?.arrayValue ?? [] {
            if let layerDigest = layer["digest"]?.stringValue { digests.append(layerDigest) }
        }
        for needed in digests where !blobs.values.contains(where: { $0.digest == needed }) {
            throw KnitClientError(.archive, "image archive from \(source): blob \(needed) of the manifest is missing")
        }
        let name = entries[0]["annotations"]?["org.opencontainers.image.ref.name"]?.stringValue
        return ManifestPlan(mediaType: mediaType, body: body, blobDigests: digests, archiveTag: name)
    }
}
