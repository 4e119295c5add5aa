import KnitAPI
import KnitArchive
import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Logging
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// A real store in a temporary directory and the API on top of it, driven without sockets.
final class APIHarness {
    let home: String
    let store: KnitStore
    let api: KnitAPI
    let tokens: [String: String]

    /// Every log line the API wrote, for audit checks.
    let log = CapturedLog()

    init(
        transferSlots: Int = 4,
        followSlots: Int = 2,
        slotsPerUser: Int? = nil,
        maxDataBytes: Int64? = nil,
        digestDryRunLimit: Int64 = 64 << 20
    ) throws {
        home = scratchDirectory("knit-api-test-")
        store = try KnitStore(home: home, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let log = self.log
        api = KnitAPI(
            store: store,
            logger: Logger(label: "test", factory: { _ in CapturingLogHandler(log: log) }),
            transferSlots: transferSlots,
            followSlots: followSlots,
            slotsPerUser: slotsPerUser,
            maxDataBytes: maxDataBytes,
            digestDryRunLimit: digestDryRunLimit
        )
        tokens = [
            "alice": try store.addUser(name: "alice", role: .user),
            "carol": try store.addUser(name: "carol", role: .user),
            "rita": try store.addUser(name: "rita", role: .reader),
            "root": try store.addUser(name: "root", role: .admin),
        ]
    }

    deinit {
        store.close()
        _ = run(["rm", "-rf", home])
    }

    func request(
        _ method: String,
        _ uri: String,
        as user: String? = "alice",
        headers: [String: String] = [:],
        body: [UInt8] = []
    ) -> APIResponse {
        var allHeaders = headers
        if let user, let token = tokens[user] { allHeaders["authorization"] = "Bearer \(token)" }
        let request = APIRequest(method: method, uri: uri, headers: allHeaders)!
        var offset = 0
        return api.handle(request) { buffer in
            let count = min(buffer.count, body.count - offset)
            buffer.copyMemory(
                from: UnsafeRawBufferPointer(rebasing: body.withUnsafeBytes { $0 }[offset..<offset + count])
            )
            offset += count
            return count
        }
    }

    /// A request whose body fails after `failAfter` bytes, like a client that disconnects.
    func requestFailingBody(_ uri: String, body: [UInt8], failAfter: Int) -> APIResponse {
        let request = APIRequest(method: "POST", uri: uri, headers: ["authorization": "Bearer \(tokens["alice"]!)"])!
        var offset = 0
        return api.handle(request) { buffer in
            if offset >= failAfter { throw ClientGone() }
            let count = min(buffer.count, failAfter - offset, body.count - offset)
            body.withUnsafeBytes {
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + count]))
            }
            offset += count
            return count
        }
    }

    func stagingEntries() -> [String] { listDirectory(home + "/staging") }
    func dataEntries() -> [String] { listDirectory(home + "/data") }
}

struct ClientGone: Error {}

/// Log lines kept in memory: (level, message, metadata rendered as text).
final class CapturedLog: Sendable {
    private let lines = Mutex<[(level: Logger.Level, message: String, metadata: [String: String])]>([])

    func append(_ level: Logger.Level, _ message: String, _ metadata: [String: String]) {
        lines.withLock { $0.append((level, message, metadata)) }
    }

    func entries(_ message: String) -> [[String: String]] {
        lines.withLock { $0.filter { $0.message == message }.map(\.metadata) }
    }
}

struct CapturingLogHandler: LogHandler {
    let log: CapturedLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        log.append(event.level, "\(event.message)", merged.mapValues { "\($0)" })
    }
}

func json(_ response: APIResponse) throws -> JSONValue {
    let bytes = try response.collectBody()
    guard let value = JSONValue.parse(bytes) else {
        throw TestFailure("not JSON: \(String(decoding: bytes, as: UTF8.self))")
    }
    return value
}

/// A tar archive of a small tree made in a temporary directory.
func makeArchive(format: ArchiveFormat, files: [String: String]) throws -> [UInt8] {
    let tree = TemporaryDirectory()
    let root = tree.path
    for (path, content) in files {
        let full = root + "/" + path
        if let slash = full.lastIndex(of: "/") { _ = run(["mkdir", "-p", String(full[..<slash])]) }
        let fd = open(full, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = content.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }
    var bytes: [UInt8] = []
    try writeArchive(of: root, format: format) { bytes.append(contentsOf: $0) }
    return bytes
}

func extractToTemporary(_ bytes: [UInt8]) throws -> String {
    let root = scratchDirectory("knit-api-out-")
    var offset = 0
    _ = try extractArchive(into: root) { buffer in
        let count = min(buffer.count, bytes.count - offset)
        bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + count])) }
        offset += count
        return count
    }
    return root
}
