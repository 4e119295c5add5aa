internal import CKnitArchive
internal import KnitSystem

/// The container formats Knit sends and accepts: always tar, optionally compressed.
///
/// Extraction never trusts this value: libarchive detects the compression from the bytes. The format only
/// matters when writing, and for HTTP content negotiation.
public enum ArchiveFormat: String, Sendable, CaseIterable {
    case tar
    case tarGzip
    case tarZstd

    /// The media type sent in `Content-Type` / offered in `Accept`.
    public var contentType: String {
        switch self {
        case .tar: "application/x-tar"
        case .tarGzip: "application/tar+gzip"
        case .tarZstd: "application/tar+zstd"
        }
    }

    /// The usual file name suffix, for archives written to disk (the download cache, `knit data pull`).
    public var fileExtension: String {
        switch self {
        case .tar: "tar"
        case .tarGzip: "tar.gz"
        case .tarZstd: "tar.zst"
        }
    }

    /// Parses a media type; parameters after `;` and letter case are ignored.
    ///
    /// Besides ``contentType`` this accepts the bare compression types (`application/gzip`,
    /// `application/x-gzip`, `application/zstd`) that generic HTTP tools send for `.tar.gz` / `.tar.zst` files.
    public init?(contentType: String) {
        let essence = contentType.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        switch essence.trimmed().lowercased() {
        case "application/x-tar", "application/tar": self = .tar
        case "application/tar+gzip", "application/gzip", "application/x-gzip", "application/x-tar+gzip": self = .tarGzip
        case "application/tar+zstd", "application/zstd", "application/x-zstd": self = .tarZstd
        default: return nil
        }
    }
}

/// Names what writes the bytes of an archive: Knit's layout and the versions of the libraries that compress.
/// ``writeArchive(of:format:dereference:directoryEntries:compressionLevel:progress:write:)`` gives the same bytes
/// for the same tree and options as long as this stays the same, so a digest of a download can be kept with it.
public let archiveWriterVersion: String = {
    let libarchive = archive_version_details().map { String(cString: $0) } ?? "libarchive ?"
    let zstd = ZSTD_versionString().map { String(cString: $0) } ?? "?"
    // Bump "layout" when Knit changes what it writes (entry order, header fields, compression options).
    return String("layout=1;\(libarchive);zstd-direct/\(zstd)".map { $0 == " " ? "_" : $0 })
}()
