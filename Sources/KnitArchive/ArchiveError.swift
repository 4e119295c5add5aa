/// Why reading, writing or extracting an archive failed.
///
/// ``message`` is meant for logs and for the person at the CLI: it names the entry or file. Whether any of it
/// reaches an HTTP client is the API layer's decision.
public struct ArchiveError: Error, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        /// An entry name is absolute, has a `..` component, or goes through (or replaces) a symlink.
        case unsafePath
        /// A symlink or hard link points outside the Data root (or, for hard links, at nothing extracted yet).
        case linkEscapes
        /// A device, fifo or socket entry: Data holds only directories, regular files and symlinks.
        case unsupportedEntry
        /// The bytes are not a complete tar / tar.gz / tar.zst: garbage, truncated, bad CRC or checksum, empty.
        case corrupt
        /// ``ArchiveLimits`` exceeded: entry count or path length.
        case tooLarge
        /// ``ArchiveLimits/maxTotalBytes`` exceeded by the declared (logical) sizes of the files, holes of sparse
        /// files included.
        case contentTooLarge
        /// An entry name or symlink target that is not valid UTF-8.
        case badName
        /// The caller's `read` closure threw; its error is ``ArchiveError/underlying``.
        case readFailed
        /// The caller's `write` closure threw; its error is ``ArchiveError/underlying``.
        case writeFailed
        /// A local file operation failed (permissions, disk full, a file that changed while being archived).
        case io
        /// The extraction target is not an empty directory.
        case notEmpty
    }

    public var code: Code
    public var message: String
    /// The entry name (extraction) or the path relative to the tree root (creation), when one is involved.
    public var path: String?
    /// The error thrown by the caller's closure (``Code/readFailed``, ``Code/writeFailed``).
    public var underlying: (any Error)?
    /// The errno behind an ``Code/io`` failure, when known.
    public var errno: Int32?

    public init(
        code: Code,
        message: String,
        path: String? = nil,
        underlying: (any Error)? = nil,
        errno: Int32? = nil
    ) {
        self.code = code
        self.message = message
        self.path = path
        self.underlying = underlying
        self.errno = errno
    }

    public var description: String { message }
}
