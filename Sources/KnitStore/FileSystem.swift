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

    /// fsyncs every regular file and directory under `path` (and `path` itself), so that content is on
    /// disk before the record that publishes it is committed. Symlinks are not followed; names below `path`
    /// are raw bytes.
    static func syncTree(_ path: String) throws(StoreError) {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw error("open \(path) for fsync") }
        defer { close(fd) }
        try syncOpen(fd, shown: path)
    }

    private static func syncOpen(_ fd: Int32, shown: String) throws(StoreError) {
        var info = stat()
        if fstat(fd, &info) != 0 { throw error("inspect \(shown)") }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            let names: [[UInt8]]
            do { names = try directoryEntries(fd: fd, shown: shown) } catch { throw Self.error(error) }
            for name in names {
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
                try syncOpen(childFD, shown: childShown)
            }
        }
        if fsync(fd) != 0 { throw error("fsync \(shown)") }
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
