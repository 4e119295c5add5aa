#if canImport(Glibc)
    internal import Glibc
#endif

/// One thing found under the tree root, handed to the visitor in archive order.
struct TreeNode {
    enum Kind {
        case directory
        case regular
        /// A symlink stored as a link (always without dereference; with it, only when the target is missing).
        case symlink(target: [UInt8])
    }

    var kind: Kind
    /// Path relative to the root, components joined by "/".
    var path: [UInt8]
    /// `fstatat` result (following symlinks when dereferencing).
    var info: stat
    /// The directory holding the node, and its name there: what `openat` needs.
    var parent: Int32
    var name: [UInt8]
}

/// Depth-first, pre-order walk with each directory's names sorted bytewise, so the same tree always yields
/// the same entry order. Fifos, sockets and devices are skipped.
///
/// With `dereference`, symlinks are followed; a directory already on the current path (a link back up the tree)
/// is skipped rather than looped into.
struct TreeWalker {
    var dereference: Bool

    func walk(root: String, _ visit: (TreeNode) throws(ArchiveError) -> Void) throws(ArchiveError) {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw Self.ioError(errno, "cannot open directory", root) }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) != 0 { throw Self.ioError(errno, "cannot stat directory", root) }
        var ancestors = [Self.identity(info)]
        try walkDirectory(fd: fd, path: [], ancestors: &ancestors, visit)
    }

    private static func identity(_ info: stat) -> [UInt64] { [UInt64(info.st_dev), UInt64(info.st_ino)] }

    private func walkDirectory(
        fd: Int32,
        path: [UInt8],
        ancestors: inout [[UInt64]],
        _ visit: (TreeNode) throws(ArchiveError) -> Void
    ) throws(ArchiveError) {
        for name in try Self.sortedNames(fd: fd, path: path) {
            let childPath = path.isEmpty ? name : path + [UInt8(ascii: "/")] + name
            var info = stat()
            var status = withCString(name) { fstatat(fd, $0, &info, dereference ? 0 : AT_SYMLINK_NOFOLLOW) }
            if status != 0 && dereference && (errno == ENOENT || errno == ELOOP) {
                // A dangling (or looping) link cannot be followed; keep it as the link it is.
                status = withCString(name) { fstatat(fd, $0, &info, AT_SYMLINK_NOFOLLOW) }
            }
            if status != 0 {
                let code = errno
                if code == ENOENT { continue }  // removed while we walked
                throw Self.ioError(code, "cannot stat", display(childPath))
            }
            switch info.st_mode & S_IFMT {
            case S_IFREG:
                try visit(TreeNode(kind: .regular, path: childPath, info: info, parent: fd, name: name))
            case S_IFLNK:
                let target = try Self.readLink(fd: fd, name: name, path: childPath)
                try visit(TreeNode(kind: .symlink(target: target), path: childPath, info: info, parent: fd, name: name))
            case S_IFDIR:
                let id = Self.identity(info)
                if ancestors.contains(id) { continue }
                let flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (dereference ? 0 : O_NOFOLLOW)
                let child = withCString(name) { openat(fd, $0, flags) }
                if child < 0 { throw Self.ioError(errno, "cannot open directory", display(childPath)) }
                defer { close(child) }
                try visit(TreeNode(kind: .directory, path: childPath, info: info, parent: fd, name: name))
                ancestors.append(id)
                defer { ancestors.removeLast() }
                try walkDirectory(fd: child, path: childPath, ancestors: &ancestors, visit)
            default:
                continue
            }
        }
    }

    private static func sortedNames(fd: Int32, path: [UInt8]) throws(ArchiveError) -> [[UInt8]] {
        let copy = dup(fd)
        guard copy >= 0, let dir = fdopendir(copy) else {
            let code = errno
            if copy >= 0 { close(copy) }
            throw ioError(code, "cannot read directory", path.isEmpty ? "." : display(path))
        }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw ioError(errno, "cannot read directory", path.isEmpty ? "." : display(path)) }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
            if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            names.append(name)
        }
        return names.sorted { $0.lexicographicallyPrecedes($1) }
    }

    private static func readLink(fd: Int32, name: [UInt8], path: [UInt8]) throws(ArchiveError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = withCString(name) { cName in
            buffer.withUnsafeMutableBufferPointer { out in
                out.withMemoryRebound(to: CChar.self) { readlinkat(fd, cName, $0.baseAddress!, $0.count) }
            }
        }
        if count < 0 { throw ioError(errno, "cannot read symlink", display(path)) }
        return Array(buffer[..<count])
    }

    static func ioError(_ code: Int32, _ what: String, _ path: String) -> ArchiveError {
        ArchiveError(code: .io, message: "archive: \(what) \(path): \(ioReason(code))", path: path, errno: code)
    }
}

/// Size in bytes of all regular files under `directory`: what a push reports its progress against.
///
/// - Parameters:
///   - directory: The tree root.
///   - dereference: Follow symlinks, as
///     ``writeArchive(of:format:dereference:directoryEntries:compressionLevel:progress:write:)``
///     would with the same flag.
///
/// #### Errors
/// ``ArchiveError/Code/io`` when a directory cannot be read.
public func treeSize(of directory: String, dereference: Bool) throws(ArchiveError) -> Int64 {
    var total: Int64 = 0
    try TreeWalker(dereference: dereference).walk(root: directory) { node in
        if case .regular = node.kind { total += Int64(node.info.st_size) }
    }
    return total
}
