import KnitCore
import KnitLMDB
import KnitSystem
import KnitTestSupport
import Testing

@testable import KnitStore

// `findDataJSON` writes a query's answer from the records' bytes; `findData` + the JSON encoder is the
// judge. The store holds every kind of Data a query can meet: uploads of several users, outputs of waiting,
// done and failed Runs (mountpoint tags, logs, exit messages needing escapes), Data consumed by Runs and
// assignable to plans, tags sorting before and after the `knit#` block, equal timestamps, and a record of
// the first format (no copy of its producer).

private let producing = planSpec(
    inputs: [["stage:x"]],
    outputs: [["stage:y", "q:say \"hi\""]],
    log: ["type:log"],
    annotations: ["team=vision", "note=a \\ b"]
)
private let consuming = planSpec(image: "repo/eval:v1", inputs: [["stage:y"]], outputs: [["stage:z"]])
private let nominating = planSpec(image: "repo/other:v2", inputs: [["kind:other"], ["loose:1"]])

@Suite struct FindAnswerTests {
    @Test func theAnswerFromRecordBytesIsTheEncodedAnswerOfEveryQuery() throws {
        let dir = TemporaryDirectory()
        let clock = TestClock()
        let store = try openStore(dir.path, clock: clock)
        let producer = try store.registerPlan(producing, creator: "alice")
        _ = try store.registerPlan(consuming, creator: "bob")
        _ = try store.registerPlan(nominating, creator: "alice")

        // Three uploads at the same instant (ordered by knitId), then others later.
        _ = try upload(store, tags: ["stage:x", "a:1", "knit!:early", "knit-late:1", "zz:ünïcode"])
        _ = try upload(store, tags: ["stage:x", "note:back\\slash \"q\"", "kind:other"], creator: "bob")
        _ = try upload(store, tags: ["loose:1", "knit:plain"], creator: "carol")
        clock.advance(1234)
        let lone = try upload(store, tags: ["loose:2", "ж:日本"], creator: "carol")
        clock.advance(1000)
        _ = try upload(store, tags: ["stage:x"])

        let runs = try store.findRuns(planIds: [producer.planId])
        try #require(runs.count == 3)
        // One Run done, one failed with a message that needs escapes, one left waiting.
        for (index, run) in runs.prefix(2).enumerated() {
            #expect(try store.markReady(runId: run.runId))
            #expect(try store.markStarting(runId: run.runId))
            #expect(try store.markRunning(runId: run.runId))
            clock.advance(7)
            let exit =
                index == 0
                ? RunExitJSON(code: 0, message: "")
                : RunExitJSON(code: 3, message: "boom \"x\"\n\tline \\ \u{1}")
            #expect(try store.finishRun(runId: run.runId, exit: exit, succeeded: index == 0))
        }
        // The first format: the lone upload's record without its producer's copy.
        try rewriteInFirstFormat(store, knitId: lone.knitId)

        let everything = try store.findData(tags: [], since: nil, durationMs: nil)
        #expect(everything.count >= 12)
        #expect(everything.contains { !$0.downstreams.isEmpty })
        #expect(everything.contains { !$0.nomination.isEmpty })
        #expect(everything.contains { $0.upstream.log != nil })
        #expect(everything.contains { $0.upstream.run.exit?.code == 3 })

        var queries: [(tags: [KnitCore.Tag], since: KnitTime?, durationMs: Int64?, creator: String?)] = [
            ([], nil, nil, nil),
            ([tag("knit#id:a"), tag("knit#id:b")], nil, nil, nil),
            ([tag("knit#unknown:1")], nil, nil, nil),
            ([tag("absent:1")], nil, nil, nil),
            ([tag("knit#transient:processing")], nil, nil, nil),
            ([tag("knit#transient:failed")], nil, nil, nil),
        ]
        for creator in ["alice", "bob", "carol", "nobody"] { queries.append(([], nil, nil, creator)) }
        for detail in everything {
            for tag in detail.tags { queries.append(([tag], nil, nil, nil)) }
            for tag in detail.tags where !tag.isSystem {
                queries.append(([tag, KnitCore.Tag(key: SystemTag.id, value: detail.knitId)], nil, nil, nil))
                queries.append(([tag, try KnitCore.Tag(parsing: "stage:x")], nil, nil, "alice"))
            }
            let instant = try KnitTime(rfc3339: detail.upstream.run.updatedAt)
            queries.append(([], instant, nil, nil))
            queries.append(([], instant, 1, nil))
            queries.append(([], instant, 1000, nil))
            queries.append(([tag("stage:x")], instant, Int64.max, nil))
        }
        var nonEmpty = 0
        for query in queries {
            let expected = try KnitJSON.encode(
                try store.findData(
                    tags: query.tags,
                    since: query.since,
                    durationMs: query.durationMs,
                    creator: query.creator
                )
            )
            let answer = try store.findDataJSON(
                tags: query.tags,
                since: query.since,
                durationMs: query.durationMs,
                creator: query.creator
            )
            let what = "\(query.tags) since \(String(describing: query.since)) creator \(query.creator ?? "-")"
            if answer != expected {
                Issue.record(
                    "\(what):\n\(String(decoding: answer, as: UTF8.self))\n\(String(decoding: expected, as: UTF8.self))"
                )
            }
            if expected.count > 2 { nonEmpty += 1 }
        }
        #expect(nonEmpty > queries.count / 2)
    }

    @Test func aStoreWithoutLinksAnswersTheSameAndATruncatedRecordIsAnError() throws {
        let dir = TemporaryDirectory()
        let clock = TestClock()
        let store = try openStore(dir.path, clock: clock)
        for index in 0..<20 {
            _ = try upload(store, tags: ["shard:\(index % 3)", "batch:\(index / 7)"], creator: "u\(index % 2)")
            if index % 4 == 0 { clock.advance(1) }
        }
        for query in [[tag("shard:1")], [tag("shard:2"), tag("batch:1")], []] {
            let expected = try KnitJSON.encode(try store.findData(tags: query, since: nil, durationMs: nil))
            #expect(try store.findDataJSON(tags: query, since: nil, durationMs: nil) == expected)
            #expect(expected.count > 2)
        }
        let victim = try store.findData(tags: [tag("shard:0")], since: nil, durationMs: nil)[0].knitId
        try store.write("truncate") { txn in
            let bytes = try #require(try txn.get(store.db.data, key: Array(victim.utf8)))
            try txn.put(store.db.data, key: Array(victim.utf8), value: bytes.dropLast(3))
        }
        #expect(throws: StoreError.self) { try store.findDataJSON(tags: [tag("shard:0")], since: nil, durationMs: nil) }
        #expect(throws: StoreError.self) { try store.findData(tags: [tag("shard:0")], since: nil, durationMs: nil) }
    }
}

/// Writes the Data's record again in format 1 (no producer copy), as stores of the first releases hold it.
private func rewriteInFirstFormat(_ store: KnitStore, knitId: String) throws {
    try store.write("downgrade") { txn in
        let bytes = try #require(try txn.get(store.db.data, key: Array(knitId.utf8)))
        let record = try bytes.withUnsafeBytes { try DataRecord(decoding: $0) }
        var writer = RecordWriter(version: 1)
        writer.string(record.knitId)
        writer.string(record.runId)
        writer.string(record.outputPath)
        writer.tags(record.userTags)
        writer.optionalInt(record.timestampMs)
        writer.optionalInt(record.sizeBytes)
        writer.string(record.creator)
        try txn.put(store.db.data, key: Array(knitId.utf8), value: writer.bytes)
    }
    let reread = try store.read("check") { txn in
        try #require(try txn.get(store.db.data, key: Array(knitId.utf8))).first
    }
    #expect(reread == 1)
}
