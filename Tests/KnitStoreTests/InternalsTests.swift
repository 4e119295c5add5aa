import KnitCore
import KnitLMDB
import KnitSystem
import KnitTestSupport
import Testing

@testable import KnitStore

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct StoreInternalsTests {
    @Test func recordCodecRoundTripAndTruncation() throws {
        let data = DataRecord(
            knitId: "k",
            runId: "r",
            outputPath: "/upload",
            userTags: [Tag(key: "a", value: "b:c"), Tag(key: "é", value: "")],
            timestampMs: -5,
            sizeBytes: nil,
            creator: "alice",
            producer: ProducerSnapshot(
                status: .failed,
                updatedAtMs: 7,
                planId: "p",
                exit: RunExitJSON(code: 1, message: "oom ✗")
            )
        )
        let bytes = data.encoded()
        #expect(bytes.first == 2)
        let decoded = try bytes.withUnsafeBytes { try DataRecord(decoding: $0) }
        #expect(decoded.userTags == data.userTags && decoded.timestampMs == -5 && decoded.sizeBytes == nil)
        #expect(decoded.creator == "alice" && decoded.outputPath == "/upload")
        #expect(decoded.producer == data.producer)
        var noExit = data
        noExit.producer?.exit = nil
        noExit.producer?.status = .running
        let noExitBack = try noExit.encoded().withUnsafeBytes { try DataRecord(decoding: $0) }
        #expect(noExitBack.producer == noExit.producer && noExitBack.creator == "alice")

        let run = RunRecord(
            runId: "r",
            planId: "p",
            status: .failed,
            updatedAtMs: 42,
            exit: RunExitJSON(code: 253, message: "aborted"),
            outputs: ["k1", "k2"],
            creator: "bob"
        )
        let runBack = try run.encoded().withUnsafeBytes { try RunRecord(decoding: $0) }
        #expect(runBack.exit == run.exit && runBack.outputs == run.outputs && runBack.status == .failed)

        let cut = Array(bytes.dropLast(3))
        let error = #expect(throws: StoreError.self) { try cut.withUnsafeBytes { try DataRecord(decoding: $0) } }
        #expect(error?.code == .corrupted)
        let wrongVersion = [UInt8(9)] + bytes.dropFirst()
        #expect(throws: StoreError.self) { try wrongVersion.withUnsafeBytes { try DataRecord(decoding: $0) } }
    }

    /// A small tree is fsynced entry by entry (files and directories, not symlinks); a tree larger than the
    /// limit is put on disk with one syncfs, and the walk leaves every file as it was.
    @Test func syncTreeFsyncsSmallTreesPerEntryAndLargeOnesWithSyncfs() throws {
        let dir = TemporaryDirectory()
        dir.mkdir("t")
        dir.mkdir("t/sub")
        for i in 0..<20 { dir.write("t/sub/f\(i)", "file \(i)\n") }
        #expect(symlink("sub/f0", dir.file("t/link")) == 0)
        #expect(try FileSystem.syncTree(dir.file("t")) == 22)
        #expect(try FileSystem.syncTree(dir.file("t"), individually: 22) == 22)
        #expect(try FileSystem.syncTree(dir.file("t"), individually: 21) == nil)
        #expect(try FileSystem.syncTree(dir.file("t"), individually: 0) == nil)
        for i in 0..<20 { #expect(readText(dir.file("t/sub/f\(i)")) == "file \(i)\n") }
        #expect(throws: StoreError.self) { try FileSystem.syncTree(dir.file("missing"), individually: 0) }
    }

    @Test func failedRunGivesTransientFailedTag() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let done = try upload(store, tags: ["a:1"])
        try store.env.write { txn in
            var run = try store.run(txn, done.upstream.run.runId)
            run.status = .failed
            run.updatedAtMs += 5
            run.exit = RunExitJSON(code: 137, message: "killed")
            try store.putRun(txn, run)
        }
        let detail = try store.dataDetail(knitId: done.knitId)
        #expect(detail.upstream.run.status == "failed")
        #expect(detail.upstream.run.exit == RunExitJSON(code: 137, message: "killed"))
        #expect(detail.upstream.run.updatedAt != done.upstream.run.updatedAt)
        #expect(detail.tags.values(of: "knit#timestamp") == done.tags.values(of: "knit#timestamp"))
        #expect(detail.tags.contains(tag("knit#transient:failed")))
        #expect(!detail.tags.contains(tag("knit#transient:processing")))
        let found = try store.findData(tags: [tag("knit#transient:failed"), tag("a:1")], since: nil, durationMs: nil)
        #expect(found.map(\.knitId) == [done.knitId])
        #expect(try store.findData(tags: [tag("knit#transient:processing")], since: nil, durationMs: nil).isEmpty)
    }

    @Test func concurrentReadersAndAWriter() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        for index in 0..<20 { _ = try upload(store, tags: ["group:\(index % 2)"]) }
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    var total = 0
                    for _ in 0..<50 {
                        total += try store.findData(tags: [tag("group:1")], since: nil, durationMs: nil).count
                    }
                    return total
                }
            }
            group.addTask {
                for _ in 0..<5 { _ = try upload(store, tags: ["other:x"]) }
                return 0
            }
            var sum = 0
            for try await count in group { sum += count }
            #expect(sum == 4 * 50 * 10)
        }
        #expect(store.dataCount() == 25)
    }

    @Test func formatOneRecordsAreReadAndResolvedFromTheirRun() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let current = try upload(store, tags: ["b:2", "a:1"])
        // Rewrite the Data record in format 1 (no producer copy), as a store written before format 2 has it.
        try store.env.write { txn in
            let record = try #require(try store.dataRecord(txn, Array(current.knitId.utf8)))
            var writer = RecordWriter(version: 1)
            writer.string(record.knitId)
            writer.string(record.runId)
            writer.string(record.outputPath)
            writer.count(record.userTags.count)
            for tag in record.userTags {
                writer.string(tag.key)
                writer.string(tag.value)
            }
            writer.optionalInt(record.timestampMs)
            writer.optionalInt(record.sizeBytes)
            writer.string(record.creator)
            let old = try writer.bytes.withUnsafeBytes { try DataRecord(decoding: $0) }
            #expect(old.producer == nil && old.userTags == record.userTags && old.creator == record.creator)
            try txn.put(store.db.data, key: Array(current.knitId.utf8), value: writer.bytes)
        }
        #expect(try store.dataDetail(knitId: current.knitId) == current)
        #expect(try store.findData(tags: [tag("a:1")], since: nil, durationMs: nil) == [current])
        // A later change writes it back in the current format.
        let changed = try store.updateTags(knitId: current.knitId, change: TagChangeJSON(add: [tag("c:3")]))
        #expect(changed.upstream == current.upstream)
        let format = try store.env.read { txn in try txn.get(store.db.data, key: Array(current.knitId.utf8))?.first }
        #expect(format == 2)
    }

    @Test func putRunUpdatesEveryOutputOfTheRun() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let first = try upload(store, tags: ["x:1"])
        let second = try upload(store, tags: ["x:2"])
        let outsider = try upload(store, tags: ["x:3"])
        try store.env.write { txn in
            // One Run with two outputs, as a Plan's Run will have.
            var run = try store.run(txn, first.upstream.run.runId)
            run.outputs = [first.knitId, second.knitId]
            run.status = .running
            try store.putRun(txn, run)
        }
        for knitId in [first.knitId, second.knitId] {
            let detail = try store.dataDetail(knitId: knitId)
            #expect(detail.upstream.run.status == "running")
            #expect(detail.tags.contains(tag("knit#transient:processing")))
        }
        #expect(try store.dataDetail(knitId: outsider.knitId) == outsider)
        let processing = try store.findData(tags: [tag("knit#transient:processing")], since: nil, durationMs: nil)
        #expect(Set(processing.map(\.knitId)) == [first.knitId, second.knitId])
    }

    @Test func systemTagsAreMergedInTagSetOrder() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let keys = ["a", "kn", "knit", "knit\"", "knit$", "knita", "knit#".uppercased(), "z", "é", "Knit"]
        let detail = try upload(store, tags: keys.map { "\($0):v" })
        #expect(detail.tags.tags == TagSet(Array(detail.tags.tags.reversed())).tags)
        #expect(detail.tags.count == keys.count + 2)
        let onlySystem = try upload(store, tags: [])
        #expect(onlySystem.tags.tags.map(\.key) == ["knit#id", "knit#timestamp"])
        let early = try upload(store, tags: ["a:1"])
        #expect(early.tags.tags.map(\.key) == ["a", "knit#id", "knit#timestamp"])
        let late = try upload(store, tags: ["z:1"])
        #expect(late.tags.tags.map(\.key) == ["knit#id", "knit#timestamp", "z"])
    }
}
