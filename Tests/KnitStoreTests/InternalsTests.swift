import KnitCore
import KnitLMDB
import Testing

@testable import KnitStore

@Suite struct StoreInternalsTests {
    @Test func recordCodecRoundTripAndTruncation() throws {
        let data = DataRecord(
            knitId: "k",
            runId: "r",
            outputPath: "/upload",
            userTags: [Tag(key: "a", value: "b:c"), Tag(key: "é", value: "")],
            timestampMs: -5,
            sizeBytes: nil,
            creator: "alice"
        )
        let bytes = data.encoded()
        let decoded = try bytes.withUnsafeBytes { try DataRecord(decoding: $0) }
        #expect(decoded.userTags == data.userTags && decoded.timestampMs == -5 && decoded.sizeBytes == nil)
        #expect(decoded.creator == "alice" && decoded.outputPath == "/upload")

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

    @Test func failedRunGivesTransientFailedTag() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let done = try upload(store, tags: ["a:1"])
        try store.env.write { txn in
            var run = try store.run(txn, done.upstream.run.runId)
            run.status = .failed
            try txn.put(store.db.runs, key: Array(run.runId.utf8), value: run.encoded())
        }
        let detail = try store.dataDetail(knitId: done.knitId)
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
}
