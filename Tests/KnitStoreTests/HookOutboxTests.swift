import KnitCore
import KnitLMDB
import KnitSystem
import KnitTestSupport
import Testing

@testable import KnitStore

// The lifecycle hooks' outbox: one entry per after-hook URL for every status change the scheduler makes,
// written in the transaction of the change; none for the API's changes; the schema 2 → 3 migration.

private let stage = planSpec(inputs: [["stage:x"]], outputs: [["stage:y"]], log: ["type:log"])

@Suite struct HookOutboxTests {
    /// waiting → (ready) → starting → running → (completing) → done: one event per change and URL, in order,
    /// each carrying the Run Detail JSON after its change, the URLs of one event sharing its id.
    @Test func everySchedulerChangeRecordsItsEventsInOrder() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        defer { store.close() }
        let planId = try store.registerPlan(stage, creator: "alice").planId
        _ = try upload(store, tags: ["stage:x"])
        let runId = try #require(try store.findRuns(planIds: [planId]).first?.runId)
        // Nothing is recorded while no URL is set (knitd, or a scheduler without after hooks).
        #expect(try store.markReady(runId: runId))
        #expect(try store.pendingLifecycleEvents(limit: 100).isEmpty)

        let urls = ["http://127.0.0.1:1/a", "http://127.0.0.1:1/b"]
        store.recordLifecycleEvents(for: urls)
        #expect(try store.markStarting(runId: runId))
        #expect(try store.markStarting(runId: runId), "a repeated call changes nothing")
        #expect(try store.markRunning(runId: runId))
        #expect(try store.finishRun(runId: runId, exit: RunExitJSON(code: 0, message: ""), succeeded: true))
        #expect(!(try store.finishRun(runId: runId, exit: RunExitJSON(code: 0, message: ""), succeeded: true)))

        let events = try store.pendingLifecycleEvents(limit: 100)
        let statuses = ["starting", "starting", "running", "running", "completing", "completing", "done", "done"]
        #expect(events.map(\.status) == statuses)
        #expect(events.map(\.url) == Array(repeating: urls, count: 4).flatMap { $0 })
        #expect(events.map(\.sequence) == Array(events.map(\.sequence).sorted()))
        #expect(Set(events.map(\.sequence)).count == 8)
        for pair in stride(from: 0, to: 8, by: 2) {
            #expect(events[pair].eventId == events[pair + 1].eventId)
            #expect(events[pair].body == events[pair + 1].body)
        }
        #expect(Set(events.map(\.eventId)).count == 4)
        for event in events {
            let json = try #require(JSONValue.parse(event.body))
            #expect(json["runId"]?.stringValue == runId)
            #expect(json["status"]?.stringValue == event.status)
        }
        let done = try #require(JSONValue.parse(events[6].body))
        #expect(done["exit"]?["code"] == .number("0"))
        #expect(try store.statistics().hookOutbox == 8)

        // Delivered: removed exactly once; the sequence goes on from where it was.
        #expect(try store.removeLifecycleEvent(sequence: events[0].sequence))
        #expect(!(try store.removeLifecycleEvent(sequence: events[0].sequence)))
        #expect(try store.pendingLifecycleEvents(limit: 3).map(\.sequence) == events[1...3].map(\.sequence))
        for event in events.dropFirst() { #expect(try store.removeLifecycleEvent(sequence: event.sequence)) }
        #expect(try store.lifecycleOutboxLength() == 0)
        _ = try upload(store, tags: ["stage:x"])
        let second = try #require(try store.findRuns(planIds: [planId]).first { $0.runId != runId }?.runId)
        #expect(try store.markStarting(runId: second))
        let next = try store.pendingLifecycleEvents(limit: 100)
        #expect(next.map(\.status) == ["ready", "ready", "starting", "starting"], "waiting → starting is two changes")
        #expect(next.allSatisfy { $0.sequence > events.last!.sequence })
    }

    /// A URL taken out of the configuration: what it was owed is dropped at the scheduler's start, what the URLs
    /// still configured are owed stays, in order.
    @Test func deliveriesForURLsNoLongerConfiguredAreDropped() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        defer { store.close() }
        let kept = "http://127.0.0.1:1/kept"
        let gone = "http://127.0.0.1:1/gone"
        store.recordLifecycleEvents(for: [kept, gone])
        let planId = try store.registerPlan(stage, creator: "alice").planId
        _ = try upload(store, tags: ["stage:x"])
        let runId = try #require(try store.findRuns(planIds: [planId]).first?.runId)
        #expect(try store.markStarting(runId: runId))
        #expect(try store.markRunning(runId: runId))
        let before = try store.pendingLifecycleEvents(limit: 100)
        try #require(before.count == 6)

        #expect(try store.discardLifecycleEvents(notFor: [kept]) == [gone: 3])
        let after = try store.pendingLifecycleEvents(limit: 100)
        #expect(after == before.filter { $0.url == kept })
        #expect(try store.discardLifecycleEvents(notFor: [kept]).isEmpty, "nothing left to drop")
        // No after hooks at all any more: everything owed goes.
        #expect(try store.discardLifecycleEvents(notFor: []) == [kept: 3])
        #expect(try store.lifecycleOutboxLength() == 0)
    }

    /// A failed Run records aborting then failed; the API's changes (abort, tear-off, retry) record nothing, and an
    /// aborted Run finished by the scheduler records only its end.
    @Test func apiChangesRecordNothing() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        defer { store.close() }
        store.recordLifecycleEvents(for: ["http://127.0.0.1:1/hook"])
        let planId = try store.registerPlan(stage, creator: "alice").planId
        for _ in 0..<3 { _ = try upload(store, tags: ["stage:x"]) }
        let runs = try store.findRuns(planIds: [planId]).map(\.runId)
        try #require(runs.count == 3)
        // An aborted waiting Run is failed by the API in one transaction.
        _ = try store.requestStop(runId: runs[0], fail: true)
        #expect(try store.runDetail(runId: runs[0]).status == "failed")
        #expect(try store.pendingLifecycleEvents(limit: 100).isEmpty)
        _ = try store.retryRun(runId: runs[0])
        #expect(try store.runDetail(runId: runs[0]).status == "waiting")
        #expect(try store.pendingLifecycleEvents(limit: 100).isEmpty)

        #expect(try store.markStarting(runId: runs[1]))
        #expect(try store.markRunning(runId: runs[1]))
        let before = try store.pendingLifecycleEvents(limit: 100).count
        _ = try store.requestStop(runId: runs[1], fail: true)
        #expect(try store.pendingLifecycleEvents(limit: 100).count == before, "the abort itself records nothing")
        #expect(try store.finishRun(runId: runs[1], exit: RunExitJSON(code: 0, message: ""), succeeded: true))
        let ended = try store.pendingLifecycleEvents(limit: 100).dropFirst(before)
        #expect(ended.map(\.status) == ["failed"])

        #expect(try store.markStarting(runId: runs[2]))
        let started = try store.pendingLifecycleEvents(limit: 100).count
        #expect(try store.finishRun(runId: runs[2], exit: RunExitJSON(code: 3, message: "x"), succeeded: false))
        let failed = try store.pendingLifecycleEvents(limit: 100).dropFirst(started)
        #expect(failed.map(\.status) == ["aborting", "failed"])
    }

    /// A schema 2 store opens migrated to 3 with an empty outbox; a store of schema 4 is refused.
    @Test func aSchema2StoreIsMigratedAndANewerOneRefused() throws {
        let dir = TemporaryDirectory()
        do {
            let store = try openStore(dir.path)
            _ = try upload(store, tags: [])
            store.close()
        }
        do {
            // What schema 2 wrote: version 2 (its `hook_outbox`, which LMDB creates at every open, is empty).
            let env = try LMDBEnvironment(path: dir.path + "/db", mapSize: 64 << 20)
            let meta = try env.openDatabase(name: "meta")
            try env.write { txn in try txn.put(meta, key: Array("schema_version".utf8), value: Array("2".utf8)) }
            env.close()
        }
        do {
            let store = try openStore(dir.path)
            let version = try store.read("version") { txn in try txn.get(store.db.meta, key: KnitStore.schemaKey) }
            #expect(version == Array("3".utf8))
            #expect(try store.lifecycleOutboxLength() == 0)
            #expect(try store.findData(tags: [], since: nil, durationMs: nil).count == 1)
            try store.write("forge") { txn in
                try txn.put(store.db.meta, key: KnitStore.schemaKey, value: Array("4".utf8))
            }
            store.close()
        }
        let error = #expect(throws: StoreError.self) { try openStore(dir.path) }
        #expect(error?.code == .schemaMismatch)
        #expect(error?.message.contains("store schema version 4 is newer than this ") == true)
        #expect(error?.message.contains("knows (3)") == true)
    }
}
