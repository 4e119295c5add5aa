internal import Glibc

/// Whether `path` is a directory, following symlinks (`stat`).
public func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
}

/// `rm -rf`: no error when `path` is absent. Symlinks are removed, never followed.
///
/// Below `path` names are handled as raw bytes (`openat`/`unlinkat`), so a name that is not UTF-8 is
/// removed like any other. A failure does not stop the walk: everything removable is removed, then the
/// first error is thrown.
public func removeTree(_ path: String) throws(SystemError) {
    try removeTree(bytes: Array(path.utf8), shown: path)
}

/// ``removeTree(_:)`` of a path given as raw bytes; `shown` names it in errors.
public func removeTree(bytes path: [UInt8], shown: String) throws(SystemError) {
    var info = stat()
    guard withCName(path, { lstat($0, &info) }) == 0 else {
        if errno == ENOENT { return }
        throw SystemError("inspect \(shown)")
    }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        let fd = withCName(path) { open($0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else {
            if errno == ENOENT { return }
            throw SystemError("open directory \(shown)")
        }
        var first: SystemError?
        removeContents(of: fd, shown: shown, firstError: &first)
        close(fd)
        if let first { throw first }
        if withCName(path, { rmdir($0) }) != 0 && errno != ENOENT { throw SystemError("remove directory \(shown)") }
    } else if withCName(path, { unlink($0) }) != 0 && errno != ENOENT {
        throw SystemError("remove \(shown)")
    }
}

/// Removes everything in the open directory `fd`, depth first, remembering the first failure.
private func removeContents(of fd: Int32, shown: String, firstError: inout SystemError?) {
    let names: [[UInt8]]
    do { names = try directoryEntries(fd: fd, shown: shown) } catch {
        if firstError == nil { firstError = error }
        return
    }
    for name in names {
        let childShown = shown + "/" + String(decoding: name, as: UTF8.self)
        var info = stat()
        let found = withCName(name) { fstatat(fd, $0, &info, AT_SYMLINK_NOFOLLOW) }
        if found != 0 {
            if errno != ENOENT && firstError == nil { firstError = SystemError("inspect \(childShown)") }
            continue
        }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            let child = withCName(name) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            if child < 0 {
                if errno != ENOENT && firstError == nil { firstError = SystemError("open directory \(childShown)") }
                continue
            }
            removeContents(of: child, shown: childShown, firstError: &firstError)
            close(child)
            if withCName(name, { unlinkat(fd, $0, AT_REMOVEDIR) }) != 0 && errno != ENOENT && firstError == nil {
                firstError = SystemError("remove directory \(childShown)")
            }
        } else if withCName(name, { unlinkat(fd, $0, 0) }) != 0 && errno != ENOENT && firstError == nil {
            firstError = SystemError("remove \(childShown)")
        }
    }
}

/// Names in directory `path`, without `.` and `..`, as raw bytes (they need not be UTF-8).
public func directoryEntries(_ path: String) throws(SystemError) -> [[UInt8]] {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw SystemError("open directory \(path)") }
    defer { close(fd) }
    return try directoryEntries(fd: fd, shown: path)
}

/// Names in the open directory `fd`, without `.` and `..`; `fd` stays open and keeps its offset.
public func directoryEntries(fd: Int32, shown: String) throws(SystemError) -> [[UInt8]] {
    let copy = dup(fd)
    guard copy >= 0, let dir = fdopendir(copy) else {
        let code = Errno.current
        if copy >= 0 { close(copy) }
        throw SystemError("open directory \(shown)", code)
    }
    defer { closedir(dir) }
    rewinddir(dir)
    var names: [[UInt8]] = []
    while true {
        errno = 0
        guard let entry = readdir(dir) else {
            if errno != 0 { throw SystemError("read directory \(shown)") }
            break
        }
        let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
        if name != [UInt8(ascii: ".")] && name != [UInt8(ascii: "."), UInt8(ascii: ".")] { names.append(name) }
    }
    return names
}

/// Calls `body` with `name` as a NUL-terminated C string.
public func withCName<T>(_ name: [UInt8], _ body: (UnsafePointer<CChar>) -> T) -> T {
    (name + [0]).withUnsafeBufferPointer { bytes in
        bytes.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) }
    }
}

/// Creates a fresh directory `<parent>/<prefix>XXXXXX` (mode 0700, `mkdtemp`) that the caller removes.
public func makeTemporaryDirectory(prefix: String = "knit-", in parent: String = "/tmp") throws(SystemError) -> String {
    var template = Array("\(parent)/\(prefix)XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    guard let made else { throw SystemError("create a temporary directory in \(parent)") }
    return String(cString: made)
}

/// A fresh directory (mode 0700, `mkdtemp`) that is removed with everything in it when its owner goes away.
/// Not copyable, so exactly one owner removes it.
public struct TemporaryDirectory: ~Copyable {
    public let path: String

    /// Creates `<parent>/<prefix>XXXXXX`.
    public init(prefix: String = "knit-", in parent: String = "/tmp") throws(SystemError) {
        path = try makeTemporaryDirectory(prefix: prefix, in: parent)
    }

    deinit { try? removeTree(path) }
}
