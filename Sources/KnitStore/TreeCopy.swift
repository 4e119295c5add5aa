internal import KnitDigest
internal import KnitSystem

#if canImport(Glibc)
    internal import Glibc
#endif

// Copying and fingerprinting Data directories for backup and restore. Names are raw bytes (as in
// FileSystem.swift): a Run may write names that are not UTF-8, and a backup must carry them unchanged.

/// What a tree copy did.
struct TreeCopyCount: Sendable {
    /// Regular files hard-linked to the source (no bytes written).
    var linkedFiles = 0
    /// Regular files whose bytes were written.
    var copiedFiles = 0
    var copiedBytes: Int64 = 0
}

/// The fingerprint of a Data directory: SHA-256 over every entry in byte order of its path (path, type,
/// permission bits, and a file's size and bytes or a link's target), so a renamed, changed, missing or
/// extra entry changes it. Owners and times are left out: they may rightly differ on another machine.
public struct TreeDigest: Codable, Sendable, Equatable {
    public var sha256: String
    public var files: Int
    public var bytes: Int64
}

enum TreeCopy {
    /// Which files of a tree are linked, and what is left out, by path relative to the tree's root.
    struct Policy: Sendable {
        var link: @Sendable (_ relative: [UInt8]) -> Bool
        var skip: @Sendable (_ relative: [UInt8]) -> Bool = { _ in false }
        /// Entries that disappear during the walk (a tree still in use) are passed over instead of failing.
        var tolerateVanished = false
    }

    /// Copies the tree `source` to `target` (which must not exist). Regular files are hard-linked when `link`
    /// and the file system allows it (same file system, link count not exhausted), else copied. Permission
    /// bits and modification times are kept; owners are kept when `owner` is nil (and the process may), else
    /// everything is given to `owner`.
    static func copy(
        _ source: String,
        to target: String,
        link: Bool,
        owner: StoreOwner? = nil,
        count: inout TreeCopyCount
    ) throws(StoreError) {
        let policy = Policy(link: { _ in link })
        try copyEntry(Array(source.utf8), Array(target.utf8), [], policy: policy, owner: owner, count: &count)
    }

    /// ``copy(_:to:link:owner:count:)`` with a per-path ``Policy``.
    static func copy(
        _ source: String,
        to target: String,
        policy: Policy,
        owner: StoreOwner? = nil,
        count: inout TreeCopyCount
    ) throws(StoreError) {
        try copyEntry(Array(source.utf8), Array(target.utf8), [], policy: policy, owner: owner, count: &count)
    }

    private static func copyEntry(
        _ source: [UInt8],
        _ target: [UInt8],
        _ relative: [UInt8],
        policy: Policy,
        owner: StoreOwner?,
        count: inout TreeCopyCount
    ) throws(StoreError) {
        let shown = String(decoding: source, as: UTF8.self)
        var info = stat()
        guard withCName(source, { lstat($0, &info) }) == 0 else {
            if policy.tolerateVanished, errno == ENOENT { return }
            throw FileSystem.error("inspect \(shown)")
        }
        let link = policy.link(relative)
        let mode = info.st_mode & 0o7777
        switch info.st_mode & S_IFMT {
        case S_IFDIR:
            guard withCName(target, { mkdir($0, 0o700) }) == 0 else {
                throw FileSystem.error("create directory \(String(decoding: target, as: UTF8.self))")
            }
            let names: [[UInt8]]
            do { names = try entries(source, shown: shown) } catch
                where policy.tolerateVanished && withCName(source, { access($0, F_OK) }) != 0
            {
                names = []
            }
            for name in names {
                let child = relative.isEmpty ? name : relative + [0x2F] + name
                if policy.skip(child) { continue }
                try copyEntry(
                    source + [0x2F] + name,
                    target + [0x2F] + name,
                    child,
                    policy: policy,
                    owner: owner,
                    count: &count
                )
            }
            try finish(target, info: info, mode: mode, owner: owner)
        case S_IFREG:
            if link, withCName(source, { s in withCName(target) { t in linkat(AT_FDCWD, s, AT_FDCWD, t, 0) } }) == 0 {
                count.linkedFiles += 1
                return
            }
            if link, policy.tolerateVanished, errno == ENOENT { return }
            if link, errno != EXDEV, errno != EMLINK, errno != EPERM {
                throw FileSystem.error("link \(shown)")
            }
            do {
                try copyFile(source, target, mode: mode, shown: shown)
            } catch  where policy.tolerateVanished {
                guard withCName(source, { access($0, F_OK) }) != 0 else { throw error }
                _ = withCName(target) { unlink($0) }
                return
            }
            count.copiedFiles += 1
            count.copiedBytes += Int64(info.st_size)
            try finish(target, info: info, mode: mode, owner: owner)
        case S_IFLNK:
            var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
            let length = withCName(source) { path in
                buffer.withUnsafeMutableBufferPointer { readlink(path, $0.baseAddress!, $0.count - 1) }
            }
            guard length >= 0 else { throw FileSystem.error("read link \(shown)") }
            let destination = Array(buffer[..<length])
            guard withCName(destination, { d in withCName(target) { symlink(d, $0) } }) == 0 else {
                throw FileSystem.error("create link \(String(decoding: target, as: UTF8.self))")
            }
            try finish(target, info: info, mode: nil, owner: owner)
        default:
            // The store lets no Run leave a device, fifo or socket behind (the scheduler's sanitizer removes them).
            throw StoreError(.invalid, "store: \(shown) is neither a file, a directory nor a symlink")
        }
    }

    /// The names in the directory at the byte path `path`.
    private static func entries(_ path: [UInt8], shown: String) throws(StoreError) -> [[UInt8]] {
        let fd = withCName(path) { open($0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else { throw FileSystem.error("open directory \(shown)") }
        defer { close(fd) }
        do { return try directoryEntries(fd: fd, shown: shown) } catch { throw FileSystem.error(error) }
    }

    private static func copyFile(_ source: [UInt8], _ target: [UInt8], mode: mode_t, shown: String)
        throws(StoreError)
    {
        let input = withCName(source) { open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        guard input >= 0 else { throw FileSystem.error("open \(shown)") }
        defer { close(input) }
        let output = withCName(target) { open($0, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
        guard output >= 0 else { throw FileSystem.error("create \(String(decoding: target, as: UTF8.self))") }
        defer { close(output) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let got = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if got < 0 {
                if errno == EINTR { continue }
                throw FileSystem.error("read \(shown)")
            }
            if got == 0 { return }
            var written = 0
            while written < got {
                let put = buffer.withUnsafeBytes { write(output, $0.baseAddress! + written, got - written) }
                if put < 0 {
                    if errno == EINTR { continue }
                    throw FileSystem.error("write \(String(decoding: target, as: UTF8.self))")
                }
                written += put
            }
        }
    }

    /// Owner, permission bits (not for symlinks, which have none of their own) and times, in that order: a
    /// chown clears set-id bits.
    private static func finish(_ target: [UInt8], info: stat, mode: mode_t?, owner: StoreOwner?) throws(StoreError) {
        let shown = String(decoding: target, as: UTF8.self)
        let uid = owner?.uid ?? info.st_uid
        let gid = owner?.gid ?? info.st_gid
        if withCName(target, { lchown($0, uid, gid) }) != 0, errno != EPERM || owner != nil {
            throw FileSystem.error("hand \(shown) to uid \(uid)")
        }
        if let mode, withCName(target, { chmod($0, mode) }) != 0 { throw FileSystem.error("set the mode of \(shown)") }
        let times = [info.st_atim, info.st_mtim]
        let set = times.withUnsafeBufferPointer { times in
            withCName(target) { utimensat(AT_FDCWD, $0, times.baseAddress, AT_SYMLINK_NOFOLLOW) }
        }
        if set != 0 { throw FileSystem.error("set the times of \(shown)") }
    }

    /// The SHA-256 (hex) of the regular file at `path`.
    static func fileSHA256(_ path: String) throws(StoreError) -> String {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystem.error("open \(path)") }
        defer { close(fd) }
        var stream = SHA256Stream()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if got < 0 {
                if errno == EINTR { continue }
                throw FileSystem.error("read \(path)")
            }
            if got == 0 { return stream.finalizeHex() }
            buffer.withUnsafeBytes { stream.update(UnsafeRawBufferPointer(rebasing: $0[..<got])) }
        }
    }

    /// The ``TreeDigest`` of the tree at `path`.
    static func digest(_ path: String) throws(StoreError) -> TreeDigest {
        var stream = SHA256Stream()
        var files = 0
        var bytes: Int64 = 0
        try digestEntry(Array(path.utf8), relative: [], stream: &stream, files: &files, bytes: &bytes)
        return TreeDigest(sha256: stream.finalizeHex(), files: files, bytes: bytes)
    }

    private static func digestEntry(
        _ path: [UInt8],
        relative: [UInt8],
        stream: inout SHA256Stream,
        files: inout Int,
        bytes: inout Int64
    ) throws(StoreError) {
        let shown = String(decoding: path, as: UTF8.self)
        var info = stat()
        guard withCName(path, { lstat($0, &info) }) == 0 else { throw FileSystem.error("inspect \(shown)") }
        func feed(_ part: [UInt8], _ stream: inout SHA256Stream) { part.withUnsafeBytes { stream.update($0) } }
        let kind: UInt8
        switch info.st_mode & S_IFMT {
        case S_IFDIR: kind = UInt8(ascii: "d")
        case S_IFREG: kind = UInt8(ascii: "f")
        case S_IFLNK: kind = UInt8(ascii: "l")
        default: kind = UInt8(ascii: "?")
        }
        feed(relative + [0, kind] + Array(String(info.st_mode & 0o7777, radix: 8).utf8) + [0], &stream)
        switch kind {
        case UInt8(ascii: "d"):
            for name in try entries(path, shown: shown).sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                let child = relative.isEmpty ? name : relative + [0x2F] + name
                try digestEntry(path + [0x2F] + name, relative: child, stream: &stream, files: &files, bytes: &bytes)
            }
        case UInt8(ascii: "f"):
            files += 1
            feed(Array(String(info.st_size).utf8) + [0], &stream)
            let fd = withCName(path) { open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
            guard fd >= 0 else { throw FileSystem.error("open \(shown)") }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if got < 0 {
                    if errno == EINTR { continue }
                    throw FileSystem.error("read \(shown)")
                }
                if got == 0 { break }
                bytes += Int64(got)
                buffer.withUnsafeBytes { stream.update(UnsafeRawBufferPointer(rebasing: $0[..<got])) }
            }
        case UInt8(ascii: "l"):
            var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
            let length = withCName(path) { link in
                buffer.withUnsafeMutableBufferPointer { readlink(link, $0.baseAddress!, $0.count - 1) }
            }
            guard length >= 0 else { throw FileSystem.error("read link \(shown)") }
            feed(Array(buffer[..<length]) + [0], &stream)
        default:
            break
        }
    }
}
