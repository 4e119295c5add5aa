import KnitCore
import KnitStore
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A fresh directory under /tmp, removed by `remove()`.
struct TemporaryDirectory: ~Copyable {
    let path: String

    init() {
        var template = Array("/tmp/knit-store-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { removeTree(path) }
}

func removeTree(_ path: String) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        for name in directoryEntries(path) { removeTree(path + "/" + name) }
        rmdir(path)
    } else {
        unlink(path)
    }
}

func directoryEntries(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

func pathExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

func writeFile(_ path: String, _ text: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "open \(path)")
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

func readFileBytes(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if got <= 0 { break }
        out.append(contentsOf: buffer[0..<got])
    }
    return out
}

let quietLogger = Logger(label: "knit.store.test", factory: { _ in SwiftLogNoOpLogHandler() })

/// A clock the test moves by hand.
final class TestClock: Sendable {
    private let now = Atomic<Int64>(1_715_919_573_325)  // 2024-05-17T04:19:33.325Z
    var milliseconds: Int64 { now.load(ordering: .relaxed) }
    func advance(_ delta: Int64) { now.add(delta, ordering: .relaxed) }
    var function: @Sendable () -> Int64 { { [self] in self.milliseconds } }
}

func tag(_ text: String) -> Tag { try! Tag(parsing: text) }

func openStore(_ home: String, clock: TestClock? = nil) throws -> KnitStore {
    try KnitStore(home: home, logger: quietLogger, mapSize: 64 << 20, clock: clock?.function ?? KnitStore.systemClock)
}

/// Begins and finishes an upload with one file and `tags`.
func upload(_ store: KnitStore, tags: [String], creator: String = "alice") throws -> DataDetailJSON {
    let ticket = try store.beginUpload(creator: creator)
    writeFile(ticket.stagingPath + "/file.txt", "hello")
    return try store.finishUpload(ticket, tags: tags.map(tag), sizeBytes: 5)
}
