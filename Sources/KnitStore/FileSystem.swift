internal import KnitSystem

#if canImport(Glibc)
    internal import Glibc
#endif

// The few file operations the store needs, as thin throwing calls. Paths are always ours (home/…),
// never user input.

enum FileSystem {
    /// `mkdir -p` with `mode` for each created directory.
    static func makeDirectory(_ path: String, mode: mode_t = 0o750) throws(StoreError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw error("create directory \(current)")
            }
        }
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw StoreError(.io, "store: \(path) exists but is not a directory")
        }
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// KnitSystem's byte-exact `removeTree`, failing with the store's error.
    static func removeTree(_ path: String) throws(StoreError) {
        do { try KnitSystem.removeTree(path) } catch { throw Self.error(error) }
    }

    /// ``removeTree(_:)`` of a path given as raw bytes; `shown` names it in errors.
    static func removeTree(bytes path: [UInt8], shown: String) throws(StoreError) {
        do { try KnitSystem.removeTree(bytes: path, shown: shown) } catch { throw Self.error(error) }
    }

    /// Names in directory `path`, without `.` and `..`, as raw bytes (they need not be UTF-8).
    static func entries(_ path: String) throws(StoreError) -> [[UInt8]] {
        do { return try directoryEntries(path) } catch { throw Self.error(error) }
    }

    /// Atomic rename within one file system. Fails when `to` exists and is a non-empty directory.
    static func rename(_ from: String, to: String) throws(StoreError) {
        if Glibc.rename(from, to) != 0 {
            let code = errno
            if code == ENOTEMPTY || code == EEXIST {
                throw StoreError(.conflict, "store: cannot move \(from) to \(to): destination exists")
            }
            throw error("move \(from) to \(to)", code)
        }
    }

    /// Puts every regular file and directory under `path` (and `path` itself) on disk before the record
    /// that publishes it is committed. Symlinks are not followed; names below `path` are raw bytes.
    ///
    /// Up to `individually` entries are fsynced one by one; a larger tree gets one `syncfs` of its
    /// filesystem instead, the same guarantee in one call (bench/transfer.sh, 100,000 files of 1 KiB: push
    /// 68 s → 57 s, single runs on a loaded machine). A small tree keeps per-entry fsync so it does not wait
    /// for the dirty pages of other uploads on the same filesystem.
    /// - Returns: how many entries were fsynced one by one, nil when `syncfs` was used.
    @discardableResult
    static func syncTree(_ path: String, individually: Int = 512) throws(StoreError) -> Int? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw error("open \(path) for fsync") }
        defer { close(fd) }
        let limit = syncFilesystem == nil ? Int.max : individually
        var budget = limit
        try syncOpen(fd, shown: path, budget: &budget)
        // Below zero: some entries were not fsynced (and the walk stopped); the whole filesystem covers them.
        guard budget < 0 else { return limit - budget }
        if let syncFilesystem, syncFilesystem(fd) != 0 { throw error("syncfs \(path)") }
        return nil
    }

    /// glibc's `syncfs`, looked up at run time: Swift's Glibc module leaves it out (it is a _GNU_SOURCE
    /// declaration). Every glibc since 2.14 has it; were it missing, each remaining entry is fsynced.
    private static let syncFilesystem: (@convention(c) (Int32) -> Int32)? = dlsym(nil, "syncfs").map {
        unsafeBitCast($0, to: (@convention(c) (Int32) -> Int32).self)
    }

    private static func syncOpen(_ fd: Int32, shown: String, budget: inout Int) throws(StoreError) {
        if budget < 0 { return }
        var info = stat()
        if fstat(fd, &info) != 0 { throw error("inspect \(shown)") }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            let names: [[UInt8]]
            do { names = try directoryEntries(fd: fd, shown: shown) } catch { throw Self.error(error) }
            for name in names {
                if budget < 0 { break }
                let childShown = shown + "/" + String(decoding: name, as: UTF8.self)
                var child = stat()
                if withCName(name, { fstatat(fd, $0, &child, AT_SYMLINK_NOFOLLOW) }) != 0 {
                    throw error("inspect \(childShown)")
                }
                let kind = child.st_mode & S_IFMT
                guard kind == S_IFDIR || kind == S_IFREG else { continue }
                let childFD = withCName(name) { openat(fd, $0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
                guard childFD >= 0 else { throw error("open \(childShown) for fsync") }
                defer { close(childFD) }
                try syncOpen(childFD, shown: childShown, budget: &budget)
            }
        }
        budget -= 1
        if budget >= 0 && fsync(fd) != 0 { throw error("fsync \(shown)") }
    }

    /// fsync of one file or directory.
    static func sync(_ path: String) throws(StoreError) {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw error("open \(path) for fsync") }
        defer { close(fd) }
        if fsync(fd) != 0 { throw error("fsync \(path)") }
    }

    static func error(_ failure: SystemError) -> StoreError { error(failure.operation, failure.errno.rawValue) }

    static func error(_ what: String, _ code: Int32 = errno) -> StoreError {
        let reason = Errno(code).description
        if code == ENOSPC || code == EDQUOT { return StoreError(.storageFull, "store: \(what): \(reason)") }
        return StoreError(.io, "store: \(what): \(reason)")
    }

    /// Milliseconds since the epoch, from the real-time clock.
    static func nowMilliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}
