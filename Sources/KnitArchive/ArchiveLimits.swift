/// Bounds enforced while an archive streams in, so a hostile upload is stopped before it fills the disk.
public struct ArchiveLimits: Sendable, Equatable {
    /// Most entries (of any type) an archive may hold.
    public var maxEntries: Int
    /// Most bytes of file content, summed over all regular files (the declared sizes, checked per header).
    public var maxTotalBytes: Int64
    /// Longest entry name (and link target) in bytes.
    public var maxPathBytes: Int

    public init(maxEntries: Int, maxTotalBytes: Int64, maxPathBytes: Int) {
        self.maxEntries = maxEntries
        self.maxTotalBytes = maxTotalBytes
        self.maxPathBytes = maxPathBytes
    }

    public static let `default` = ArchiveLimits(maxEntries: 10_000_000, maxTotalBytes: .max, maxPathBytes: 4096)
}

/// What an extraction wrote.
public struct ExtractSummary: Sendable, Equatable {
    /// Entries written (the root entry `./`, which some tar writers emit, is not counted).
    public var entries: Int
    /// Regular files, hard links included.
    public var regularFiles: Int
    public var directories: Int
    public var symlinks: Int
    /// Bytes of file content written.
    public var bytes: Int64

    public init(entries: Int = 0, regularFiles: Int = 0, directories: Int = 0, symlinks: Int = 0, bytes: Int64 = 0) {
        self.entries = entries
        self.regularFiles = regularFiles
        self.directories = directories
        self.symlinks = symlinks
        self.bytes = bytes
    }
}
