internal import CKnitArchive

#if canImport(Glibc)
    internal import Glibc
#endif

/// Writes the tree under `directory` as an archive in `format`, streaming the bytes to `write`.
///
/// Entries are paths relative to `directory` (no `./`, no leading `/`) in a stable order: depth first, names
/// sorted bytewise. Directories are entries of their own, so empty ones survive, unless `directoryEntries` is
/// false: then only files and symlinks are written, as Knitfab's server does (its CLI extracts an entry `sub/`
/// as an empty *file* `sub`, and then fails on `sub/x`). Regular files keep their
/// permission bits (masked to 0o777) and mtime; owners are not stored (uid/gid 0). Symlinks are stored with their
/// target verbatim, or with `dereference` followed and stored as what they point to (a link back up the tree is
/// skipped; a dangling link stays a link). Fifos, sockets and devices are skipped. Hard links become separate
/// files.
///
/// - Parameters:
///   - directory: The tree root.
///   - format: Container and compression.
///   - dereference: Follow symlinks instead of storing them.
///   - directoryEntries: Write an entry for each directory (false: empty directories are lost).
///   - compressionLevel: gzip 1...9 or zstd 1...19; default 1 for both (speed over ratio: most Data is
///     incompressible). Ignored for plain tar.
///   - progress: Called with the running total of file content bytes archived.
///   - write: Receives the archive bytes, in blocks of up to 256 KiB; the buffer is valid only during the call.
///     It may throw (the server went away); the call then fails with ``ArchiveError/Code/writeFailed``.
///
/// #### Errors
/// ``ArchiveError/Code/io`` for unreadable files (or a file that shrank while being read),
/// ``ArchiveError/Code/writeFailed`` when `write` threw.
///
/// Uses libarchive's `archive_write_*` with the pax (restricted) format and the gzip filter; zstd is written
/// with libzstd directly, content checksum on.
public func writeArchive(
    of directory: String,
    format: ArchiveFormat,
    dereference: Bool = false,
    directoryEntries: Bool = true,
    compressionLevel: Int? = nil,
    progress: ((Int64) -> Void)? = nil,
    write: (UnsafeRawBufferPointer) throws -> Void
) throws(ArchiveError) {
    try withUTF8Locale { () throws(ArchiveError) in
        try withoutActuallyEscaping(write) { (write) throws(ArchiveError) in
            // zstd is compressed here rather than by libarchive, so the frame carries a checksum.
            let zstd =
                format == .tarZstd
                ? try ZstdCompressor(level: compressionLevel ?? 1, workers: ArchiveWriter.zstdThreads, write: write)
                : nil
            let sink = WriteSink(write: zstd.map { compressor in { try compressor.compress($0) } } ?? write)
            let writer = try ArchiveWriter(
                format: zstd == nil ? format : .tar,
                compressionLevel: compressionLevel,
                sink: sink
            )
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: ioBlockSize, alignment: 16)
            defer { buffer.deallocate() }
            var archived: Int64 = 0
            try TreeWalker(dereference: dereference).walk(root: directory) { (node) throws(ArchiveError) in
                if case .directory = node.kind, !directoryEntries { return }
                try writer.add(node)
                if case .regular = node.kind {
                    try writer.copyFile(node, buffer: buffer) { (count) in
                        archived += Int64(count)
                        progress?(archived)
                    }
                }
            }
            try writer.finish()
            if let zstd {
                do { try zstd.finish() } catch let error as ArchiveError { throw error } catch {
                    throw ArchiveError(
                        code: .writeFailed,
                        message: "archive: cannot send the archive",
                        underlying: error
                    )
                }
            }
        }
    }
}

/// Hands libarchive's output to the caller's closure and remembers a failure.
final class WriteSink {
    let write: (UnsafeRawBufferPointer) throws -> Void
    var failure: (any Error)?

    init(write: @escaping (UnsafeRawBufferPointer) throws -> Void) {
        self.write = write
    }
}

/// A libarchive writer over a ``WriteSink``; freed when it goes away.
final class ArchiveWriter {
    let handle: OpaquePointer
    let sink: WriteSink
    private let entry: OpaquePointer
    private var finished = false

    /// zstd worker threads: libzstd compresses in them while we read the next block, so compression and file
    /// reading overlap. Two, because that is what the machines Knit targets have; more only adds memory.
    static let zstdThreads = 2

    init(format: ArchiveFormat, compressionLevel: Int?, sink: WriteSink) throws(ArchiveError) {
        guard let handle = archive_write_new(), let entry = archive_entry_new() else {
            throw ArchiveError(code: .io, message: "archive: out of memory creating a writer")
        }
        self.handle = handle
        self.entry = entry
        self.sink = sink
        // pax "restricted": plain ustar headers unless a name, size or charset needs a pax extension.
        archive_write_set_format_pax_restricted(handle)
        switch format {
        case .tar:
            break
        case .tarGzip:
            archive_write_add_filter_gzip(handle)
            try option("gzip", "compression-level", String(compressionLevel ?? 1))
            // No timestamp in the gzip header: the same tree gives the same bytes.
            try option("gzip", "timestamp", nil)
        case .tarZstd:
            // Compressed outside libarchive (ZstdCompressor) so the frame carries a checksum.
            break
        }
        archive_write_set_bytes_per_block(handle, Int32(ioBlockSize))
        archive_write_set_bytes_in_last_block(handle, 1)
        let opened = archive_write_open(
            handle,
            Unmanaged.passUnretained(sink).toOpaque(),
            nil,
            { _, client, buffer, length in
                let sink = Unmanaged<WriteSink>.fromOpaque(client!).takeUnretainedValue()
                do {
                    try sink.write(UnsafeRawBufferPointer(start: buffer, count: length))
                    return length
                } catch {
                    sink.failure = error
                    return -1
                }
            },
            nil
        )
        if opened != ARCHIVE_OK { throw failure("cannot start the archive", path: nil) }
    }

    deinit {
        if !finished { archive_write_fail(handle) }
        archive_write_free(handle)
        archive_entry_free(entry)
    }

    private func option(_ module: String, _ key: String, _ value: String?) throws(ArchiveError) {
        if archive_write_set_filter_option(handle, module, key, value) != ARCHIVE_OK {
            throw ArchiveError(
                code: .io,
                message: "archive: libarchive rejected \(module) option \(key): \(archiveMessage(handle))"
            )
        }
    }

    /// Writes the header for `node`.
    func add(_ node: TreeNode) throws(ArchiveError) {
        archive_entry_clear(entry)
        withCString(node.path) { archive_entry_copy_pathname(entry, $0) }
        archive_entry_set_mtime(entry, node.info.st_mtim.tv_sec, node.info.st_mtim.tv_nsec)
        archive_entry_set_perm(entry, node.info.st_mode & 0o777)
        switch node.kind {
        case .directory:
            archive_entry_set_filetype(entry, typeDirectory)
        case .regular:
            archive_entry_set_filetype(entry, typeRegular)
            archive_entry_set_size(entry, la_int64_t(node.info.st_size))
        case .symlink(let target):
            archive_entry_set_filetype(entry, typeSymlink)
            withCString(target) { archive_entry_copy_symlink(entry, $0) }
        }
        if archive_write_header(handle, entry) < ARCHIVE_WARN {
            throw failure("cannot write the header", path: display(node.path))
        }
    }

    /// Copies the content of a regular file, exactly as many bytes as its header announced.
    func copyFile(
        _ node: TreeNode,
        buffer: UnsafeMutableRawBufferPointer,
        progress: (Int) -> Void
    ) throws(ArchiveError) {
        let shown = display(node.path)
        let fd = withCString(node.name) { openat(node.parent, $0, O_RDONLY | O_CLOEXEC) }
        if fd < 0 { throw TreeWalker.ioError(errno, "cannot open", shown) }
        defer { close(fd) }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        var remaining = Int64(node.info.st_size)
        while remaining > 0 {
            let want = Int(min(Int64(buffer.count), remaining))
            let got = read(fd, buffer.baseAddress, want)
            if got < 0 {
                if errno == EINTR { continue }
                throw TreeWalker.ioError(errno, "cannot read", shown)
            }
            if got == 0 {
                throw ArchiveError(
                    code: .io,
                    message: "archive: \(shown) shrank while it was being archived",
                    path: shown
                )
            }
            if archive_write_data(handle, buffer.baseAddress, got) < 0 {
                throw failure("cannot write the content", path: shown)
            }
            remaining -= Int64(got)
            progress(got)
        }
    }

    /// Writes the end-of-archive marker and flushes the compressor.
    func finish() throws(ArchiveError) {
        let status = archive_write_close(handle)
        finished = true
        if status != ARCHIVE_OK { throw failure("cannot finish the archive", path: nil) }
    }

    private func failure(_ what: String, path: String?) -> ArchiveError {
        let at = path.map { " for \($0)" } ?? ""
        if let failure = sink.failure {
            return ArchiveError(
                code: .writeFailed,
                message: "archive: sending the archive failed\(at): \(failure)",
                path: path,
                underlying: failure
            )
        }
        return ArchiveError(code: .io, message: "archive: \(what)\(at): \(archiveMessage(handle))", path: path)
    }
}
