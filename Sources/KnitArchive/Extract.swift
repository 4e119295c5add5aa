internal import CKnitArchive
internal import KnitCore

#if canImport(Glibc)
    internal import Glibc
#endif

/// Reads a tar, tar.gz or tar.zst archive from `read` and writes it under `directory`.
///
/// The compression is detected from the bytes (libarchive's filter bidding), never from a content type.
/// Everything is checked while streaming: names, link targets, entry types and ``ArchiveLimits``. On any error
/// nothing has been written outside `directory`, but `directory` may hold part of the tree: the caller deletes it.
///
/// Bytes after the tar end-of-archive marker are not read; an HTTP caller discards the rest of the body itself.
///
/// - Parameters:
///   - directory: An existing, empty directory; it becomes the Data root.
///   - limits: Bounds on entry count, content bytes and name length.
///   - read: Fills the buffer and returns how many bytes it wrote, 0 at the end of input. It may throw (a client
///     that went away); the extraction then fails with ``ArchiveError/Code/readFailed``.
/// - Returns: Counts of what was written.
///
/// #### Errors
/// ``ArchiveError`` with ``ArchiveError/Code/notEmpty``, ``ArchiveError/Code/unsafePath``,
/// ``ArchiveError/Code/linkEscapes``, ``ArchiveError/Code/unsupportedEntry``, ``ArchiveError/Code/corrupt``,
/// ``ArchiveError/Code/tooLarge``, ``ArchiveError/Code/readFailed`` or ``ArchiveError/Code/io``.
///
/// Uses two libarchive readers (gzip/zstd filters with the raw format, then the tar format, so the gzip CRC32
/// can be checked in between) and `archive_write_disk_*` with
/// `ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME`; symlinks are fenced by the
/// checks here, before libarchive sees an entry.
public func extractArchive(
    into directory: String,
    limits: ArchiveLimits = .default,
    read: (UnsafeMutableRawBufferPointer) throws -> Int
) throws(ArchiveError) -> ExtractSummary {
    let root = try emptyDirectoryRoot(directory)
    return try withUTF8Locale { () throws(ArchiveError) -> ExtractSummary in
        try withoutActuallyEscaping(read) { (read) throws(ArchiveError) -> ExtractSummary in
            let source = ClosureSource(read: read)
            var extractor = try Extractor(root: root, limits: limits, source: source)
            return try extractor.run()
        }
    }
}

/// The canonical path of `directory` after checking it is an empty directory.
///
/// Canonical, because the entries are handed to archive_write_disk as absolute paths under it, and its
/// symlink check refuses any symlink on that path, the parents of the root included.
private func emptyDirectoryRoot(_ directory: String) throws(ArchiveError) -> [UInt8] {
    guard let resolved = realpath(directory, nil) else {
        let code = errno
        throw ArchiveError(
            code: .io,
            message: "extract: cannot open target directory \(directory): \(ioReason(code))",
            path: directory,
            errno: code
        )
    }
    defer { free(resolved) }
    guard let dir = opendir(resolved) else {
        let code = errno
        throw ArchiveError(
            code: .io,
            message: "extract: cannot open target directory \(directory): \(ioReason(code))",
            path: directory,
            errno: code
        )
    }
    defer { closedir(dir) }
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            Array(raw.prefix(while: { $0 != 0 }))
        }
        if name != [UInt8(ascii: ".")] && name != [UInt8(ascii: "."), UInt8(ascii: ".")] {
            throw ArchiveError(
                code: .notEmpty,
                message: "extract: target directory \(directory) is not empty",
                path: directory
            )
        }
    }
    return bytes(ofCString: resolved)
}

/// The decompressed stream between the two libarchive readers, with the gzip CRC32 libarchive does not check.
///
/// libarchive 3.6.2's gzip filter skips the 8-byte trailer without comparing it ("XXX TODO: Verify the length
/// and CRC" in archive_read_support_filter_gzip.c). So the input is decompressed by one reader (filters + the
/// "raw" format), whose blocks are checksummed here on their way to a second reader that parses the tar. The
/// blocks are passed by pointer: no copy.
private final class DecodedStream {
    let decoder: OpaquePointer
    /// Only gzip input is checksummed here; zstd checks its own frames and plain tar has nothing to check.
    var checksumming = false
    var crc: UInt = 0
    var totalBytes: Int64 = 0
    var reachedEnd = false
    /// libarchive's message when decompression failed.
    var failure: String?

    init(decoder: OpaquePointer) {
        self.decoder = decoder
    }

    /// One read callback of the tar reader: the next decompressed block.
    func next(_ out: UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int {
        var block: UnsafeRawPointer?
        var size = 0
        var offset: la_int64_t = 0
        let status = archive_read_data_block(decoder, &block, &size, &offset)
        if status == ARCHIVE_EOF {
            reachedEnd = true
            return 0
        }
        if status < ARCHIVE_WARN {
            failure = archiveMessage(decoder)
            return -1
        }
        if checksumming, let block, size > 0 {
            var done = 0
            while done < size {
                let chunk = min(size - done, Int(UInt32.max))
                crc = CKnitArchive.crc32(
                    crc,
                    block.advanced(by: done).assumingMemoryBound(to: UInt8.self),
                    UInt32(chunk)
                )
                done += chunk
            }
        }
        totalBytes += Int64(size)
        out?.pointee = block
        return size
    }
}

private struct Extractor {
    let root: [UInt8]
    let limits: ArchiveLimits
    let source: ClosureSource
    /// Compressed input to tar bytes: gzip and zstd filters with the "raw" format.
    let decoder: OpaquePointer
    let decoded: DecodedStream
    /// Tar bytes to entries.
    let reader: OpaquePointer
    let disk: OpaquePointer

    var summary = ExtractSummary()
    var entryCount = 0
    var declaredBytes: Int64 = 0
    var symlinks = SymlinkContainment()
    /// Regular files extracted so far: the only valid hard link targets.
    var files = Set<[UInt8]>()

    init(root: [UInt8], limits: ArchiveLimits, source: ClosureSource) throws(ArchiveError) {
        self.root = root
        self.limits = limits
        self.source = source
        guard let decoder = archive_read_new(), let reader = archive_read_new(), let disk = archive_write_disk_new()
        else {
            throw ArchiveError(code: .io, message: "extract: out of memory creating libarchive handles")
        }
        self.decoder = decoder
        self.decoded = DecodedStream(decoder: decoder)
        self.reader = reader
        self.disk = disk
        archive_read_support_filter_gzip(decoder)
        archive_read_support_filter_zstd(decoder)
        archive_read_support_format_raw(decoder)
        archive_read_support_format_tar(reader)
        // Keep reading past the end-of-archive marker to the end of the (decompressed) stream. Without this the
        // tar reader stops at the marker, the gzip filter may never reach its trailer, and a bad CRC32 (or
        // garbage after the archive) goes unnoticed.
        archive_read_set_format_option(reader, "tar", "read_concatenated_archives", "1")
        // Owners are never restored (no ARCHIVE_EXTRACT_OWNER); ACLs, xattrs and file flags neither.
        // SECURE_NOABSOLUTEPATHS cannot be set: entries are given to the disk writer as absolute paths under the
        // root (the process working directory is shared), so absolute *entry names* are refused before that.
        // SECURE_SYMLINKS is not set: for every entry it opens and lstats each component of that absolute path
        // (about 30 system calls per entry), and it guards nothing `extract(_:)` has not refused already: the
        // root is a realpath'd empty directory, only this extraction writes into it, and every entry below a
        // symlink it made, or replacing one by anything but a symlink, is refused before anything is written.
        let flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_NODOTDOT
        archive_write_disk_set_options(disk, flags)
    }

    mutating func run() throws(ArchiveError) -> ExtractSummary {
        defer {
            archive_read_free(reader)
            archive_read_free(decoder)
            archive_write_free(disk)
        }
        let decoderOpened = archive_read_open(
            decoder,
            Unmanaged.passUnretained(source).toOpaque(),
            nil,
            readFromClosureSource,
            nil
        )
        var raw: OpaquePointer?
        if decoderOpened != ARCHIVE_OK || archive_read_next_header(decoder, &raw) != ARCHIVE_OK {
            decoded.failure = archiveMessage(decoder)
            throw readError(entry: nil)
        }
        let isGzip = archive_filter_code(decoder, 0) == ARCHIVE_FILTER_GZIP
        decoded.checksumming = isGzip
        let opened = archive_read_open(
            reader,
            Unmanaged.passUnretained(decoded).toOpaque(),
            nil,
            { _, client, buffer in
                Unmanaged<DecodedStream>.fromOpaque(client!).takeUnretainedValue().next(buffer)
            },
            nil
        )
        if opened != ARCHIVE_OK { throw readError(entry: nil) }

        while true {
            var entry: OpaquePointer?
            let consumed = archive_filter_bytes(reader, 0)
            let status = archive_read_next_header(reader, &entry)
            if status == ARCHIVE_EOF {
                // libarchive also reports EOF when the input simply stops between two entries. Reaching EOF
                // consumed the last entry's padding (< 512 bytes) plus, in a complete archive, zero blocks.
                if archive_filter_bytes(reader, 0) - consumed < 512 {
                    throw ArchiveError(
                        code: .corrupt,
                        message: "extract: truncated archive: no end-of-archive marker"
                    )
                }
                break
            }
            guard status >= ARCHIVE_WARN, let entry else { throw readError(entry: nil) }
            try extract(entry)
        }
        if isGzip { try checkGzipTrailer() }
        // A later link can change where an earlier target leads, so check them all against the final tree.
        for (path, target) in symlinks.links {
            if symlinks.escapes(linkAt: path, target: target) {
                throw ArchiveError(
                    code: .linkEscapes,
                    message: "extract: symlink \(display(path)) -> \(display(target)) leads outside the Data root",
                    path: display(path)
                )
            }
        }
        // Directory permissions and times are applied here, deepest first, after their contents were written.
        if archive_write_close(disk) != ARCHIVE_OK { throw diskError(entry: nil) }
        return summary
    }

    private mutating func extract(_ entry: OpaquePointer) throws(ArchiveError) {
        guard let rawName = archive_entry_pathname(entry) else {
            throw ArchiveError(code: .corrupt, message: "extract: entry \(entryCount + 1) has no readable name")
        }
        let name = bytes(ofCString: rawName)
        let shown = display(name)
        // Names are refused rather than stored when they are not UTF-8: every consumer of a Data (JSON, the
        // console, pax headers of downloads, Knitfab's Go CLI) handles names as UTF-8 text.
        if String(validating: name, as: UTF8.self) == nil {
            throw ArchiveError(
                code: .badName,
                message: "extract: entry name \(shown) is not valid UTF-8",
                path: shown
            )
        }
        entryCount += 1
        if entryCount > limits.maxEntries {
            throw ArchiveError(
                code: .tooLarge,
                message: "extract: more than \(limits.maxEntries) entries (at \(shown))",
                path: shown
            )
        }
        if name.count > limits.maxPathBytes {
            throw ArchiveError(
                code: .tooLarge,
                message: "extract: entry name longer than \(limits.maxPathBytes) bytes",
                path: shown
            )
        }
        let parts = try safeComponents(name, shown: shown, what: "entry")
        let type = archive_entry_filetype(entry) & fileTypeMask
        let hardlink = archive_entry_hardlink(entry).map { bytes(ofCString: $0) }

        if parts.isEmpty {
            // "./" (as `tar -C dir .` writes it) is the root itself, which already exists.
            guard type == typeDirectory, hardlink == nil else {
                throw ArchiveError(
                    code: .unsafePath,
                    message: "extract: entry \(shown) names the Data root",
                    path: shown
                )
            }
            entryCount -= 1
            return
        }
        let joined = EntryPath.join(parts)
        for depth in 1..<parts.count where symlinks.isLink(EntryPath.join(parts[..<depth])) {
            throw ArchiveError(
                code: .unsafePath,
                message: "extract: entry \(shown) goes through symlink \(display(EntryPath.join(parts[..<depth])))",
                path: shown
            )
        }
        if symlinks.isLink(joined) && !(type == typeSymlink && hardlink == nil) {
            throw ArchiveError(
                code: .unsafePath,
                message: "extract: entry \(shown) replaces an extracted symlink",
                path: shown
            )
        }

        if let hardlink {
            let target = try safeComponents(hardlink, shown: shown, what: "hard link target", code: .linkEscapes)
            let targetPath = EntryPath.join(target)
            guard files.contains(targetPath) else {
                throw ArchiveError(
                    code: .linkEscapes,
                    message: "extract: hard link \(shown) -> \(display(hardlink)) does not point at a file "
                        + "extracted before it",
                    path: shown
                )
            }
            try withCString(root + [UInt8(ascii: "/")] + targetPath) { (path) throws(ArchiveError) in
                archive_entry_copy_hardlink(entry, path)
            }
        } else {
            switch type {
            case typeRegular:
                let size = archive_entry_size(entry)
                // The declared (logical) size, so a sparse file counts with its holes: it is what a download
                // sends and what a Run reads.
                let (sum, overflow) = declaredBytes.addingReportingOverflow(max(size, 0))
                if overflow || sum > limits.maxTotalBytes {
                    throw ArchiveError(
                        code: .contentTooLarge,
                        message: "extract: content exceeds \(limits.maxTotalBytes) bytes (at \(shown))",
                        path: shown
                    )
                }
                declaredBytes = sum
            case typeDirectory:
                break
            case typeSymlink:
                guard let rawTarget = archive_entry_symlink(entry) else {
                    throw ArchiveError(code: .corrupt, message: "extract: symlink \(shown) has no target", path: shown)
                }
                let target = bytes(ofCString: rawTarget)
                if String(validating: target, as: UTF8.self) == nil {
                    throw ArchiveError(
                        code: .badName,
                        message: "extract: symlink \(shown) has a target that is not valid UTF-8",
                        path: shown
                    )
                }
                if target.isEmpty || target.count > limits.maxPathBytes {
                    throw ArchiveError(
                        code: target.isEmpty ? .corrupt : .tooLarge,
                        message: "extract: symlink \(shown) has an empty or overlong target",
                        path: shown
                    )
                }
                var next = symlinks
                let linkPath = EntryPath.join(parts)
                next.add(linkAt: linkPath, target: target)
                if next.escapes(linkAt: linkPath, target: target) {
                    throw ArchiveError(
                        code: .linkEscapes,
                        message: "extract: symlink \(shown) -> \(display(target)) leads outside the Data root",
                        path: shown
                    )
                }
            case typeCharDevice, typeBlockDevice, typeFifo, typeSocket:
                let kind =
                    switch type {
                    case typeCharDevice: "character device"
                    case typeBlockDevice: "block device"
                    case typeFifo: "fifo"
                    default: "socket"
                    }
                throw ArchiveError(
                    code: .unsupportedEntry,
                    message: "extract: entry \(shown) is a \(kind); Data holds only files, directories and symlinks",
                    path: shown
                )
            default:
                throw ArchiveError(
                    code: .unsupportedEntry,
                    message: "extract: entry \(shown) has an unknown file type",
                    path: shown
                )
            }
        }

        // No setuid, setgid or sticky bits from an upload. The owner (the server) keeps the access it needs to
        // serve the Data and to delete it one day: rwx on directories, read on files.
        let ownerNeeds: UInt32 = hardlink == nil && type == typeDirectory ? 0o700 : 0o400
        archive_entry_set_perm(entry, (archive_entry_perm(entry) & 0o777) | ownerNeeds)
        try withCString(root + [UInt8(ascii: "/")] + joined) { (path) throws(ArchiveError) in
            archive_entry_copy_pathname(entry, path)
        }
        // The disk writer reports a failed write(2) (ENOSPC, EIO) as ARCHIVE_WARN and then truncates the file to
        // its declared size at finish_entry, which leaves a hole where the data should be: every status but
        // ARCHIVE_OK is a failure here.
        if archive_write_header(disk, entry) != ARCHIVE_OK { throw diskError(entry: shown) }
        if type == typeRegular || hardlink != nil {
            try copyData(shown: shown)
        }
        if archive_write_finish_entry(disk) != ARCHIVE_OK { throw diskError(entry: shown) }

        summary.entries += 1
        if hardlink != nil || type == typeRegular {
            summary.regularFiles += 1
            files.insert(joined)
        } else if type == typeDirectory {
            summary.directories += 1
            files.remove(joined)
        } else if type == typeSymlink {
            summary.symlinks += 1
            files.remove(joined)
            symlinks.add(linkAt: EntryPath.join(parts), target: bytes(ofCString: archive_entry_symlink(entry)!))
        }
    }

    /// Streams the current entry's data blocks (sparse offsets kept) to the disk writer.
    private mutating func copyData(shown: String) throws(ArchiveError) {
        while true {
            var block: UnsafeRawPointer?
            var size = 0
            var offset: la_int64_t = 0
            let status = archive_read_data_block(reader, &block, &size, &offset)
            if status == ARCHIVE_EOF { return }
            if status < ARCHIVE_WARN { throw readError(entry: shown) }
            if size == 0 { continue }
            summary.bytes += Int64(size)
            if summary.bytes > limits.maxTotalBytes {
                throw ArchiveError(
                    code: .contentTooLarge,
                    message: "extract: content exceeds \(limits.maxTotalBytes) bytes (at \(shown))",
                    path: shown
                )
            }
            if archive_write_data_block(disk, block, size, offset) != ARCHIVE_OK { throw diskError(entry: shown) }
        }
    }

    /// Compares the CRC32 and length of everything decompressed with the trailer of the gzip input.
    ///
    /// The trailer covers one member; input of several concatenated members (rare for tar.gz) is recognised by
    /// a length mismatch and then not checked, since the per-member sums are not visible from here.
    private func checkGzipTrailer() throws(ArchiveError) {
        guard decoded.checksumming, decoded.reachedEnd, source.tail.count == 8 else { return }
        let tail = source.tail
        let storedCRC = UInt32(tail[0]) | UInt32(tail[1]) << 8 | UInt32(tail[2]) << 16 | UInt32(tail[3]) << 24
        let storedSize = UInt32(tail[4]) | UInt32(tail[5]) << 8 | UInt32(tail[6]) << 16 | UInt32(tail[7]) << 24
        guard storedSize == UInt32(truncatingIfNeeded: decoded.totalBytes) else { return }
        if storedCRC != UInt32(truncatingIfNeeded: decoded.crc) {
            throw ArchiveError(code: .corrupt, message: "extract: gzip CRC32 mismatch: the archive is damaged")
        }
    }

    /// Components of an entry name or hard link target, refusing absolute names and `..`.
    private func safeComponents(
        _ name: [UInt8],
        shown: String,
        what: String,
        code: ArchiveError.Code = .unsafePath
    ) throws(ArchiveError) -> [[UInt8]] {
        switch EntryPath.components(name) {
        case .success(let parts):
            return parts
        case .failure(.absolute):
            throw ArchiveError(
                code: code,
                message: "extract: \(what) \(display(name)) is an absolute path (entry \(shown))",
                path: shown
            )
        case .failure(.dotDot):
            throw ArchiveError(
                code: code,
                message: "extract: \(what) \(display(name)) contains \"..\" (entry \(shown))",
                path: shown
            )
        }
    }

    /// The error for a failed read: the caller's closure, an empty body, or bad archive bytes.
    private func readError(entry: String?) -> ArchiveError {
        let at = entry.map { " (in entry \($0))" } ?? ""
        if let failure = source.failure {
            return ArchiveError(
                code: .readFailed,
                message: "extract: reading the archive failed\(at): \(failure)",
                path: entry,
                underlying: failure
            )
        }
        if source.totalBytes == 0 {
            return ArchiveError(code: .corrupt, message: "extract: empty archive (0 bytes)", path: entry)
        }
        if let failure = decoded.failure {
            return ArchiveError(
                code: .corrupt,
                message: "extract: corrupt or truncated archive\(at): \(failure)",
                path: entry
            )
        }
        return ArchiveError(
            code: .corrupt,
            message: "extract: corrupt or truncated archive\(at): \(archiveMessage(reader))",
            path: entry
        )
    }

    /// The error for a failed write to disk; ENOSPC reads "disk full".
    private func diskError(entry: String?) -> ArchiveError {
        let code = archive_errno(disk)
        let at = entry.map { " \($0)" } ?? ""
        let detail = code == ENOSPC || code == EDQUOT ? "disk full" : archiveMessage(disk)
        return ArchiveError(
            code: .io,
            message: "extract: writing\(at) failed: \(detail)",
            path: entry,
            errno: code == 0 ? nil : code
        )
    }
}
