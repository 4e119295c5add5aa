internal import CKnitArchive

#if canImport(Glibc)
    internal import Glibc
#endif

/// One entry of an archive as ``ArchiveEntryReader`` meets it.
public struct ArchiveEntryHeader: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case file
        case directory
        case symlink
        /// A hard link: its data lives in the earlier entry it names.
        case hardlink
        /// Devices, fifos, sockets.
        case other
    }

    /// The stored name without leading `./` (`tar -C dir .` writes `./manifest.json`) or trailing `/`.
    public let name: String
    /// Declared size of the entry's data in bytes (0 for everything but regular files).
    public let size: Int64
    public let kind: Kind

    public init(name: String, size: Int64, kind: Kind) {
        self.name = name
        self.size = size
        self.kind = kind
    }
}

/// Walks the entries of a tar (plain or with any compression libarchive detects) front to back, reading only
/// the entries the caller asks for.
///
/// Made for `docker save` archives, which are gigabytes of layers around a few kilobytes of JSON: data the
/// caller does not read is skipped (seeked over when the input is a seekable file, otherwise decompressed in
/// fixed-size blocks and dropped), so memory stays at libarchive's buffers plus what ``readData(limit:)``
/// returns. Nothing is written to disk and entry names are not checked for safety: this reader only looks.
///
/// Owns its libarchive handle, hence `~Copyable`; not thread-safe.
public struct ArchiveEntryReader: ~Copyable {
    private let handle: OpaquePointer
    /// Keeps the caller's closure and the read buffer alive for the callbacks (nil for file descriptors).
    private let source: ClosureSource?
    private var current: ArchiveEntryHeader?
    private var finished = false

    /// Reads from an open file descriptor, which stays open (the caller closes it).
    ///
    /// A regular file is skipped over with `lseek`; a pipe (stdin from `docker save | knit …`) is read through.
    public init(fileDescriptor: Int32) throws(ArchiveError) {
        let handle = try Self.newHandle()
        if archive_read_open_fd(handle, fileDescriptor, ioBlockSize) != ARCHIVE_OK {
            let message = archiveMessage(handle)
            archive_read_free(handle)
            throw ArchiveError(code: .corrupt, message: "archive: cannot open input: \(message)")
        }
        self.handle = handle
        self.source = nil
    }

    /// Reads bytes pulled from `read`: it fills the buffer and returns the count, 0 at the end of input. If it
    /// throws, the walk fails with ``ArchiveError/Code/readFailed`` carrying that error.
    public init(read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) throws(ArchiveError) {
        let handle = try Self.newHandle()
        let source = ClosureSource(read: read)
        let opened = archive_read_open(
            handle,
            Unmanaged.passUnretained(source).toOpaque(),
            nil,
            readFromClosureSource,
            nil
        )
        if opened != ARCHIVE_OK {
            let error = source.error(libarchive: archiveMessage(handle))
            archive_read_free(handle)
            throw error
        }
        self.handle = handle
        self.source = source
    }

    deinit {
        archive_read_free(handle)
    }

    private static func newHandle() throws(ArchiveError) -> OpaquePointer {
        guard let handle = archive_read_new() else {
            throw ArchiveError(code: .io, message: "archive: out of memory creating a reader")
        }
        // Whatever compression `docker save | gzip`, `podman save` or a hand-made tarball used.
        archive_read_support_filter_all(handle)
        archive_read_support_format_tar(handle)
        return handle
    }

    /// The next entry, or nil at the end of the archive. The previous entry's unread data is skipped.
    ///
    /// - Throws: ``ArchiveError`` ``ArchiveError/Code/corrupt`` for input that is not a (complete) tar,
    ///   ``ArchiveError/Code/readFailed`` when the read closure threw.
    public mutating func next() throws(ArchiveError) -> ArchiveEntryHeader? {
        if finished { return nil }
        let handle = self.handle
        let source = self.source
        let header = try withUTF8Locale { () throws(ArchiveError) -> ArchiveEntryHeader? in
            var entry: OpaquePointer?
            let status = archive_read_next_header(handle, &entry)
            if status == ARCHIVE_EOF { return nil }
            guard status >= ARCHIVE_WARN, let entry else {
                let message = archiveMessage(handle)
                throw source?.error(libarchive: message)
                    ?? ArchiveError(code: .corrupt, message: "archive: not a readable tar archive: \(message)")
            }
            let raw = archive_entry_pathname_utf8(entry) ?? archive_entry_pathname(entry)
            var name = raw.map { display(bytes(ofCString: $0)) } ?? ""
            while name.hasPrefix("./") { name.removeFirst(2) }
            while name.count > 1, name.hasSuffix("/") { name.removeLast() }
            let kind: ArchiveEntryHeader.Kind
            if archive_entry_hardlink(entry) != nil {
                kind = .hardlink
            } else {
                switch archive_entry_filetype(entry) & fileTypeMask {
                case typeRegular: kind = .file
                case typeDirectory: kind = .directory
                case typeSymlink: kind = .symlink
                default: kind = .other
                }
            }
            let size = archive_entry_size_is_set(entry) != 0 ? Int64(archive_entry_size(entry)) : 0
            return ArchiveEntryHeader(name: name, size: size, kind: kind)
        }
        current = header
        if header == nil { finished = true }
        return header
    }

    /// All data of the entry ``next()`` returned last, when it holds at most `limit` bytes.
    ///
    /// The declared size is checked before anything is read, so a multi-gigabyte layer costs nothing here.
    ///
    /// - Throws: ``ArchiveError`` ``ArchiveError/Code/tooLarge`` above `limit` (the entry stays unread and is
    ///   skipped by the next ``next()``), ``ArchiveError/Code/corrupt`` for a truncated entry,
    ///   ``ArchiveError/Code/readFailed``.
    public mutating func readData(limit: Int) throws(ArchiveError) -> [UInt8] {
        guard let header = current else {
            preconditionFailure("ArchiveEntryReader.readData called without a current entry")
        }
        guard header.size <= Int64(limit) else {
            throw ArchiveError(
                code: .tooLarge,
                message: "archive: entry \(header.name) holds \(header.size) bytes, more than \(limit)",
                path: header.name
            )
        }
        // Read once: a second call for the same entry would find its data consumed.
        current = nil
        var data = [UInt8](repeating: 0, count: Int(header.size))
        var filled = 0
        while filled < data.count {
            let count = data.withUnsafeMutableBytes { raw in
                archive_read_data(handle, raw.baseAddress! + filled, raw.count - filled)
            }
            if count < 0 {
                let message = archiveMessage(handle)
                throw source?.error(libarchive: message)
                    ?? ArchiveError(
                        code: .corrupt,
                        message: "archive: entry \(header.name): \(message)",
                        path: header.name
                    )
            }
            if count == 0 {
                throw ArchiveError(
                    code: .corrupt,
                    message: "archive: entry \(header.name) is truncated (\(filled) of \(header.size) bytes)",
                    path: header.name
                )
            }
            filled += count
        }
        return data
    }

    /// Streams the data of the entry ``next()`` returned last: fills `buffer` with the next bytes and returns
    /// the count, 0 once the entry's data is exhausted. For entries too large to hold (the layers `knit image
    /// load` sends on); use either this or ``readData(limit:)`` for one entry, not both.
    ///
    /// - Throws: ``ArchiveError`` ``ArchiveError/Code/corrupt`` for a truncated entry,
    ///   ``ArchiveError/Code/readFailed``.
    public mutating func readChunk(into buffer: UnsafeMutableRawBufferPointer) throws(ArchiveError) -> Int {
        guard let header = current else { return 0 }
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        let count = archive_read_data(handle, base, buffer.count)
        if count < 0 {
            let message = archiveMessage(handle)
            throw source?.error(libarchive: message)
                ?? ArchiveError(code: .corrupt, message: "archive: entry \(header.name): \(message)", path: header.name)
        }
        if count == 0 { current = nil }
        return count
    }
}

extension ClosureSource {
    /// The error for a libarchive failure: the closure's own error when it caused it.
    func error(libarchive message: String) -> ArchiveError {
        if let failure {
            return ArchiveError(
                code: .readFailed,
                message: "archive: reading the input failed: \(failure)",
                underlying: failure
            )
        }
        return ArchiveError(code: .corrupt, message: "archive: not a readable tar archive: \(message)")
    }
}
