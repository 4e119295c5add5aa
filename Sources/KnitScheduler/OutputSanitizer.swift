internal import Glibc
internal import KnitCore
internal import KnitSystem

/// Makes what a Run wrote as safe to keep as an upload is, once its container has ended.
///
/// A container runs as root and writes straight into its output directories on the host. Left alone it
/// can leave a setuid-root binary, a world-writable device node, a fifo, or a symlink into the host
/// (`/etc/shadow`) in the store, where the instance's user (knitd) and anyone pulling the Data meet them.
/// Uploads refuse all of these, so Run outputs get the same treatment here:
/// * setuid and setgid bits are cleared (files and directories);
/// * device nodes, fifos and sockets are removed;
/// * symlinks whose target leaves the directory are removed: absolute targets, and relative ones that climb
///   out, resolved through the other symlinks of the tree the way the kernel would;
/// * everything is handed to ``owner`` (the store's owner, so knitd can delete it later).
///
/// The walk never follows a symlink (`openat`/`fstatat` with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`) and keeps
/// names as raw bytes, so names that are not UTF-8 are handled like any other. It holds two descriptors
/// however deep the tree is (it climbs back with `..`, checking device and inode), so a Run cannot exhaust
/// the scheduler's descriptors with a deep tree. Each change is reported as a ``Change``; the driver writes
/// them into the Run's log.
public struct OutputSanitizer: Sendable {
    /// Who gets every entry; nil keeps the owners the container left.
    public var owner: (uid: UInt32, gid: UInt32)?

    public init(owner: (uid: UInt32, gid: UInt32)?) {
        self.owner = owner
    }

    /// One thing the sanitizer changed, with the entry's path as the Run saw it (`/out/model/x`).
    public struct Change: Sendable, Equatable, CustomStringConvertible {
        public enum Kind: Sendable, Equatable {
            case removedDevice, removedFifo, removedSocket
            case removedSymlink(target: [UInt8])
            case clearedModeBits(from: UInt32, to: UInt32)
        }

        public var kind: Kind
        /// Raw bytes of the path (the mount path of the output, then the entry's names).
        public var path: [UInt8]

        /// What the Run's log says about it.
        public var description: String {
            let shown = Self.printable(path)
            switch kind {
            case .removedDevice: return "knit: removed device node \(shown) from the output"
            case .removedFifo: return "knit: removed fifo \(shown) from the output"
            case .removedSocket: return "knit: removed socket \(shown) from the output"
            case .removedSymlink(let target):
                return "knit: removed symlink \(shown) -> \(Self.printable(target)) from the output: "
                    + "it leads outside the output"
            case .clearedModeBits(let from, let to):
                return
                    "knit: cleared the setuid/setgid bits of \(shown) (mode \(Self.octal(from)) -> \(Self.octal(to)))"
            }
        }

        /// Bytes as text for one log line: invalid UTF-8 and control characters are escaped as `\xNN`.
        static func printable(_ bytes: [UInt8]) -> String {
            var text = ""
            var index = 0
            let decoded = String(validating: bytes, as: UTF8.self)
            if let decoded, !decoded.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
                return decoded
            }
            while index < bytes.count {
                let byte = bytes[index]
                if byte >= 0x20 && byte < 0x7f {
                    text.unicodeScalars.append(Unicode.Scalar(byte))
                } else {
                    text += "\\x" + String(byte, radix: 16).uppercased().leftPadded(to: 2)
                }
                index += 1
            }
            return text
        }

        static func octal(_ mode: UInt32) -> String { String(mode & 0o7777, radix: 8).leftPadded(to: 4) }
    }

    /// What one call did.
    public struct Report: Sendable, Equatable {
        public var changes: [Change] = []
        /// Entries whose owner was changed.
        public var chowned = 0
        /// Failures; when not empty, some entry may not be clean.
        public var problems: [String] = []
        /// Sum of the sizes of the regular files seen (links not followed): what the tree weighs in its owner's
        /// usage, measured on the walk that checks it so the store need not walk it again.
        public var regularFileBytes: Int64 = 0

        public init() {}
    }

    /// Sanitizes the tree at `directory` (the directory itself included); `shownAs` is its path inside the
    /// container, which prefixes the paths of the changes. A missing directory is nothing to do.
    public func sanitize(directory: String, shownAs: String) -> Report {
        var report = Report()
        let rootFD = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard rootFD >= 0 else {
            if errno != ENOENT { report.problems.append("cannot open \(directory): \(Errno.current)") }
            return report
        }
        defer { close(rootFD) }
        let base = Array(shownAs.utf8)
        var links: [[UInt8]: [UInt8]] = [:]
        walk(rootFD: rootFD, base: base, links: &links, report: &report)
        removeEscapingLinks(rootFD: rootFD, base: base, links: links, report: &report)
        return report
    }

    // MARK: - Walk

    private struct Frame {
        var names: [[UInt8]]
        var next = 0
        /// Components from the root to this directory.
        var path: [[UInt8]]
        var device: UInt
        var inode: UInt
    }

    private func walk(rootFD: Int32, base: [UInt8], links: inout [[UInt8]: [UInt8]], report: inout Report) {
        var fd = dup(rootFD)
        guard fd >= 0 else {
            report.problems.append("dup: \(Errno.current)")
            return
        }
        defer { close(fd) }
        guard let rootInfo = fixDirectory(fd, shown: base, report: &report) else { return }
        var stack = [
            Frame(
                names: names(in: fd, report: &report),
                path: [],
                device: UInt(rootInfo.st_dev),
                inode: UInt(rootInfo.st_ino)
            )
        ]
        while let top = stack.indices.last {
            guard stack[top].next < stack[top].names.count else {
                stack.removeLast()
                guard let parent = stack.last else { break }
                // Back up one level through "..": the container has ended, nothing moves the tree any more,
                // and the check below would notice if something had.
                let up = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                var info = stat()
                guard up >= 0, fstat(up, &info) == 0, UInt(info.st_dev) == parent.device,
                    UInt(info.st_ino) == parent.inode
                else {
                    if up >= 0 { close(up) }
                    report.problems.append("the tree changed while it was being checked")
                    return
                }
                close(fd)
                fd = up
                continue
            }
            let name = stack[top].names[stack[top].next]
            stack[top].next += 1
            let components = stack[top].path + [name]
            let shown = Self.join(base, components)
            var info = stat()
            if withCName(name, { fstatat(fd, $0, &info, AT_SYMLINK_NOFOLLOW) }) != 0 {
                if errno != ENOENT {
                    report.problems.append("cannot inspect \(Change.printable(shown)): \(Errno.current)")
                }
                continue
            }
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                let child = withCName(name) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
                guard child >= 0 else {
                    report.problems.append("cannot open \(Change.printable(shown)): \(Errno.current)")
                    continue
                }
                guard let childInfo = fixDirectory(child, shown: shown, report: &report) else {
                    close(child)
                    continue
                }
                let childNames = names(in: child, report: &report)
                close(fd)
                fd = child
                stack.append(
                    Frame(
                        names: childNames,
                        path: components,
                        device: UInt(childInfo.st_dev),
                        inode: UInt(childInfo.st_ino)
                    )
                )
            case S_IFREG:
                report.regularFileBytes += Int64(info.st_size)
                fixFile(in: fd, name: name, info: info, shown: shown, report: &report)
            case S_IFLNK:
                links[Self.join([], components)] = readLink(in: fd, name: name)
                chown(in: fd, name: name, info: info, shown: shown, report: &report)
            default:
                let kind: Change.Kind
                switch info.st_mode & S_IFMT {
                case S_IFIFO: kind = .removedFifo
                case S_IFSOCK: kind = .removedSocket
                default: kind = .removedDevice
                }
                if withCName(name, { unlinkat(fd, $0, 0) }) == 0 || errno == ENOENT {
                    report.changes.append(Change(kind: kind, path: shown))
                } else {
                    report.problems.append("cannot remove \(Change.printable(shown)): \(Errno.current)")
                }
            }
        }
    }

    /// Clears the s-bits of the open directory `fd` and hands it to the owner; its stat, or nil on failure.
    private func fixDirectory(_ fd: Int32, shown: [UInt8], report: inout Report) -> stat? {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            report.problems.append("cannot inspect \(Change.printable(shown)): \(Errno.current)")
            return nil
        }
        clearBits(fd, info: info, shown: shown, report: &report)
        if let owner, info.st_uid != owner.uid || info.st_gid != owner.gid {
            if fchown(fd, owner.uid, owner.gid) == 0 {
                report.chowned += 1
            } else {
                report.problems.append("cannot hand over \(Change.printable(shown)): \(Errno.current)")
            }
        }
        return info
    }

    private func fixFile(in dir: Int32, name: [UInt8], info: stat, shown: [UInt8], report: inout Report) {
        if info.st_mode & (S_ISUID | S_ISGID) != 0 {
            // fchmodat cannot refuse to follow a symlink on Linux, so open the file itself (O_NOFOLLOW;
            // O_NONBLOCK and O_NOCTTY in case it was swapped for something else) and check it is the same one.
            let fd = withCName(name) { openat(dir, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC) }
            var now = stat()
            if fd >= 0, fstat(fd, &now) == 0, now.st_ino == info.st_ino, now.st_dev == info.st_dev {
                clearBits(fd, info: now, shown: shown, report: &report)
            } else {
                report.problems.append("cannot open \(Change.printable(shown)): \(Errno.current)")
            }
            if fd >= 0 { close(fd) }
        }
        chown(in: dir, name: name, info: info, shown: shown, report: &report)
    }

    private func clearBits(_ fd: Int32, info: stat, shown: [UInt8], report: inout Report) {
        let mode = UInt32(info.st_mode) & 0o7777
        guard mode & UInt32(S_ISUID | S_ISGID) != 0 else { return }
        let cleared = mode & ~UInt32(S_ISUID | S_ISGID)
        if fchmod(fd, mode_t(cleared)) == 0 {
            report.changes.append(Change(kind: .clearedModeBits(from: mode, to: cleared), path: shown))
        } else {
            report.problems.append("cannot clear the mode bits of \(Change.printable(shown)): \(Errno.current)")
        }
    }

    /// `lchown` of one entry (never through a symlink).
    private func chown(in dir: Int32, name: [UInt8], info: stat, shown: [UInt8], report: inout Report) {
        guard let owner, info.st_uid != owner.uid || info.st_gid != owner.gid else { return }
        if withCName(name, { fchownat(dir, $0, owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW) }) == 0 {
            report.chowned += 1
        } else if errno != ENOENT {
            report.problems.append("cannot hand over \(Change.printable(shown)): \(Errno.current)")
        }
    }

    // MARK: - Symlinks

    private func removeEscapingLinks(
        rootFD: Int32,
        base: [UInt8],
        links: [[UInt8]: [UInt8]],
        report: inout Report
    ) {
        // The rule uploads are held to (KnitCore's SymlinkContainment). Removing one link changes what the
        // others resolve through, so look again until nothing escapes.
        var remaining = SymlinkContainment(links: links)
        while true {
            let escaping = remaining.escaping()
            guard !escaping.isEmpty else { return }
            for (path, target) in escaping.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
                remaining.remove(linkAt: path)
                let shown = base + [UInt8(ascii: "/")] + path
                if unlink(path, under: rootFD) {
                    report.changes.append(Change(kind: .removedSymlink(target: target), path: shown))
                } else {
                    report.problems.append("cannot remove \(Change.printable(shown)): \(Errno.current)")
                }
            }
        }
    }

    /// Removes the entry at `path` (components joined by "/") below `rootFD`, opening one directory after the
    /// other rather than handing the kernel the whole path, which may be longer than PATH_MAX. True when it
    /// is gone.
    private func unlink(_ path: [UInt8], under rootFD: Int32) -> Bool {
        let components = path.split(separator: UInt8(ascii: "/")).map(Array.init)
        guard let last = components.last else { return false }
        var fd = dup(rootFD)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        for component in components.dropLast() {
            let next = withCName(component) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard next >= 0 else { return false }
            close(fd)
            fd = next
        }
        return withCName(last, { unlinkat(fd, $0, 0) }) == 0 || errno == ENOENT
    }

    // MARK: - Bytes

    private static func join(_ base: [UInt8], _ components: [[UInt8]]) -> [UInt8] {
        var path = base
        for component in components {
            if !path.isEmpty { path.append(UInt8(ascii: "/")) }
            path += component
        }
        return path
    }

    private func readLink(in dir: Int32, name: [UInt8]) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = withCName(name) { cName in
            buffer.withUnsafeMutableBufferPointer { readlinkat(dir, cName, $0.baseAddress!, $0.count) }
        }
        // Unreadable counts as absolute: removed rather than trusted.
        return count > 0 ? Array(buffer[..<count]) : [UInt8(ascii: "/")]
    }

    /// Names in the open directory `fd` (without `.` and `..`), read to the end; `fd` stays open.
    private func names(in fd: Int32, report: inout Report) -> [[UInt8]] {
        let copy = dup(fd)
        guard copy >= 0, let dir = fdopendir(copy) else {
            if copy >= 0 { close(copy) }
            report.problems.append("cannot list a directory: \(Errno.current)")
            return []
        }
        defer { closedir(dir) }
        rewinddir(dir)
        var found: [[UInt8]] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [UInt8(ascii: ".")] && name != [UInt8(ascii: "."), UInt8(ascii: ".")] { found.append(name) }
        }
        return found
    }

    private func withCName<T>(_ name: [UInt8], _ body: (UnsafePointer<CChar>) -> T) -> T {
        (name + [0]).withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) }
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
