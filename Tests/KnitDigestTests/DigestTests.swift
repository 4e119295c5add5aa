import KnitDigest
import Testing

@Suite struct DigestTests {
    @Test func md5KnownVectors() {
        #expect(MD5Digest.hex(of: [UInt8]()) == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(MD5Digest.hex(of: Array("abc".utf8)) == "900150983cd24fb0d6963f7d28e17f72")
        #expect(
            MD5Digest.hex(of: Array("The quick brown fox jumps over the lazy dog".utf8))
                == "9e107d9d372bb6826bd81d3542a419d6"
        )
    }

    @Test func md5Streaming() {
        var digest = MD5Digest()
        let text = Array("The quick brown fox jumps over the lazy dog".utf8)
        for chunk in stride(from: 0, to: text.count, by: 7) {
            text[chunk..<min(chunk + 7, text.count)].withUnsafeBytes { digest.update($0) }
        }
        #expect(digest.finalizeHex() == "9e107d9d372bb6826bd81d3542a419d6")
    }

    @Test func sha256KnownVectors() {
        #expect(SHA256Digest.hex(of: "") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256Digest.hex(of: "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256Digest.hex(of: Array("abc".utf8)) == SHA256Digest.hex(of: "abc"))
    }

    @Test func randomBytesHaveLengthAndDiffer() {
        let a = randomBytes(32)
        let b = randomBytes(32)
        #expect(a.count == 32)
        #expect(randomBytes(5).count == 5)
        #expect(randomBytes(0).isEmpty)
        #expect(a != b)
    }
}
