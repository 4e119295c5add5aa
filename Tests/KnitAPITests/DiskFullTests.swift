import KnitAPI
import KnitArchive
import KnitCore
import KnitStore
import Logging
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The store on a tiny tmpfs, so an upload runs out of disk for real.
@Suite(.serialized) struct DiskFullTests {
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func uploadThatFillsTheDiskAnswers507AndLeavesNothing() throws {
        var template = Array("/tmp/knit-diskfull-XXXXXX".utf8CString)
        let mountPoint = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer {
            run(["umount", mountPoint])
            rmdir(mountPoint)
        }
        try #require(run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mountPoint]) == 0)
        let home = mountPoint + "/home"
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let store = try KnitStore(home: home, logger: logger, mapSize: 8 << 20)
        defer { store.close() }
        let api = KnitAPI(store: store, logger: logger)
        let token = try store.addUser(name: "alice", role: .user)

        // 24 MiB of random bytes cannot fit in 16 MiB, whatever the archive format.
        var generator = SplitMix(seed: 42)
        let random = (0..<(24 << 20) / 8).flatMap { _ in withUnsafeBytes(of: generator.next()) { Array($0) } }
        let source = makeTree(["big.bin": random])
        defer { run(["rm", "-rf", source]) }
        var archive: [UInt8] = []
        try writeArchive(of: source, format: .tar) { archive.append(contentsOf: $0) }

        let response = send(api, token: token, body: archive)
        #expect(response.status == 507)
        #expect(store.dataCount() == 0)
        #expect(listDirectory(home + "/staging").isEmpty)
        #expect(listDirectory(home + "/data").isEmpty)

        // Space is back: the next (small) upload works.
        let small = try makeArchive(format: .tarGzip, files: ["a": "1"])
        #expect(send(api, token: token, body: small).status == 200)
    }

    private func send(_ api: KnitAPI, token: String, body: [UInt8]) -> APIResponse {
        let request = APIRequest(method: "POST", uri: "/api/data/", headers: ["authorization": "Bearer \(token)"])!
        var offset = 0
        return api.handle(request) { buffer in
            let count = min(buffer.count, body.count - offset)
            body.withUnsafeBytes {
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + count]))
            }
            offset += count
            return count
        }
    }
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
    var template = Array("/tmp/knit-api-tree-XXXXXX".utf8CString)
    let root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    for (name, bytes) in files {
        let fd = open(root + "/" + name, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }
    return root
}
