import KnitCore
import KnitLMDB
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

@Suite struct StoreUploadTests {
    @Test func uploadBeginFinishGivesDetailWithSystemTags() throws {
        let dir = TemporaryDirectory()
        let clock = TestClock()
        let store = try openStore(dir.path, clock: clock)
        let ticket = try store.beginUpload(creator: "alice")
        #expect(KnitIdentifier.isWellFormed(ticket.knitId))
        #expect(ticket.stagingPath == dir.path + "/staging/" + ticket.knitId)
        #expect(pathExists(ticket.stagingPath))

        let processing = try store.dataDetail(knitId: ticket.knitId)
        #expect(processing.tags == TagSet([tag("knit#id:\(ticket.knitId)"), tag("knit#transient:processing")]))
        #expect(processing.upstream.run.status == "running")
        #expect(processing.upstream.run.plan.name == "knit#uploaded")
        #expect(processing.upstream.run.plan.image == nil)
        #expect(processing.upstream.mountpoint == MountpointJSON(path: "/upload", tags: []))

        writeFile(ticket.stagingPath + "/a.txt", "hello")
        clock.advance(1000)
        let done = try store.finishUpload(ticket, tags: [tag("project:p"), tag("type:raw")], sizeBytes: 5)
        let stamp = KnitTime(milliseconds: clock.milliseconds).description
        #expect(stamp == "2024-05-17T04:19:34.325+00:00")
        #expect(
            done.tags.tags.map(\.description) == [
                "knit#id:\(ticket.knitId)", "knit#timestamp:\(stamp)", "project:p", "type:raw",
            ]
        )
        #expect(done.upstream.run.status == "done")
        #expect(done.upstream.run.updatedAt == stamp)
        #expect(done.upstream.run.runId == ticket.runId)
        #expect(done.downstreams.isEmpty && done.nomination.isEmpty)
        #expect(try store.dataDetail(knitId: ticket.knitId) == done)
        #expect(!pathExists(ticket.stagingPath))
        #expect(readFileBytes(store.dataDirectory(knitId: ticket.knitId) + "/a.txt") == Array("hello".utf8))
        #expect(store.dataCount() == 1)
    }

    @Test func unknownDataIsNotFound() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let error = #expect(throws: StoreError.self) {
            try store.dataDetail(knitId: "00000000-0000-4000-8000-000000000000")
        }
        #expect(error?.code == .notFound)
        #expect(error?.message.contains("00000000-0000-4000-8000-000000000000") == true)
    }

    @Test func finishRejectsSystemTagsAndLeavesUploadOpen() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let ticket = try store.beginUpload(creator: "alice")
        let error = #expect(throws: StoreError.self) {
            try store.finishUpload(ticket, tags: [tag("knit#id:x")], sizeBytes: 0)
        }
        #expect(error?.code == .invalid)
        #expect(pathExists(ticket.stagingPath))
        #expect(try store.dataDetail(knitId: ticket.knitId).upstream.run.status == "running")
    }

    @Test func abandonLeavesNothingBehind() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let ticket = try store.beginUpload(creator: "alice")
        writeFile(ticket.stagingPath + "/partial", "xx")
        store.abandonUpload(ticket)
        #expect(!pathExists(ticket.stagingPath))
        #expect(!pathExists(store.dataDirectory(knitId: ticket.knitId)))
        #expect(store.dataCount() == 0)
        #expect(throws: StoreError.self) { try store.dataDetail(knitId: ticket.knitId) }
        #expect(try store.findData(tags: [], since: nil, durationMs: nil).isEmpty)
        #expect(listDirectory(dir.path + "/staging").isEmpty)
        // A finished upload cannot be finished twice, and abandoning it afterwards is a no-op.
        let done = try upload(store, tags: ["a:b"])
        store.abandonUpload(UploadTicket(knitId: done.knitId, runId: done.upstream.run.runId, stagingPath: ""))
        #expect(try store.dataDetail(knitId: done.knitId) == done)
    }

    @Test func recoveryAfterUnfinishedUpload() throws {
        let dir = TemporaryDirectory()
        var knitId = ""
        var kept = ""
        do {
            let store = try openStore(dir.path)
            kept = try upload(store, tags: ["keep:me"]).knitId
            let ticket = try store.beginUpload(creator: "alice")
            knitId = ticket.knitId
            writeFile(ticket.stagingPath + "/half", "half")
            writeFile(dir.path + "/staging/stray-file", "?")
            store.close()
        }
        let store = try openStore(dir.path)
        let report = store.recoverAtStartup()
        #expect(report == RecoveryReport(abandonedUploads: 1, removedStagingEntries: 1))
        #expect(store.dataCount() == 1)
        #expect(throws: StoreError.self) { try store.dataDetail(knitId: knitId) }
        #expect(listDirectory(dir.path + "/staging").isEmpty)
        #expect(try store.findData(tags: [], since: nil, durationMs: nil).map(\.knitId) == [kept])
        #expect(store.recoverAtStartup() == RecoveryReport())
    }
}

@Suite struct StoreFindTests {
    /// Three finished uploads one second apart, plus one still in progress.
    final class Fixture {
        let dir: TemporaryDirectory
        let clock = TestClock()
        let store: KnitStore
        var ids: [String] = []
        var inProgress: UploadTicket

        init() throws {
            let dir = TemporaryDirectory()
            store = try openStore(dir.path, clock: clock)
            self.dir = dir
            for tags in [["project:p", "type:raw"], ["project:p", "type:model"], ["project:q", "type:raw"]] {
                ids.append(try upload(store, tags: tags).knitId)
                clock.advance(1000)
            }
            inProgress = try store.beginUpload(creator: "bob")
        }

        func find(_ tags: [String], since: KnitTime? = nil, durationMs: Int64? = nil) throws -> [String] {
            try store.findData(tags: tags.map(tag), since: since, durationMs: durationMs).map(\.knitId)
        }
    }

    @Test func byUserTags() throws {
        let f = try Fixture()
        #expect(try f.find(["project:p"]) == [f.ids[0], f.ids[1]])
        #expect(try f.find(["type:raw"]) == [f.ids[0], f.ids[2]])
        #expect(try f.find(["project:p", "type:raw"]) == [f.ids[0]])
        #expect(try f.find(["project:q", "type:model"]).isEmpty)
        #expect(try f.find(["nope:x"]).isEmpty)
    }

    @Test func everythingOrderedByTimestampThenProcessingLast() throws {
        let f = try Fixture()
        #expect(try f.find([]) == f.ids + [f.inProgress.knitId])
    }

    @Test func bySystemTags() throws {
        let f = try Fixture()
        #expect(try f.find(["knit#id:\(f.ids[1])"]) == [f.ids[1]])
        #expect(try f.find(["knit#id:\(f.ids[1])", "type:model"]) == [f.ids[1]])
        #expect(try f.find(["knit#id:\(f.ids[1])", "type:raw"]).isEmpty)
        #expect(try f.find(["knit#transient:processing"]) == [f.inProgress.knitId])
        #expect(try f.find(["knit#transient:failed"]).isEmpty)
        let detail = try f.store.dataDetail(knitId: f.ids[2])
        let stamp = try #require(detail.tags.values(of: "knit#timestamp").first)
        #expect(try f.find(["knit#timestamp:\(stamp)"]) == [f.ids[2]])
        // Same instant written another way.
        let instant = try KnitTime(rfc3339: stamp)
        #expect(try f.find(["knit#timestamp:\(instant.render(offsetMinutes: 540))"]) == [f.ids[2]])
    }

    @Test func contradictoryOrUnknownSystemTagsGiveEmpty() throws {
        let f = try Fixture()
        #expect(try f.find(["knit#id:\(f.ids[0])", "knit#id:\(f.ids[1])"]).isEmpty)
        #expect(try f.find(["knit#transient:processing", "knit#transient:failed"]).isEmpty)
        #expect(try f.find(["knit#unknown:x"]).isEmpty)
        #expect(try f.find(["knit#timestamp:yesterday"]).isEmpty)
        #expect(try f.find(["knit#transient:other"]).isEmpty)
    }

    @Test func sinceAndDuration() throws {
        let f = try Fixture()
        let first = KnitTime(milliseconds: 1_715_919_573_325)
        #expect(try f.find(["project:p"], since: first) == [f.ids[0], f.ids[1]])
        #expect(try f.find(["project:p"], since: KnitTime(milliseconds: first.milliseconds + 1)) == [f.ids[1]])
        #expect(try f.find([], since: first, durationMs: 1000) == [f.ids[0]])
        #expect(try f.find([], since: first, durationMs: 1001) == [f.ids[0], f.ids[1]])
        // The in-progress Data has no timestamp: its Run's update time (3 s after the first) counts.
        #expect(try f.find([], since: KnitTime(milliseconds: first.milliseconds + 3000)) == [f.inProgress.knitId])
    }
}

@Suite struct StoreTagTests {
    @Test func updateOrderAndIdempotence() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let id = try upload(store, tags: ["a:1", "a:2", "b:1", "c:1"]).knitId

        // remove then add of the same tag: present at the end.
        var detail = try store.updateTags(knitId: id, change: TagChangeJSON(add: [tag("c:1")], remove: [tag("c:1")]))
        #expect(detail.tags.contains(tag("c:1")))
        // remove_key drops every value of the key; add of the same key afterwards wins.
        detail = try store.updateTags(
            knitId: id,
            change: TagChangeJSON(add: [tag("a:3")], remove: [tag("zz:absent")], removeKey: ["a"])
        )
        let user = detail.tags.tags.filter { !$0.isSystem }.map(\.description)
        #expect(user == ["a:3", "b:1", "c:1"])
        // Applying the same change again changes nothing.
        let again = try store.updateTags(
            knitId: id,
            change: TagChangeJSON(add: [tag("a:3")], remove: [tag("zz:absent")], removeKey: ["a"])
        )
        #expect(again == detail)
        // The index follows.
        #expect(try store.findData(tags: [tag("a:1")], since: nil, durationMs: nil).isEmpty)
        #expect(try store.findData(tags: [tag("a:3"), tag("b:1")], since: nil, durationMs: nil).map(\.knitId) == [id])
    }

    @Test func systemKeysRejectedAndNothingChanges() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let before = try upload(store, tags: ["a:1"])
        let changes = [
            TagChangeJSON(add: [tag("b:1"), tag("knit#id:x")]),
            TagChangeJSON(add: [tag("b:1")], remove: [tag("knit#transient:processing")]),
            TagChangeJSON(add: [tag("b:1")], removeKey: ["knit#timestamp"]),
        ]
        for change in changes {
            let error = #expect(throws: StoreError.self) { try store.updateTags(knitId: before.knitId, change: change) }
            #expect(error?.code == .invalid)
        }
        #expect(try store.dataDetail(knitId: before.knitId) == before)
        #expect(try store.findData(tags: [tag("b:1")], since: nil, durationMs: nil).isEmpty)
        let missing = #expect(throws: StoreError.self) {
            try store.updateTags(knitId: "nope", change: TagChangeJSON(add: [tag("b:1")]))
        }
        #expect(missing?.code == .notFound)
    }

    @Test func longTagsAreIndexed() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let long = "blob:" + String(repeating: "v", count: Tag.maximumValueLength)
        let id = try upload(store, tags: [long, "x:1"]).knitId
        #expect(try store.findData(tags: [tag(long)], since: nil, durationMs: nil).map(\.knitId) == [id])
        #expect(try store.dataDetail(knitId: id).tags.contains(tag(long)))
    }
}

@Suite struct StoreSchemaAndUserTests {
    @Test func schemaVersionGate() throws {
        let dir = TemporaryDirectory()
        do {
            let store = try openStore(dir.path)
            store.close()
        }
        do {
            // Reopening a store of the current version works and keeps the same pseudo plan.
            let store = try openStore(dir.path)
            let first = try upload(store, tags: []).upstream.run.plan.planId
            store.close()
            let reopened = try openStore(dir.path)
            #expect(try upload(reopened, tags: []).upstream.run.plan.planId == first)
            reopened.close()
        }
        do {
            let env = try LMDBEnvironment(path: dir.path + "/db", mapSize: 64 << 20)
            let meta = try env.openDatabase(name: "meta")
            try env.write { txn in try txn.put(meta, key: Array("schema_version".utf8), value: Array("999".utf8)) }
            env.close()
        }
        let error = #expect(throws: StoreError.self) { try openStore(dir.path) }
        #expect(error?.code == .schemaMismatch)
        #expect(error?.message.hasPrefix("store schema version 999 is newer than this ") == true)
        #expect(error?.message.contains(" knows (\(KnitStore.schemaVersion)); ") == true)
    }

    @Test func usersAndTokens() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let token = try store.addUser(name: "alice", role: .admin)
        #expect(token.hasPrefix("knit_") && token.count == 5 + 43)
        _ = try store.addUser(name: "bob.b-1", role: .reader)
        let duplicate = #expect(throws: StoreError.self) { try store.addUser(name: "alice", role: .user) }
        #expect(duplicate?.code == .conflict)
        for bad in ["", "Alice", "-x", "a b", String(repeating: "a", count: 64)] {
            let error = #expect(throws: StoreError.self) { try store.addUser(name: bad, role: .user) }
            #expect(error?.code == .invalid)
        }

        #expect(store.authenticate(token: token) == StoreUser(name: "alice", role: .admin))
        #expect(store.authenticate(token: token + "x") == nil)
        #expect(store.authenticate(token: "knit_wrong") == nil)
        #expect(store.authenticate(token: "") == nil)

        let second = try store.issueToken(name: "alice")
        #expect(second != token)
        #expect(store.authenticate(token: second)?.name == "alice")
        #expect(store.authenticate(token: token)?.name == "alice")
        let missing = #expect(throws: StoreError.self) { try store.issueToken(name: "carol") }
        #expect(missing?.code == .notFound)

        #expect(
            try store.users() == [StoreUser(name: "alice", role: .admin), StoreUser(name: "bob.b-1", role: .reader)]
        )

        store.close()
        let file = readFileBytes(dir.path + "/db/data.mdb")
        #expect(!file.isEmpty)
        for raw in [token, second] {
            #expect(!contains(file, Array(raw.utf8)))
            #expect(!contains(file, Array(raw.dropFirst(5).utf8)))
        }
    }

    func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        let first = needle[0]
        var index = 0
        while let found = haystack[index...].firstIndex(of: first), found + needle.count <= haystack.count {
            if haystack[found..<found + needle.count].elementsEqual(needle) { return true }
            index = found + 1
        }
        return false
    }
}
