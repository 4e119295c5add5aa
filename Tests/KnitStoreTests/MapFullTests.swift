import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

/// A store whose LMDB map is used up: the next write is refused as `storageFull` (the API answers 507), names the
/// cause, and loses nothing that was stored before.
@Suite struct MapFullTests {
    @Test func aFullMapRefusesTheNextUploadClearlyAndKeepsEverythingStored() throws {
        let home = TemporaryDirectory()
        let store = try KnitStore(home: home.path, logger: quietLogger, mapSize: 1 << 20)
        defer { store.close() }
        // Long tags fill the 1 MiB map in a few hundred uploads.
        let padding = String(repeating: "x", count: 400)
        var stored: [String] = []
        var refusal: StoreError?
        for i in 0..<5000 {
            do throws(StoreError) {
                let ticket = try store.beginUpload(creator: "alice")
                writeFile(ticket.stagingPath + "/file.txt", "upload \(i)")
                let tags = (0..<8).map { tag("pad\($0):\(i)-\(padding)") } + [tag("full:test")]
                do throws(StoreError) {
                    stored.append(try store.finishUpload(ticket, tags: tags, sizeBytes: 9).knitId)
                } catch {
                    store.abandonUpload(ticket)
                    throw error
                }
            } catch {
                refusal = error
                break
            }
        }
        let error = try #require(refusal, "1 MiB of map never filled up")
        #expect(error.code == .storageFull)
        #expect(error.message.contains("database is full"))
        #expect(!stored.isEmpty)
        // Everything finished before the refusal is still there and findable.
        let found = try store.findData(tags: [tag("full:test")], since: nil, durationMs: nil)
        #expect(Set(found.map(\.knitId)) == Set(stored))
        #expect(try store.statistics().mapUsedBytes <= 1 << 20)
    }
}
