public import Glibc
public import KnitSystem

// File helpers shared by the test targets. Test code may stop at the first surprise: these trap (or answer
// empty) instead of throwing, so a test reads as what it checks.

extension TemporaryDirectory {
    /// A fresh directory under /tmp for one test, removed with its content when dropped.
    public init() {
        do { try self.init(prefix: "knit-test-") } catch { preconditionFailure("\(error)") }
    }

    /// The path of `name` inside the directory.
    public func file(_ name: String) -> String { path + "/" + name }

    /// Writes `text` to `name` inside the directory.
    public func write(_ name: String, _ text: String, mode: mode_t = 0o644) {
        writeFile(file(name), bytes: Array(text.utf8), mode: mode)
    }

    /// Makes the directory `name` (one level) inside the directory.
    public func mkdir(_ name: String) { _ = Glibc.mkdir(file(name), 0o755) }

    /// The text of `name`, or nil when it cannot be read.
    public func read(_ name: String) -> String? { readText(file(name)) }
}

/// A fresh directory `/tmp/<prefix>XXXXXX` the caller removes (for a test that hands it to a server).
public func scratchDirectory(_ prefix: String = "knit-test-") -> String {
    do { return try makeTemporaryDirectory(prefix: prefix) } catch { preconditionFailure("\(error)") }
}

/// Whether anything (even a dangling symlink) is at `path`.
public func pathExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

/// Writes `bytes` to `path` (created or truncated) with `mode`.
public func writeFile(_ path: String, bytes: [UInt8], mode: mode_t = 0o644) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    precondition(fd >= 0, "cannot create \(path): \(Errno.current)")
    defer { close(fd) }
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
        precondition(written > 0 || errno == EINTR, "cannot write \(path): \(Errno.current)")
        offset += max(written, 0)
    }
    _ = fchmod(fd, mode)
}

/// Writes `text` to `path` (created or truncated).
public func writeFile(_ path: String, _ text: String, mode: mode_t = 0o644) {
    writeFile(path, bytes: Array(text.utf8), mode: mode)
}

/// The bytes of `path`, or empty when it cannot be read.
public func readFileBytes(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { break }
        bytes += buffer[0..<count]
    }
    return bytes
}

/// The text of `path`, or nil when it cannot be opened.
public func readText(_ path: String) -> String? {
    guard access(path, R_OK) == 0 else { return nil }
    return String(decoding: readFileBytes(path), as: UTF8.self)
}

/// The names in directory `path`, sorted; empty when it cannot be read.
public func listDirectory(_ path: String) -> [String] {
    guard let names = try? directoryEntries(path) else { return [] }
    return names.map { String(decoding: $0, as: UTF8.self) }.sorted()
}

/// A failure of the test's own set-up, not of the code under test.
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
