internal import KnitSystem

#if canImport(Glibc)
    internal import Glibc
#elseif canImport(Darwin)
    internal import Darwin
#endif

/// The few file operations the client needs, on raw syscalls so modes and atomicity are explicit.
enum FileSystem {
    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    static func readFile(_ path: String, limit: Int = 16 << 20) throws(KnitClientError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw KnitClientError(.io, "cannot read \(path): \(Errno.current)") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw KnitClientError(.io, "cannot read \(path): \(Errno.current)")
            }
            if n == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<n])
            guard bytes.count <= limit else { throw KnitClientError(.io, "\(path) is larger than \(limit) bytes") }
        }
    }

    /// Writes `bytes` to `path` with `mode` so that readers see either the old or the new file:
    /// a temporary file in the same directory, fsync, then rename.
    static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t) throws(KnitClientError) {
        let temporary = path + ".tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw KnitClientError(.io, "cannot write \(temporary): \(Errno.current)") }
        var failure: Int32 = 0
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                offset += n
            }
        }
        // The umask may have narrowed `mode` at creation; a mode the caller asked for must hold exactly.
        if failure == 0, fchmod(fd, mode) != 0 { failure = errno }
        if failure == 0, fsync(fd) != 0 { failure = errno }
        close(fd)
        if failure == 0, rename(temporary, path) != 0 { failure = errno }
        if failure != 0 {
            unlink(temporary)
            throw KnitClientError(.io, "cannot write \(path): \(Errno(failure))")
        }
    }

    /// Creates `path` and missing parents with `mode`; an existing directory is fine.
    static func makeDirectories(_ path: String, mode: mode_t) throws(KnitClientError) {
        if KnitSystem.isDirectory(path) { return }
        let parent = parentDirectory(of: path)
        if parent != path, !parent.isEmpty { try makeDirectories(parent, mode: mode) }
        if mkdir(path, mode) != 0, errno != EEXIST {
            throw KnitClientError(.io, "cannot create directory \(path): \(Errno.current)")
        }
    }

    static func parentDirectory(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    static func baseName(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return String(trimmed) }
        return String(trimmed[trimmed.index(after: slash)...])
    }

    static func currentDirectory() throws(KnitClientError) -> String {
        guard let buffer = getcwd(nil, 0) else {
            throw KnitClientError(.io, "cannot determine the current directory: \(Errno.current)")
        }
        defer { free(buffer) }
        return String(cString: buffer)
    }

    static func homeDirectory() -> String {
        if let home = getenv("HOME"), home.pointee != 0 { return String(cString: home) }
        if let entry = getpwuid(getuid()), let dir = entry.pointee.pw_dir { return String(cString: dir) }
        return "/"
    }

    /// `path` made absolute against the current directory, with `.`/`..`/`//` folded lexically.
    static func absolute(_ path: String) throws(KnitClientError) -> String {
        let full = path.hasPrefix("/") ? path : try currentDirectory() + "/" + path
        var parts: [Substring] = []
        for part in full.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { _ = parts.popLast(); continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Searches `start` and each parent for a regular file named `name`; returns its path.
    static func findUpward(_ name: String, from start: String) -> String? {
        var directory = start
        while true {
            let candidate = (directory == "/" ? "" : directory) + "/" + name
            var info = stat()
            if stat(candidate, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG { return candidate }
            if directory == "/" { return nil }
            directory = parentDirectory(of: directory)
        }
    }
}

extension FileSystem {
    /// Removes everything inside directory `path` (names as raw bytes, symlinks not followed); best effort.
    static func removeContents(of path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return }
        removeContents(fd: fd)
        _ = Glibc.close(fd)
    }

    private static func removeContents(fd: Int32) {
        let copy = dup(fd)
        guard copy >= 0, let dir = fdopendir(copy) else {
            if copy >= 0 { _ = Glibc.close(copy) }
            return
        }
        var names: [[CChar]] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                Array(raw.prefix { $0 != 0 }.map { CChar(bitPattern: $0) }) + [0]
            }
            if name != [46, 0] && name != [46, 46, 0] { names.append(name) }
        }
        closedir(dir)
        for name in names {
            if unlinkat(fd, name, 0) == 0 { continue }
            let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard child >= 0 else { continue }
            removeContents(fd: child)
            _ = Glibc.close(child)
            unlinkat(fd, name, AT_REMOVEDIR)
        }
    }
}

/// An output file on raw file descriptors, removed unless renamed into place.
final class OutputFile {
    private var fd: Int32
    private let path: String

    init(creating path: String) throws(KnitClientError) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        self.path = path
        guard fd >= 0 else { throw KnitClientError(.io, "cannot create \(path): \(Errno.current)") }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw KnitClientError(.io, "cannot write \(path): \(Errno.current)")
            }
            offset += n
        }
    }

    func close() throws(KnitClientError) {
        let rc = Glibc.close(fd)
        fd = -1
        guard rc == 0 else { throw KnitClientError(.io, "cannot write \(path): \(Errno.current)") }
    }

    func rename(to destination: String) throws(KnitClientError) {
        guard Glibc.rename(path, destination) == 0 else {
            let code = errno
            remove()
            throw KnitClientError(.io, "cannot rename \(path) to \(destination): \(Errno(code))")
        }
    }

    func remove() {
        if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
        unlink(path)
    }

    deinit { if fd >= 0 { _ = Glibc.close(fd) } }
}
