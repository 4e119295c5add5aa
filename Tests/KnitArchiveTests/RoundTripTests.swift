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

/// A tree with every kind of thing Data may hold.
private func makeSampleTree(_ root: String) throws -> Int64 {
    let fm = FileManager.default
    // Modes given, not left to the umask: libarchive's disk writer briefly sets the process umask to 0 to
    // read it, and other tests extract archives in this process at the same time.
    try fm.createDirectory(atPath: root + "/a/b/c", withIntermediateDirectories: true, attributes: directoryMode)
    try fm.createDirectory(atPath: root + "/empty-dir", withIntermediateDirectories: true, attributes: directoryMode)
    try writeFile(root + "/a/b/c/deep.txt", Array("deep\n".utf8))
    try writeFile(root + "/a/top.txt", Array("top\n".utf8), mode: 0o600)
    try writeFile(root + "/empty.txt", [])
    try writeFile(root + "/データ-ü.txt", Array("unicode name\n".utf8))
    try writeFile(root + "/run.sh", Array("#!/bin/sh\necho hi\n".utf8), mode: 0o755)
    try writeFile(root + "/big.bin", randomBytes(5 * 1024 * 1024 + 123))
    try fm.createSymbolicLink(atPath: root + "/link-to-b", withDestinationPath: "a/b")
    try fm.createSymbolicLink(atPath: root + "/a/b/c/up-to-empty", withDestinationPath: "../../../empty.txt")
    try fm.createSymbolicLink(atPath: root + "/self", withDestinationPath: ".")
    return 5 + 4 + 0 + 13 + 18 + 5 * 1024 * 1024 + 123
}

private var directoryMode: [FileAttributeKey: Any] { [.posixPermissions: 0o755] }

@Suite("round trip")
struct RoundTripTests {
    @Test("a tree survives create + extract unchanged", arguments: ArchiveFormat.allCases)
    func roundTrip(format: ArchiveFormat) throws {
        let temp = try TempDir()
        let source = try temp.mkdir("source")
        let contentBytes = try makeSampleTree(source)
        let bytes = try archive(source, format: format)
        let target = try temp.mkdir("target")
        let summary = try extract(bytes, into: target)

        let expected = try snapshot(source)
        let actual = try snapshot(target)
        #expect(actual.keys.sorted() == expected.keys.sorted())
        for (path, node) in expected {
            #expect(actual[path] == node, "\(path): \(actual[path].map(\.description) ?? "missing") != \(node)")
        }
        #expect(actual["run.sh"] == .file(mode: 0o755, size: 18, bytes: Array("#!/bin/sh\necho hi\n".utf8)))
        #expect(actual["link-to-b"] == .symlink(target: "a/b"))
        #expect(actual["empty-dir"] == .directory(mode: 0o755))
        #expect(
            summary == ExtractSummary(entries: 13, regularFiles: 6, directories: 4, symlinks: 3, bytes: contentBytes)
        )
        #expect(try treeSize(of: source, dereference: false) == contentBytes)
    }

    @Test("entries are relative, without ./, in sorted depth-first order")
    func entryOrder() throws {
        let temp = try TempDir()
        let source = try temp.mkdir("source")
        _ = try makeSampleTree(source)
        let names = try ArchiveBuilder.entryNames(of: try archive(source, format: .tar))
        #expect(
            names == [
                "a/", "a/b/", "a/b/c/", "a/b/c/deep.txt", "a/b/c/up-to-empty", "a/top.txt", "big.bin", "empty-dir/",
                "empty.txt", "link-to-b", "run.sh", "self", "データ-ü.txt",
            ]
        )
        // Same tree, same bytes: gzip carries no timestamp and the order is fixed.
        #expect(try archive(source, format: .tarGzip) == archive(source, format: .tarGzip))
    }

    @Test("an empty directory is a valid archive with no entries", arguments: ArchiveFormat.allCases)
    func emptyTree(format: ArchiveFormat) throws {
        let temp = try TempDir()
        let source = try temp.mkdir("source")
        let bytes = try archive(source, format: format)
        #expect(!bytes.isEmpty)
        let target = try temp.mkdir("target")
        #expect(try extract(bytes, into: target) == ExtractSummary())
        #expect(try listing(target).isEmpty)
    }

    @Test("mtimes are kept to the second")
    func mtimes() throws {
        let temp = try TempDir()
        let source = try temp.mkdir("source")
        try writeFile(source + "/f", [1, 2, 3])
        try temp.mkdir("source/d")
        let past = Date(timeIntervalSince1970: 1_500_000_000)
        try FileManager.default.setAttributes([.modificationDate: past], ofItemAtPath: source + "/f")
        try FileManager.default.setAttributes([.modificationDate: past], ofItemAtPath: source + "/d")
        let target = try temp.mkdir("target")
        try extract(try archive(source, format: .tarZstd), into: target)
        for name in ["f", "d"] {
            var info = stat()
            #expect(lstat(target + "/" + name, &info) == 0)
            #expect(info.st_mtim.tv_sec == 1_500_000_000)
        }
    }

    @Test("dereference stores what links point at, skips loops, keeps dangling links")
    func dereference() throws {
        let temp = try TempDir()
        let outside = try temp.mkdir("outside")
        try writeFile(outside + "/data.csv", Array("x,y\n".utf8), mode: 0o640)
        let source = try temp.mkdir("source")
        try writeFile(source + "/own.txt", [9])
        let fm = FileManager.default
        try fm.createSymbolicLink(atPath: source + "/ext-dir", withDestinationPath: outside)
        try fm.createSymbolicLink(atPath: source + "/ext-file", withDestinationPath: outside + "/data.csv")
        try fm.createSymbolicLink(atPath: source + "/loop", withDestinationPath: ".")
        try fm.createSymbolicLink(atPath: source + "/dangling", withDestinationPath: "nowhere")

        #expect(try treeSize(of: source, dereference: true) == 1 + 4 + 4)
        #expect(try treeSize(of: source, dereference: false) == 1)
        let target = try temp.mkdir("target")
        try extract(try archive(source, format: .tarGzip, dereference: true), into: target)
        let tree = try snapshot(target)
        #expect(tree["ext-dir"] == .directory(mode: 0o755))
        #expect(tree["ext-dir/data.csv"] == .file(mode: 0o640, size: 4, bytes: Array("x,y\n".utf8)))
        #expect(tree["ext-file"] == .file(mode: 0o640, size: 4, bytes: Array("x,y\n".utf8)))
        #expect(tree["dangling"] == .symlink(target: "nowhere"))
        #expect(tree["loop"] == nil)
        #expect(tree.count == 5)
    }

    @Test("fifos and sockets in the source tree are skipped")
    func skipsSpecialFiles() throws {
        let temp = try TempDir()
        let source = try temp.mkdir("source")
        try writeFile(source + "/kept", [1])
        #expect(mkfifo(source + "/pipe", 0o644) == 0)
        let names = try ArchiveBuilder.entryNames(of: try archive(source, format: .tar))
        #expect(names == ["kept"])
    }

    @Test("hard links to an extracted file, ./ prefixes, setuid bits, owner access")
    func acceptedOddities() throws {
        let temp = try TempDir()
        let bytes = try ArchiveBuilder(
            format: .tar,
            entries: [
                .directory("./"),
                .directory("./d"),
                .file("./d/f", [1, 2, 3], mode: 0o4755),
                .hardlink("d/g", target: "./d/f"),
                .symlink("here", target: "."),
                .directory("locked", mode: 0o555),
                .file("locked/unreadable", [7], mode: 0o000),
            ]
        ).build()
        let target = try temp.mkdir("target")
        let summary = try extract(bytes, into: target)
        #expect(summary == ExtractSummary(entries: 6, regularFiles: 3, directories: 2, symlinks: 1, bytes: 4))
        let tree = try snapshot(target)
        #expect(tree["d/f"] == .file(mode: 0o755, size: 3, bytes: [1, 2, 3]))
        #expect(tree["d/g"] == .file(mode: 0o755, size: 3, bytes: [1, 2, 3]))
        #expect(tree["here"] == .symlink(target: "."))
        // The owner keeps rwx on directories and read on files, so the Data can be served and deleted.
        #expect(tree["locked"] == .directory(mode: 0o755))
        #expect(tree["locked/unreadable"] == .file(mode: 0o400, size: 1, bytes: [7]))
        var f = stat(), g = stat()
        #expect(stat(target + "/d/f", &f) == 0 && stat(target + "/d/g", &g) == 0 && f.st_ino == g.st_ino)
    }

    @Test(
        "thousands of small files and a few large ones come back byte for byte, modes and mtimes kept",
        arguments: [ArchiveFormat.tar, .tarZstd]
    )
    func manySmallFiles(format: ArchiveFormat) throws {
        let temp = try TempDir()
        let source = try temp.mkdir("source")
        let modes: [Int] = [0o644, 0o600, 0o755, 0o640]
        for directory in 0..<30 {
            let path = try temp.mkdir("source/d\(directory)")
            for index in 0..<100 {
                let file = path + "/f\(index)"
                try writeFile(file, randomBytes(1 + (directory * 100 + index) % 2048), mode: modes[index % 4])
                try setMtime(file, seconds: 1_400_000_000 + directory * 1000 + index)
            }
        }
        for index in 0..<3 { try writeFile(source + "/large\(index).bin", randomBytes((3 << 20) + 17 * index)) }
        try FileManager.default.createSymbolicLink(atPath: source + "/d0/up", withDestinationPath: "../large0.bin")
        let target = try temp.mkdir("target")
        let summary = try extract(try archive(source, format: format), into: target)
        #expect(summary.regularFiles == 3003 && summary.directories == 30 && summary.symlinks == 1)
        #expect(try snapshot(target) == snapshot(source))
        for (directory, index) in [(0, 0), (7, 42), (29, 99)] {
            var info = stat()
            #expect(lstat(target + "/d\(directory)/f\(index)", &info) == 0)
            #expect(info.st_mtim.tv_sec == 1_400_000_000 + directory * 1000 + index)
        }
    }

    @Test("a later entry replaces an earlier symlink by a symlink, and a file by a file")
    func replacements() throws {
        let temp = try TempDir()
        let bytes = try ArchiveBuilder(
            format: .tar,
            entries: [
                .directory("sub"),
                .symlink("l", target: "sub"),
                .symlink("l", target: "f"),
                .file("f", [1]),
                .file("f", [2, 3]),
                .file("implicit/parent/g", [4]),
            ]
        ).build()
        let target = try temp.mkdir("target")
        try extract(bytes, into: target)
        let tree = try snapshot(target)
        #expect(tree["l"] == .symlink(target: "f"))
        #expect(tree["f"] == .file(mode: 0o644, size: 2, bytes: [2, 3]))
        #expect(tree["implicit/parent/g"] == .file(mode: 0o644, size: 1, bytes: [4]))
    }

    @Test("progress reports the running total of file bytes")
    func progress() throws {
        let temp = try TempDir()
        let source = try temp.mkdir("source")
        try writeFile(source + "/a", randomBytes(3 * 1024 * 1024))
        try writeFile(source + "/b", randomBytes(10))
        var reports: [Int64] = []
        try writeArchive(of: source, format: .tarZstd, progress: { reports.append($0) }) { _ in }
        #expect(reports.last == Int64(3 * 1024 * 1024 + 10))
        #expect(reports == reports.sorted())
    }

    @Test("a throwing write closure surfaces as writeFailed with its error")
    func writeFailure() throws {
        struct Gone: Error {}
        let temp = try TempDir()
        let source = try temp.mkdir("source")
        try writeFile(source + "/a", randomBytes(4 * 1024 * 1024))
        var calls = 0
        let error = archiveError {
            try writeArchive(of: source, format: .tar) { _ in
                calls += 1
                if calls == 2 { throw Gone() }
            }
        }
        #expect(error?.code == .writeFailed)
        #expect(error?.underlying is Gone)
        #expect(calls == 2)
    }

    @Test("a missing source directory is an io error")
    func missingSource() throws {
        let error = archiveError { try writeArchive(of: "/nonexistent/knit", format: .tar) { _ in } }
        #expect(error?.code == .io)
        #expect(error?.message.contains("/nonexistent/knit") == true)
    }
}

@Suite("content types")
struct FormatTests {
    @Test func contentTypes() {
        for format in ArchiveFormat.allCases {
            #expect(ArchiveFormat(contentType: format.contentType) == format)
        }
        #expect(ArchiveFormat.tarGzip.contentType == "application/tar+gzip")
        #expect(ArchiveFormat(contentType: "application/gzip") == .tarGzip)
        #expect(ArchiveFormat(contentType: "application/zstd") == .tarZstd)
        #expect(ArchiveFormat(contentType: "Application/X-Tar; charset=binary") == .tar)
        #expect(ArchiveFormat(contentType: "application/json") == nil)
        #expect(ArchiveFormat(contentType: "") == nil)
    }
}

private func setMtime(_ path: String, seconds: Int) throws {
    var times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
    guard utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW) == 0 else { throw TestFailure("utimensat \(path)") }
}
