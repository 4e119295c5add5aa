import KnitAPI
import KnitArchive
import KnitCore
import KnitDigest
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// One tar header block as Knit writes it (ustar) — the fields both CLIs read.
struct TarHeader: Equatable, CustomStringConvertible {
    var name: String
    var typeflag: Character
    var mode: Int
    var uid: Int
    var gid: Int
    var linkname: String
    var magic: [UInt8]

    var description: String { "\(name) [\(typeflag)] \(String(mode, radix: 8)) -> \(linkname)" }
}

/// The headers of a plain tar stream, in order (pax extended headers would show up as typeflag "x").
func tarHeaders(_ tar: [UInt8]) -> [TarHeader] {
    func text(_ range: Range<Int>, _ block: ArraySlice<UInt8>) -> String {
        let field = block[block.startIndex + range.lowerBound..<block.startIndex + range.upperBound]
        return String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }
    func octal(_ range: Range<Int>, _ block: ArraySlice<UInt8>) -> Int {
        Int(text(range, block).trimmingCharacters(in: " "), radix: 8) ?? -1
    }
    var headers: [TarHeader] = []
    var offset = 0
    while offset + 512 <= tar.count {
        let block = tar[offset..<offset + 512]
        if block.allSatisfy({ $0 == 0 }) { break }
        let prefix = text(345..<500, block)
        let name = prefix.isEmpty ? text(0..<100, block) : prefix + "/" + text(0..<100, block)
        let size = octal(124..<136, block)
        headers.append(
            TarHeader(
                name: name,
                typeflag: Character(UnicodeScalar(block[block.startIndex + 156])),
                mode: octal(100..<108, block),
                uid: octal(108..<116, block),
                gid: octal(116..<124, block),
                linkname: text(157..<257, block),
                magic: Array(block[block.startIndex + 257..<block.startIndex + 265])
            )
        )
        offset += 512 + (size + 511) / 512 * 512
    }
    return headers
}

extension String {
    fileprivate func trimmingCharacters(in character: Character) -> String {
        var view = Substring(self)
        while view.first == character { view.removeFirst() }
        while view.last == character { view.removeLast() }
        return String(view)
    }
}

/// Decompresses a gzip (`tool` "gzip") or zstd ("zstd") stream with the system tools.
func decompress(_ bytes: [UInt8], tool: String) throws -> [UInt8] {
    let dir = scratchDirectory("knit-decompress-")
    defer { run(["rm", "-rf", dir]) }
    let input = dir + (tool == "gzip" ? "/archive.tar.gz" : "/archive.tar.zst")
    let fd = open(input, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
    // Both tools write archive.tar next to the input.
    try #require(run([tool, "-d", "-q", input]) == 0)
    return readBytes(dir + "/archive.tar")
}

@Suite struct DownloadTests {
    /// a.txt, x.bin (0755), link -> a.txt, sub/b.txt, sub/deeper/c.txt and an empty directory `empty`.
    private func uploadTree(_ harness: APIHarness) throws -> String {
        try #require(try uploadTreeDetail(harness)["knitId"]?.stringValue)
    }

    /// ``uploadTree(_:)``, answering the Data Detail.
    private func uploadTreeDetail(_ harness: APIHarness) throws -> JSONValue {
        let source = makeTree(["a.txt": Array("alpha\n".utf8), "x.bin": [1, 2, 3]])
        defer { run(["rm", "-rf", source]) }
        chmod(source + "/x.bin", 0o755)
        symlink("a.txt", source + "/link")
        mkdir(source + "/empty", 0o755)
        mkdir(source + "/sub", 0o755)
        mkdir(source + "/sub/deeper", 0o755)
        for (path, text) in [("sub/b.txt", "beta\n"), ("sub/deeper/c.txt", "gamma\n")] {
            let fd = open(source + "/" + path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            _ = text.withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        var body: [UInt8] = []
        try writeArchive(of: source, format: .tarZstd) { body.append(contentsOf: $0) }
        let response = harness.request("POST", "/api/data/", body: body)
        try #require(response.status == 200)
        return try json(response)
    }

    private func header(_ response: APIResponse, _ name: String) -> String? {
        response.headers.first { $0.0.lowercased() == name }?.1
    }

    /// Knitfab's server writes files and symlinks only (no directory entries), relative names without `./`,
    /// depth first with each directory's names sorted, ustar headers, typeflag '0' for files and '2' for symlinks,
    /// permission bits as the mode. Knitfab's CLI (`knit data pull -x`, v1.6.1) makes an entry `sub/` an empty
    /// file `sub` and then fails on `sub/b.txt`.
    @Test(
        "the tar+gzip download is laid out as Knitfab's server writes it: no directory entries",
        arguments: [nil, "application/tar+gzip"] as [String?]
    )
    func tarGzipHasKnitfabsLayout(accept: String?) throws {
        let harness = try APIHarness()
        let knitId = try uploadTree(harness)
        let response = harness.request("GET", "/api/data/\(knitId)", headers: accept.map { ["accept": $0] } ?? [:])
        #expect(response.status == 200)
        #expect(header(response, "content-type") == "application/tar+gzip")
        let tar = try decompress(try response.collectBody(), tool: "gzip")
        let headers = tarHeaders(tar)
        let ustar = Array("ustar".utf8) + [0] + Array("00".utf8)
        #expect(
            headers == [
                TarHeader(name: "a.txt", typeflag: "0", mode: 0o644, uid: 0, gid: 0, linkname: "", magic: ustar),
                TarHeader(name: "link", typeflag: "2", mode: 0o777, uid: 0, gid: 0, linkname: "a.txt", magic: ustar),
                TarHeader(name: "sub/b.txt", typeflag: "0", mode: 0o644, uid: 0, gid: 0, linkname: "", magic: ustar),
                TarHeader(
                    name: "sub/deeper/c.txt",
                    typeflag: "0",
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    linkname: "",
                    magic: ustar
                ),
                TarHeader(name: "x.bin", typeflag: "0", mode: 0o755, uid: 0, gid: 0, linkname: "", magic: ustar),
            ]
        )
    }

    @Test("tar+zstd and x-tar downloads keep directory entries, empty directories included")
    func knitFormatsKeepDirectories() throws {
        let harness = try APIHarness()
        let knitId = try uploadTree(harness)
        for (accept, tool) in [("application/tar+zstd", "zstd"), ("application/x-tar", "")] {
            let response = harness.request("GET", "/api/data/\(knitId)", headers: ["accept": accept])
            #expect(header(response, "content-type") == accept)
            let body = try response.collectBody()
            let tar = tool.isEmpty ? body : try decompress(body, tool: tool)
            let entries = tarHeaders(tar).map { "\($0.name)\($0.typeflag)" }
            #expect(
                entries == [
                    "a.txt0", "empty/5", "link2", "sub/5", "sub/b.txt0", "sub/deeper/5", "sub/deeper/c.txt0", "x.bin0",
                ]
            )
        }
    }

    /// The download checksum: an `x-checksum-md5` header (nginx cannot pass FastCGI trailers), the MD5 of the very
    /// bytes sent, the same on every download since downloads are deterministic.
    @Test(
        "every download carries x-checksum-md5, the MD5 of its bytes",
        arguments: [64 << 20, 0] as [Int64]
    )
    func downloadsCarryTheirMD5(dryRunLimit: Int64) throws {
        let harness = try APIHarness(digestDryRunLimit: dryRunLimit)
        let knitId = try uploadTree(harness)
        for accept in ["application/tar+gzip", "application/tar+zstd", "application/x-tar"] {
            var seen: [String] = []
            for round in 0..<3 {
                let response = harness.request("GET", "/api/data/\(knitId)", headers: ["accept": accept])
                let body = try response.collectBody()
                let sent = header(response, "x-checksum-md5")
                // Over the dry-run limit the first download computes the digest as it streams.
                if dryRunLimit == 0 && round == 0 {
                    #expect(sent == nil)
                } else {
                    #expect(sent == MD5Digest.hex(of: body), "\(accept), round \(round)")
                }
                seen.append(MD5Digest.hex(of: body))
            }
            #expect(Set(seen).count == 1, "\(accept): downloads differ")
            let head = harness.request("HEAD", "/api/data/\(knitId)", headers: ["accept": accept])
            #expect(header(head, "x-checksum-md5") == seen[0])
        }
    }

    @Test("the kept digests go with their Data")
    func digestsAreDroppedWithTheData() throws {
        let harness = try APIHarness()
        let detail = try uploadTreeDetail(harness)
        let knitId = try #require(detail["knitId"]?.stringValue)
        _ = try harness.request("GET", "/api/data/\(knitId)", headers: ["accept": "application/x-tar"]).collectBody()
        let kept = { harness.store.downloadDigest(knitId: knitId, variant: "tar", writer: archiveWriterVersion) }
        #expect(kept() != nil)
        let runId = try #require(detail["upstream"]?["run"]?["runId"]?.stringValue)
        #expect(harness.request("DELETE", "/api/runs/\(runId)").status == 204)
        #expect(kept() == nil)
    }

    @Test("a Data changed on disk after its digest was kept no longer matches its x-checksum-md5")
    func changedContentIsDetected() throws {
        let harness = try APIHarness()
        let knitId = try uploadTree(harness)
        let first = harness.request("GET", "/api/data/\(knitId)", headers: ["accept": "application/x-tar"])
        let digest = try #require(header(first, "x-checksum-md5"))
        #expect(digest == MD5Digest.hex(of: try first.collectBody()))
        // Same size, one byte different: what bit rot or tampering on the server's disk looks like.
        let path = harness.home + "/data/\(knitId)/a.txt"
        chmod(path, 0o644)
        let fd = open(path, O_WRONLY)
        _ = pwrite(fd, "A", 1, 0)
        close(fd)
        let second = harness.request("GET", "/api/data/\(knitId)", headers: ["accept": "application/x-tar"])
        #expect(header(second, "x-checksum-md5") == digest)
        #expect(MD5Digest.hex(of: try second.collectBody()) != digest)
    }
}
