import KnitArchive
import KnitSystem
import KnitTestSupport
import Testing

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// A fresh directory under /tmp, removed when the test is done with it.
final class TempDir {
    let path: String

    init(base: String = "/tmp") throws {
        path = try makeTemporaryDirectory(prefix: "knit-archive-test-", in: base)
    }

    deinit { try? removeTree(path) }

    func sub(_ name: String) -> String { path + "/" + name }

    /// Makes a directory (and parents) and returns its path.
    @discardableResult
    func mkdir(_ name: String) throws -> String {
        // An explicit mode: libarchive's disk writer briefly zeroes the process umask (see RoundTripTests).
        try FileManager.default.createDirectory(
            atPath: sub(name),
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o755]
        )
        return sub(name)
    }
}

func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { raw in
        var offset = 0
        while offset < raw.count {
            var word = generator.next()
            let n = min(8, raw.count - offset)
            withUnsafeBytes(of: &word) {
                raw.baseAddress!.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: n)
            }
            offset += n
        }
    }
    return bytes
}

func writeFile(_ path: String, _ bytes: [UInt8], mode: Int = 0o644) throws {
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
        throw TestFailure("cannot create \(path)")
    }
    try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
}

func readFile(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else { throw TestFailure("cannot read \(path)") }
    return Array(data)
}

/// What a tree holds, keyed by relative path: enough to say two trees are the same Data.
enum Node: Equatable, CustomStringConvertible {
    case directory(mode: UInt32)
    case file(mode: UInt32, size: Int, bytes: [UInt8])
    case symlink(target: String)

    var description: String {
        switch self {
        case .directory(let mode): "dir \(String(mode, radix: 8))"
        case .file(let mode, let size, _): "file \(String(mode, radix: 8)) \(size)B"
        case .symlink(let target): "link -> \(target)"
        }
    }
}

func snapshot(_ root: String) throws -> [String: Node] {
    var result: [String: Node] = [:]
    let paths = try FileManager.default.subpathsOfDirectory(atPath: root)
    for relative in paths {
        let full = root + "/" + relative
        var info = stat()
        guard lstat(full, &info) == 0 else { throw TestFailure("lstat \(full)") }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: result[relative] = .directory(mode: info.st_mode & 0o7777)
        case S_IFREG:
            result[relative] = .file(mode: info.st_mode & 0o7777, size: Int(info.st_size), bytes: try readFile(full))
        case S_IFLNK:
            result[relative] = .symlink(target: try FileManager.default.destinationOfSymbolicLink(atPath: full))
        default: throw TestFailure("unexpected file type at \(full)")
        }
    }
    return result
}

func listing(_ path: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: path).sorted()
}

/// Creates an archive of `directory` in memory.
func archive(
    _ directory: String,
    format: ArchiveFormat,
    dereference: Bool = false,
    level: Int? = nil
) throws -> [UInt8] {
    var output: [UInt8] = []
    try writeArchive(of: directory, format: format, dereference: dereference, compressionLevel: level) {
        output.append(contentsOf: $0)
    }
    return output
}

/// Extracts `bytes`, handing them over in `chunk`-sized reads as a network body would arrive.
@discardableResult
func extract(
    _ bytes: [UInt8],
    into directory: String,
    limits: ArchiveLimits = .default,
    chunk: Int = 64 * 1024
) throws(ArchiveError) -> ExtractSummary {
    var offset = 0
    return try extractArchive(into: directory, limits: limits) { buffer in
        let count = min(chunk, buffer.count, bytes.count - offset)
        bytes.withUnsafeBytes { source in
            buffer.baseAddress!.copyMemory(from: source.baseAddress! + offset, byteCount: count)
        }
        offset += count
        return count
    }
}

/// Runs `body` and returns the ArchiveError it threw, or nil.
/// (Any other error is a test failure and comes back as nil.)
func archiveError(_ body: () throws -> Void) -> ArchiveError? {
    do {
        try body()
        return nil
    } catch let error as ArchiveError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

/// The `zstd` program (Debian package zstd) is needed only to make archives libarchive cannot (with a content
/// checksum) and for GNU tar's --zstd; tests that need it pass trivially without it.
let hasZstdCLI = access("/usr/bin/zstd", X_OK) == 0
