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

/// A hostile archive and the error it must produce.
struct HostileCase: CustomTestStringConvertible, Sendable {
    var name: String
    var code: ArchiveError.Code
    var entries: @Sendable () -> [ArchiveBuilder.Entry]
    var testDescription: String { name }
}

private let victim = Array("victim".utf8)

let hostileCases: [HostileCase] = [
    HostileCase(name: "../evil", code: .unsafePath) { [.file("../evil", victim)] },
    HostileCase(name: "a/../../evil", code: .unsafePath) { [.directory("a"), .file("a/../../evil", victim)] },
    HostileCase(name: "/abs/path", code: .unsafePath) { [.file("/tmp/knit-archive-abs-victim", victim)] },
    HostileCase(name: "esc -> ../../etc", code: .linkEscapes) { [.symlink("esc", target: "../../etc")] },
    HostileCase(name: "nested escape", code: .linkEscapes) { [.directory("d"), .symlink("d/esc", target: "../..")] },
    HostileCase(name: "l -> /etc", code: .linkEscapes) { [.symlink("l", target: "/etc")] },
    HostileCase(name: "out -> .. then out/x", code: .linkEscapes) {
        [.symlink("out", target: ".."), .file("out/x", victim)]
    },
    HostileCase(name: "l -> . then l/x", code: .unsafePath) { [.symlink("l", target: "."), .file("l/x", victim)] },
    HostileCase(name: "l -> sub then l/file", code: .unsafePath) {
        [.directory("sub"), .symlink("l", target: "sub"), .file("l/file", victim)]
    },
    HostileCase(name: "symlink replaced by a file", code: .unsafePath) {
        [.file("f", victim), .symlink("l", target: "f"), .file("l", victim)]
    },
    HostileCase(name: "up -> . then z -> up/..", code: .linkEscapes) {
        [.symlink("up", target: "."), .symlink("z", target: "up/..")]
    },
    HostileCase(name: "z -> up/.. then up -> .", code: .linkEscapes) {
        [.symlink("z", target: "up/.."), .symlink("up", target: ".")]
    },
    HostileCase(name: "hard link to ../../etc/passwd", code: .linkEscapes) {
        [.hardlink("h", target: "../../etc/passwd")]
    },
    HostileCase(name: "hard link to /etc/passwd", code: .linkEscapes) { [.hardlink("h", target: "/etc/passwd")] },
    HostileCase(name: "hard link to nothing extracted", code: .linkEscapes) { [.hardlink("h", target: "later")] },
    HostileCase(name: "character device", code: .unsupportedEntry) { [.characterDevice("null")] },
    HostileCase(name: "fifo", code: .unsupportedEntry) { [.fifo("pipe")] },
]

@Suite("hostile archives")
struct RejectionTests {
    /// The Data root is `<temp>/parent/data`; anything escaping one or two levels lands beside it.
    struct Layout {
        let temp: TempDir
        let parent: String
        let target: String

        init() throws {
            temp = try TempDir()
            parent = try temp.mkdir("parent")
            target = try temp.mkdir("parent/data")
        }

        func expectNothingOutside() throws {
            #expect(try listing(temp.path) == ["parent"])
            #expect(try listing(parent) == ["data"])
            #expect(access("/tmp/knit-archive-abs-victim", F_OK) != 0)
        }
    }

    @Test(
        "is rejected with a clear error and nothing outside the root",
        arguments: hostileCases,
        ArchiveFormat.allCases
    )
    func rejected(hostile: HostileCase, format: ArchiveFormat) throws {
        let layout = try Layout()
        let bytes = try ArchiveBuilder(format: format, entries: hostile.entries()).build()
        let error = archiveError { try extract(bytes, into: layout.target) }
        #expect(error?.code == hostile.code, "\(error?.message ?? "no error")")
        #expect(error?.path != nil)
        #expect(error.map { $0.message.contains($0.path ?? "\u{0}") } == true, "message names the entry")
        try layout.expectNothingOutside()
    }

    @Test("no partial victim: the entry that fails is not created")
    func noPartialVictim() throws {
        let layout = try Layout()
        let bytes = try ArchiveBuilder(entries: [.symlink("l", target: "."), .file("l/x", victim)]).build()
        #expect(archiveError { try extract(bytes, into: layout.target) }?.code == .unsafePath)
        #expect(try listing(layout.target) == ["l"])
    }

    @Test("an archive holding only `l -> .` is fine")
    func selfLinkAlone() throws {
        let layout = try Layout()
        let bytes = try ArchiveBuilder(entries: [.symlink("l", target: "."), .symlink("m", target: "l/l/l")]).build()
        #expect(try extract(bytes, into: layout.target).symlinks == 2)
    }

    private func sampleArchive(_ format: ArchiveFormat, size: Int = 256 * 1024) throws -> [UInt8] {
        try ArchiveBuilder(
            format: format,
            entries: [.directory("d"), .file("d/data.bin", randomBytes(size)), .file("z", [1])]
        ).build()
    }

    @Test("a truncated archive is corrupt", arguments: ArchiveFormat.allCases)
    func truncated(format: ArchiveFormat) throws {
        let bytes = try sampleArchive(format)
        // Plain tar: losing part of the 1024 zero bytes at the end loses no data, so cut into the marker's first
        // block, at an entry boundary (where libarchive alone would report a clean end) and mid-file.
        let cuts = format == .tar ? [1024 - 100, 1024, 1024 + 512, bytes.count / 2] : [100, bytes.count / 2]
        for cut in cuts {
            let layout = try Layout()
            let error = archiveError { try extract(Array(bytes.dropLast(cut)), into: layout.target) }
            #expect(error?.code == .corrupt, "cut \(cut): \(error?.message ?? "no error")")
            try layout.expectNothingOutside()
        }
    }

    @Test("a gzip member with a wrong CRC32 is corrupt")
    func badGzipCRC() throws {
        var bytes = try sampleArchive(.tarGzip)
        bytes[bytes.count - 8] ^= 0xFF  // first byte of the CRC32 trailer
        let layout = try Layout()
        let error = archiveError { try extract(bytes, into: layout.target) }
        #expect(error?.code == .corrupt, "\(error?.message ?? "no error")")
        #expect(error?.message.contains("CRC32") == true)
    }

    @Test("a zstd frame with a bad content checksum is corrupt", .enabled(if: hasZstdCLI))
    func badZstdChecksum() throws {
        // libarchive 3.6.2 writes no zstd checksum; the zstd CLI does (and clients may use it).
        let temp = try TempDir()
        let tarPath = temp.sub("a.tar")
        try writeFile(tarPath, try sampleArchive(.tar))
        #expect(system("zstd -q -1 --check \(tarPath) -o \(tarPath).zst") == 0)
        var bytes = try readFile(tarPath + ".zst")
        let layout = try Layout()
        #expect(try extract(bytes, into: layout.target).regularFiles == 2)
        bytes[bytes.count - 1] ^= 0xFF  // last byte of the 4-byte XXH64 checksum
        let layout2 = try Layout()
        let error = archiveError { try extract(bytes, into: layout2.target) }
        #expect(error?.code == .corrupt, "\(error?.message ?? "no error")")
    }

    @Test("garbage is corrupt")
    func garbage() throws {
        let layout = try Layout()
        let error = archiveError { try extract(randomBytes(100_000), into: layout.target) }
        #expect(error?.code == .corrupt)
        #expect(try listing(layout.target).isEmpty)
    }

    @Test("a zero-byte body is corrupt: empty archive")
    func emptyBody() throws {
        let layout = try Layout()
        let error = archiveError { try extract([], into: layout.target) }
        #expect(error?.code == .corrupt)
        #expect(error?.message.contains("empty archive") == true)
    }

    @Test("too many entries stops at the limit")
    func tooManyEntries() throws {
        let layout = try Layout()
        let bytes = try ArchiveBuilder(entries: (1...5).map { .file("f\($0)", [1]) }).build()
        let limits = ArchiveLimits(maxEntries: 3, maxTotalBytes: .max, maxPathBytes: 4096)
        let error = archiveError { try extract(bytes, into: layout.target, limits: limits) }
        #expect(error?.code == .tooLarge)
        #expect(error?.path == "f4")
        #expect(try listing(layout.target) == ["f1", "f2", "f3"])
    }

    @Test("too many bytes stops before the file that crosses the limit")
    func tooManyBytes() throws {
        let layout = try Layout()
        let bytes = try ArchiveBuilder(entries: [.file("small", randomBytes(600)), .file("big", randomBytes(600))])
            .build()
        let limits = ArchiveLimits(maxEntries: 10, maxTotalBytes: 1000, maxPathBytes: 4096)
        let error = archiveError { try extract(bytes, into: layout.target, limits: limits) }
        #expect(error?.code == .contentTooLarge)
        #expect(error?.path == "big")
        #expect(try listing(layout.target) == ["small"])
    }

    @Test("an overlong name is tooLarge")
    func longName() throws {
        let layout = try Layout()
        let bytes = try ArchiveBuilder(entries: [.file(String(repeating: "n", count: 300), [1])]).build()
        let limits = ArchiveLimits(maxEntries: 10, maxTotalBytes: .max, maxPathBytes: 255)
        #expect(archiveError { try extract(bytes, into: layout.target, limits: limits) }?.code == .tooLarge)
    }

    @Test("a read closure that throws mid-stream is readFailed with its error", arguments: ArchiveFormat.allCases)
    func readThrows(format: ArchiveFormat) throws {
        struct ClientGone: Error {}
        let bytes = try sampleArchive(format, size: 2 * 1024 * 1024)
        let layout = try Layout()
        var offset = 0
        let error = archiveError {
            _ = try extractArchive(into: layout.target) { buffer in
                if offset >= bytes.count / 2 { throw ClientGone() }
                let count = min(16 * 1024, buffer.count)
                bytes.withUnsafeBytes {
                    buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: count)
                }
                offset += count
                return count
            }
        }
        #expect(error?.code == .readFailed)
        #expect(error?.underlying is ClientGone)
    }

    @Test("the target must be an empty directory")
    func targetNotEmpty() throws {
        let layout = try Layout()
        try writeFile(layout.target + "/existing", [1])
        let bytes = try ArchiveBuilder(entries: [.file("f", [1])]).build()
        #expect(archiveError { try extract(bytes, into: layout.target) }?.code == .notEmpty)
        #expect(archiveError { try extract(bytes, into: layout.parent + "/missing") }?.code == .io)
    }
}
