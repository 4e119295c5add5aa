import KnitAPI
import KnitArchive
import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Logging
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A store whose Data (`staging/`, `data/`) live on a 16 MiB tmpfs, so uploads run out of disk for real.
///
/// LMDB (`db/`) gets a tmpfs of its own: then only the content writes can fail, which is where F1's holes came
/// from (a store that also could not commit would have answered 507 for the wrong reason).
final class SmallDisk {
    let mountPoint: String
    let home: String
    let store: KnitStore
    let log = CapturedLog()
    let api: KnitAPI
    let token: String
    private var filler: String { mountPoint + "/filler" }

    init(maxDataBytes: Int64? = nil) throws {
        mountPoint = scratchDirectory("knit-diskfull-")
        home = mountPoint + "/home"
        guard run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mountPoint]) == 0,
            run(["mkdir", "-p", home + "/db"]) == 0,
            run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", home + "/db"]) == 0
        else {
            run(["umount", mountPoint])
            rmdir(mountPoint)
            throw TestFailure("cannot mount the tmpfs")
        }
        let log = self.log
        let logger = Logger(label: "test", factory: { _ in CapturingLogHandler(log: log) })
        store = try KnitStore(home: home, logger: logger, mapSize: 8 << 20)
        api = KnitAPI(store: store, logger: logger, maxDataBytes: maxDataBytes)
        token = try store.addUser(name: "alice", role: .user)
    }

    deinit {
        store.close()
        // A child spawned meanwhile by another test may still hold an inherited descriptor for a moment: then
        // detach lazily rather than leave the mount behind.
        for path in [home + "/db", mountPoint] where run(["umount", path]) != 0 {
            run(["umount", "-l", path])
        }
        rmdir(mountPoint)
    }

    var freeBytes: Int64 {
        var info = statvfs()
        statvfs(mountPoint, &info)
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }

    /// Takes all but `leaving` bytes of the free space, as another writer on the same disk would.
    func fill(leaving: Int64) {
        let fd = open(filler, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0xA5, count: 64 << 10)
        while freeBytes > leaving {
            let want = Int(min(Int64(chunk.count), freeBytes - leaving))
            if chunk.withUnsafeBytes({ write(fd, $0.baseAddress, want) }) <= 0 { break }
        }
    }

    func unfill() { unlink(filler) }

    /// POST /api/data/ with `body`; `onFirstRead` runs when the server asks for the first body bytes, i.e.
    /// after it measured the free space and before any content is written.
    func upload(_ body: [UInt8], onFirstRead: (() -> Void)? = nil) -> APIResponse {
        let request = APIRequest(method: "POST", uri: "/api/data/", headers: ["authorization": "Bearer \(token)"])!
        var offset = 0
        var first = onFirstRead
        return api.handle(request) { buffer in
            first?()
            first = nil
            let count = min(buffer.count, body.count - offset)
            body.withUnsafeBytes {
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + count]))
            }
            offset += count
            return count
        }
    }

    func request(_ method: String, _ uri: String) -> APIResponse {
        let request = APIRequest(method: method, uri: uri, headers: ["authorization": "Bearer \(token)"])!
        return api.handle(request) { _ in 0 }
    }

    func stored(_ knitId: String, _ name: String) -> [UInt8] { readBytes(home + "/data/" + knitId + "/" + name) }
}

@Suite(.serialized) struct DiskFullTests {
    /// F1: libarchive's disk writer reported ENOSPC as a warning, the file was truncated to its size (a hole),
    /// and the upload answered 200 with zeros stored.
    @Test(
        "F1: an upload that runs out of disk is 507 and leaves nothing; after space is freed uploads work again",
        .enabled(if: getuid() == 0, "mounting a tmpfs needs root"),
        arguments: [ArchiveFormat.tar, .tarGzip, .tarZstd],
        [200_000, 4 << 20]
    )
    func diskFullDuringUpload(format: ArchiveFormat, size: Int) throws {
        let disk = try SmallDisk()
        // Nearly fills the disk, and is stored byte for byte.
        let big = randomContent(8 << 20, seed: 1)
        let first = disk.upload(try archive(format: format, ["big.bin": big]))
        try #require(first.status == 200)
        let firstId = try #require(try json(first)["knitId"]?.stringValue)
        #expect(disk.stored(firstId, "big.bin") == big)

        // Another writer takes the rest of the space once the upload has begun.
        let content = randomContent(size, seed: 2)
        let body = try archive(format: format, ["f.bin": content])
        let refused = disk.upload(body) { disk.fill(leaving: 32 << 10) }
        #expect(refused.status == 507)
        #expect(try json(refused)["reason"]?.stringValue == "the server's storage is full")
        // The administrator is told too, with the cause (the user's answer says only "full").
        #expect(disk.log.entries("storage full").count == 1)
        #expect(disk.store.dataCount() == 1)
        #expect(listDirectory(disk.home + "/staging").isEmpty)
        #expect(listDirectory(disk.home + "/data") == [firstId])
        #expect(disk.stored(firstId, "big.bin") == big)

        // Space comes back (the other writer's file and the first Data are deleted): the same upload works.
        disk.unfill()
        let runId = try #require(try json(first)["upstream"]?["run"]?["runId"]?.stringValue)
        #expect(disk.request("DELETE", "/api/runs/\(runId)").status == 204)
        let again = disk.upload(body)
        #expect(again.status == 200)
        let againId = try #require(try json(again)["knitId"]?.stringValue)
        #expect(disk.stored(againId, "f.bin") == content)
    }

    /// F11: the declared sizes are checked against the free space before anything is written.
    @Test(
        "F11: an upload declaring more than the free space is 413 and leaves nothing",
        .enabled(if: getuid() == 0, "mounting a tmpfs needs root")
    )
    func uploadLargerThanFreeSpace() throws {
        let disk = try SmallDisk()
        // 24 MiB of random bytes cannot fit in 16 MiB, whatever the archive format.
        let body = try archive(format: .tar, ["big.bin": randomContent(24 << 20, seed: 3)])
        let response = disk.upload(body)
        #expect(response.status == 413)
        #expect(try json(response)["reason"]?.stringValue?.contains("free space") == true)
        #expect(disk.store.dataCount() == 0)
        #expect(listDirectory(disk.home + "/staging").isEmpty)
        #expect(listDirectory(disk.home + "/data").isEmpty)

        // Space is there: the next (small) upload works.
        let small = try makeArchive(format: .tarGzip, files: ["a": "1"])
        #expect(disk.upload(small).status == 200)
    }

    /// F11: 10 KB of tar declaring a 50 GB sparse file was stored (and served as 50 GB).
    @Test(
        "F11: a tar declaring a 50 GB sparse file is 413 against the free space, nothing stored",
        .enabled(if: getuid() == 0, "mounting a tmpfs needs root")
    )
    func sparseBombAgainstFreeSpace() throws {
        let disk = try SmallDisk()
        let body = try sparseTar(apparentSize: "50G")
        #expect(body.count < 64 << 10)
        let response = disk.upload(body)
        #expect(response.status == 413)
        #expect(try json(response)["reason"]?.stringValue?.contains("free space") == true)
        #expect(disk.store.dataCount() == 0)
        #expect(listDirectory(disk.home + "/staging").isEmpty)
        #expect(listDirectory(disk.home + "/data").isEmpty)
    }

    /// GNU tar's old sparse headers and pax sparse 1.0 (`--format=pax`) both declare the logical size.
    @Test(
        "F11: a tar declaring a 50 GB sparse file is 413 against --max-data-bytes, nothing stored",
        arguments: ["gnu", "pax"]
    )
    func sparseBombAgainstMaxDataBytes(format: String) throws {
        let harness = try APIHarness(maxDataBytes: 1 << 30)
        let response = harness.request("POST", "/api/data/", body: try sparseTar(apparentSize: "50G", format: format))
        #expect(response.status == 413)
        #expect(try json(response)["reason"]?.stringValue?.contains("--max-data-bytes") == true)
        #expect(harness.store.dataCount() == 0)
        #expect(harness.stagingEntries().isEmpty)
        #expect(harness.dataEntries().isEmpty)
        // Up to the limit is fine, sparse files included: they are stored with their holes.
        let small = harness.request("POST", "/api/data/", body: try sparseTar(apparentSize: "10M", format: format))
        #expect(small.status == 200)
        let knitId = try #require(try json(small)["knitId"]?.stringValue)
        var info = stat()
        #expect(stat(harness.home + "/data/\(knitId)/huge", &info) == 0)
        #expect(info.st_size == 10 << 20)
    }
}

/// A GNU tar `--sparse` archive (in tar's `format`) of one file with `apparentSize` and no data.
func sparseTar(apparentSize: String, format: String = "gnu") throws -> [UInt8] {
    let dir = scratchDirectory("knit-sparse-")
    defer { run(["rm", "-rf", dir]) }
    try #require(run(["mkdir", dir + "/tree"]) == 0)
    try #require(run(["truncate", "-s", apparentSize, dir + "/tree/huge"]) == 0)
    try #require(
        run(["tar", "--sparse", "--format=\(format)", "-cf", dir + "/sparse.tar", "-C", dir + "/tree", "huge"]) == 0
    )
    return readBytes(dir + "/sparse.tar")
}

func archive(format: ArchiveFormat, _ files: [String: [UInt8]]) throws -> [UInt8] {
    let source = makeTree(files)
    defer { run(["rm", "-rf", source]) }
    var bytes: [UInt8] = []
    try writeArchive(of: source, format: format) { bytes.append(contentsOf: $0) }
    return bytes
}

func randomContent(_ count: Int, seed: UInt64) -> [UInt8] {
    var generator = SplitMix(seed: seed)
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { raw in
        var offset = 0
        while offset < count {
            var word = generator.next()
            let n = min(8, count - offset)
            withUnsafeBytes(of: &word) {
                raw.baseAddress!.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: n)
            }
            offset += n
        }
    }
    return bytes
}

func readBytes(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let count = read(fd, &buffer, buffer.count)
        if count <= 0 { break }
        bytes.append(contentsOf: buffer[0..<count])
    }
    return bytes
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func makeTree(_ files: [String: [UInt8]]) -> String {
    let root = scratchDirectory("knit-api-tree-")
    for (name, bytes) in files {
        let fd = open(root + "/" + name, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }
    return root
}
