import KnitArchive
import KnitSystem
import KnitTestSupport
import Testing

/// tar+zstd written by Knit carries zstd's content checksum, so a damaged upload is told apart from a good one.
@Suite("zstd content checksum")
struct ZstdChecksumTests {
    @Test("the frame header announces a content checksum")
    func frameHasChecksumFlag() throws {
        let temp = try TempDir()
        let source = try temp.mkdir("source")
        try writeFile(source + "/data.bin", randomBytes(300_000))
        let bytes = try archive(source, format: .tarZstd)
        #expect(Array(bytes.prefix(4)) == [0x28, 0xB5, 0x2F, 0xFD])  // zstd frame magic, little-endian
        // Frame_Header_Descriptor: bit 2 is Content_Checksum_flag.
        #expect(bytes[4] & 0x04 != 0)
        let target = try temp.mkdir("target")
        #expect(try extract(bytes, into: target).bytes == 300_000)
    }

    @Test("a damaged checksum is refused as corrupt")
    func damagedChecksumIsRefused() throws {
        let temp = try TempDir()
        let source = try temp.mkdir("source")
        try writeFile(source + "/data.bin", randomBytes(300_000))
        var bytes = try archive(source, format: .tarZstd)
        // The last 4 bytes of a frame are the low 32 bits of XXH64 of the content.
        bytes[bytes.count - 2] ^= 0xFF
        let target = try temp.mkdir("target")
        let error = archiveError { try extract(bytes, into: target) }
        #expect(error?.code == .corrupt)
    }
}
