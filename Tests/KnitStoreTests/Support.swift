import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

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
