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

/// Other tools' archives in, ours out: GNU tar, gzip and zstd as installed on the machines.
@Suite("interop with GNU tar, gzip, zstd")
struct InteropTests {
    private func sh(_ command: String) -> Int32 { system(command) }

    private func sampleTree(_ temp: TempDir) throws -> String {
        let source = try temp.mkdir("source")
        try temp.mkdir("source/dir/empty")
        try writeFile(source + "/dir/file.txt", Array("hello\n".utf8))
        try writeFile(source + "/データ-ü.txt", randomBytes(70_000), mode: 0o755)
        try FileManager.default.createSymbolicLink(atPath: source + "/dir/link", withDestinationPath: "file.txt")
        return source
    }

    @Test("archives from GNU tar extract (with ./ prefixes and 10 KiB block padding)", arguments: ["", "-z", "--zstd"])
    func fromGNUTar(flag: String) throws {
        if flag == "--zstd" && !hasZstdCLI { return }
        let temp = try TempDir()
        let source = try sampleTree(temp)
        let file = temp.sub("gnu.tar")
        #expect(sh("tar -c \(flag) -f \(file) -C \(source) .") == 0)
        let target = try temp.mkdir("target")
        let summary = try extract(try readFile(file), into: target)
        #expect(summary.regularFiles == 2 && summary.symlinks == 1 && summary.directories == 2)
        #expect(try snapshot(target) == snapshot(source))
    }

    @Test("our archives list and extract with GNU tar", arguments: ArchiveFormat.allCases)
    func toGNUTar(format: ArchiveFormat) throws {
        let temp = try TempDir()
        let source = try sampleTree(temp)
        let file = temp.sub("ours." + format.fileExtension)
        try writeFile(file, try archive(source, format: format))
        let target = try temp.mkdir("target")
        if format == .tarZstd && !hasZstdCLI { return }  // GNU tar runs the zstd program
        let decompress = format == .tarZstd ? "--zstd" : format == .tarGzip ? "-z" : ""
        #expect(sh("tar -x \(decompress) -f \(file) -C \(target)") == 0)
        #expect(try snapshot(target) == snapshot(source))
        if format == .tarGzip { #expect(sh("gzip -t \(file)") == 0) }
        if format == .tarZstd && hasZstdCLI { #expect(sh("zstd -q -t \(file)") == 0) }
    }

    @Test("a tar.gz of two concatenated gzip members extracts")
    func multiMemberGzip() throws {
        let temp = try TempDir()
        let tar = try ArchiveBuilder(entries: [.file("a", randomBytes(50_000)), .file("b", randomBytes(50_000))])
            .build()
        try writeFile(temp.sub("part1"), Array(tar[..<30_000]))
        try writeFile(temp.sub("part2"), Array(tar[30_000...]))
        let (part1, part2, joined) = (temp.sub("part1"), temp.sub("part2"), temp.sub("x.gz"))
        #expect(sh("gzip -c \(part1) > \(joined) && gzip -c \(part2) >> \(joined)") == 0)
        let target = try temp.mkdir("target")
        #expect(try extract(try readFile(temp.sub("x.gz")), into: target).bytes == 100_000)
        #expect(try readFile(target + "/b") == Array(tar[(512 + 50_176 + 512)...].prefix(50_000)))
    }
}
