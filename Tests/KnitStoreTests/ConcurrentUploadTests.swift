import Foundation
import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Synchronization
import Testing

/// Uploads finished at the same time share write transactions (the environment's group commit); each must still
/// be stored, visible and on disk exactly as if it had committed alone.
@Suite struct ConcurrentUploadTests {
    @Test func concurrentFinishesAreAllDurableAndVisible() throws {
        let home = TemporaryDirectory()
        let writers = 32
        let finished = Mutex<[Int: String]>([:])
        let failures = Mutex<[String]>([])
        do {
            let store = try openStore(home.path)
            defer { store.close() }
            let tickets = try (0..<writers).map { _ in try store.beginUpload(creator: "alice") }
            for (i, ticket) in tickets.enumerated() { writeFile(ticket.stagingPath + "/file.txt", "writer \(i)") }
            // Threads, not a concurrent loop: that would run only as many at once as there are cores.
            let start = DispatchSemaphore(value: 0)
            let done = DispatchGroup()
            for (i, ticket) in tickets.enumerated() {
                done.enter()
                Thread.detachNewThread {
                    defer { done.leave() }
                    start.wait()
                    do {
                        let detail = try store.finishUpload(
                            ticket,
                            tags: [tag("group:commit"), tag("writer:\(i)")],
                            sizeBytes: Int64("writer \(i)".utf8.count)
                        )
                        finished.withLock { $0[i] = detail.knitId }
                    } catch { failures.withLock { $0.append("\(i): \(error)") } }
                }
            }
            for _ in 0..<writers { start.signal() }
            #expect(done.wait(timeout: .now() + 120) == .success, "finishUpload calls did not return")
            #expect(failures.withLock { $0 } == [])
            // Visible to a reader right away, each under its own tag.
            let found = try store.findData(tags: [tag("group:commit")], since: nil, durationMs: nil)
            #expect(Set(found.map(\.knitId)) == Set(finished.withLock { $0.values }))
            for (i, knitId) in finished.withLock({ $0 }) {
                let mine = try store.findData(tags: [tag("writer:\(i)")], since: nil, durationMs: nil)
                #expect(mine.map(\.knitId) == [knitId])
            }
        }
        // And stored: a fresh open of the environment sees every one, done, with its content in place.
        let ids = finished.withLock { $0 }
        #expect(ids.count == writers)
        let reopened = try openStore(home.path)
        defer { reopened.close() }
        let found = try reopened.findData(tags: [tag("group:commit")], since: nil, durationMs: nil)
        #expect(Set(found.map(\.knitId)) == Set(ids.values))
        #expect(found.allSatisfy { $0.upstream.run.status == "done" })
        for (i, knitId) in ids {
            let content = readFileBytes(reopened.dataDirectory(knitId: knitId) + "/file.txt")
            #expect(String(decoding: content, as: UTF8.self) == "writer \(i)")
        }
    }
}
