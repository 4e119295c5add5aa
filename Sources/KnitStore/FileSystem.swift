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
    ///
    /// Below `path` names are handled as raw bytes (`openat`/`unlinkat`), so a name that is not UTF-8 is
    /// removed like any other. A failure does not stop the walk: everything removable is removed, then the
    /// first error is thrown.
    static func removeTree(_ path: String) throws(StoreError) {
        try removeTree(bytes: Array(path.utf8), shown: path)
    }

    /// ``removeTree(_:)`` of a path given as raw bytes; `shown` names it in errors.
    static func removeTree(bytes path: [UInt8], shown: String) throws(StoreError) {
        var info = stat()
        guard withCName(path, { lstat($0, &info) }) == 0 else {
            if errno == ENOENT { return }
            throw error("inspect \(shown)")
        }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            let fd = withCName(path) { open($0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard fd >= 0 else {
                if errno == ENOENT { return }
                throw error("open directory \(shown)")
            }
            var first: StoreError?
            removeContents(of: fd, shown: shown, firstError: &first)
            close(fd)
            if let first { throw first }
            if withCName(path, { rmdir($0) }) != 0 && errno != ENOENT { throw error("remove directory \(shown)") }
        } else if withCName(path, { unlink($0) }) != 0 && errno != ENOENT {
            throw error("remove \(shown)")
        }
    }

    /// Removes everything in the open directory `fd`, depth first, remembering the first failure.
    private static func removeContents(of fd: Int32, shown: String, firstError: inout StoreError?) {
        let names: [[UInt8]]
        do { names = try entryNames(fd: fd, shown: shown) } catch {
            if firstError == nil { firstError = error }
            return
        }
        for name in names {
            let childShown = shown + "/" + String(decoding: name, as: UTF8.self)
            var info = stat()
            let found = withCName(name) { fstatat(fd, $0, &info, AT_SYMLINK_NOFOLLOW) }
            if found != 0 {
                if errno != ENOENT && firstError == nil { firstError = error("inspect \(childShown)") }
                continue
            }
            if (info.st_mode & S_IFMT) == S_IFDIR {
                let child = withCName(name) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
                if child < 0 {
                    if errno != ENOENT && firstError == nil { firstError = error("open directory \(childShown)") }
                    continue
                }
                removeContents(of: child, shown: childShown, firstError: &firstError)
                close(child)
                if withCName(name, { unlinkat(fd, $0, AT_REMOVEDIR) }) != 0 && errno != ENOENT && firstError == nil {
                    firstError = error("remove directory \(childShown)")
                }
            } else if withCName(name, { unlinkat(fd, $0, 0) }) != 0 && errno != ENOENT && firstError == nil {
                firstError = error("remove \(childShown)")
            }
        }
    }

    /// Names in directory `path`, without `.` and `..`, as raw bytes (they need not be UTF-8).
    static func entries(_ path: String) throws(StoreError) -> [[UInt8]] {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw error("open directory \(path)") }
        defer { close(fd) }
        return try entryNames(fd: fd, shown: path)
    }

    /// Names in the open directory `fd`, without `.` and `..`; `fd` stays open and keeps its offset.
    private static func entryNames(fd: Int32, shown: String) throws(StoreError) -> [[UInt8]] {
        let copy = dup(fd)
        guard copy >= 0, let dir = fdopendir(copy) else {
            let code = errno
            if copy >= 0 { close(copy) }
            throw error("open directory \(shown)", code)
        }
        defer { closedir(dir) }
        rewinddir(dir)
        var names: [[UInt8]] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw error("read directory \(shown)") }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [UInt8(ascii: ".")] && name != [UInt8(ascii: "."), UInt8(ascii: ".")] { names.append(name) }
        }
        return names
    }

    /// Calls `body` with `name` as a NUL-terminated C string.
    static func withCName<T>(_ name: [UInt8], _ body: (UnsafePointer<CChar>) -> T) -> T {
        (name + [0]).withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) }
        }
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
            for name in try entryNames(fd: fd, shown: shown) {
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
