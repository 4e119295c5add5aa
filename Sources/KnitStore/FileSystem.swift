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

    /// `rm -rf`: no error when `path` is absent. Symlinks are removed, never followed.
    static func removeTree(_ path: String) throws(StoreError) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw error("inspect \(path)")
        }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            for name in try entries(path) { try removeTree(path + "/" + name) }
            if rmdir(path) != 0 && errno != ENOENT { throw error("remove directory \(path)") }
        } else if unlink(path) != 0 && errno != ENOENT {
            throw error("remove \(path)")
        }
    }

    /// Names in directory `path`, without `.` and `..`.
    static func entries(_ path: String) throws(StoreError) -> [String] {
        guard let dir = opendir(path) else { throw error("open directory \(path)") }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
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
    /// disk before the record that publishes it is committed. Symlinks are not followed.
    static func syncTree(_ path: String) throws(StoreError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { throw error("inspect \(path)") }
        let kind = info.st_mode & S_IFMT
        if kind == S_IFDIR {
            for name in try entries(path) { try syncTree(path + "/" + name) }
        }
        if kind == S_IFDIR || kind == S_IFREG { try sync(path) }
    }

    /// fsync of one file or directory.
    static func sync(_ path: String) throws(StoreError) {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw error("open \(path) for fsync") }
        defer { close(fd) }
        if fsync(fd) != 0 { throw error("fsync \(path)") }
    }

    static func error(_ what: String, _ code: Int32 = errno) -> StoreError {
        let reason = String(cString: strerror(code))
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
