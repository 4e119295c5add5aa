import Foundation
import KnitCore
import KnitLMDB
import KnitSystem
import KnitTestSupport
import Synchronization
import Testing

@testable import KnitStore

#if canImport(Glibc)
    import Glibc
#endif

// Kept usage (bytes and Data count per user, adjusted by every writer of `data`) against a full recount of the
// Data records; the schema 1 → 2 migration that builds it for older stores; fsck's check and repair of it.

/// Bytes and Data count per creator, image plans per creator and Runs of them by status, summed here from every
/// record, independently of the store's own recount.
private func recount(_ store: KnitStore) throws -> [String: KeptUsage] {
    try store.read("test recount") { txn in
        var counted: [String: KeptUsage] = [:]
        try txn.forEach(store.db.data) { _, value in
            let record = try DataRecord(decoding: value)
            counted[record.creator, default: KeptUsage()].data += 1
            counted[record.creator, default: KeptUsage()].bytes += record.sizeBytes ?? 0
            return true
        }
        var imagePlans: Set<String> = []
        try txn.forEach(store.db.plans) { _, value in
            let plan = try KnitStore.decode(PlanRecord.self, value)
            if let creator = plan.creator, plan.pseudoName == nil {
                counted[creator, default: KeptUsage()].plans += 1
                imagePlans.insert(plan.planId)
            }
            return true
        }
        try txn.forEach(store.db.runs) { _, value in
            let run = try RunRecord(decoding: value)
            if imagePlans.contains(run.planId), run.status != .invalidated {
                counted[run.creator, default: KeptUsage()].runs[run.status.rawValue, default: 0] += 1
            }
            return true
        }
        return counted
    }
}

/// What the usage report shows per user, users holding nothing left out (as the recount leaves them out).
private func reported(_ store: KnitStore) throws -> [String: KeptUsage] {
    var shown: [String: KeptUsage] = [:]
    for row in try store.usageReport() where row.bytes != 0 || row.data != 0 || row.plans != 0 || !row.runs.isEmpty {
        shown[row.user] = KeptUsage(bytes: row.bytes, data: row.data, plans: row.plans, runs: row.runs)
    }
    return shown
}

/// Makes `store` look like one the previous release (schema 1) wrote: the same Data, Run and Plan records
/// (their formats did not change), no kept usage, and `schema_version` 1.
private func rewindToSchema1(_ store: KnitStore) throws {
    try store.write("rewind to schema 1") { txn in
        var users: [[UInt8]] = []
        try txn.forEach(store.db.usage) { key, _ in
            users.append(Array(key))
            return true
        }
        for user in users { try txn.delete(store.db.usage, key: user) }
        try txn.put(store.db.meta, key: KnitStore.schemaKey, value: Array("1".utf8))
    }
}

/// A deterministic generator (SplitMix64), so a failing sequence can be replayed from its seed.
private struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct UsageTests {
    /// Random sequences of uploads (finished, abandoned, left open), Runs started and finished, retries, deletes,
    /// tag changes that start Runs, plan (de)activation and start-up recovery, over three users who own plans and
    /// uploads: after every step the kept usage (bytes, Data, plans, Runs by status), the usage report and fsck's
    /// check agree with a full recount.
    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func keptUsageEqualsARecountAfterEveryStep(seed: UInt64) throws {
        let dir = TemporaryDirectory()
        let clock = TestClock()
        let store = try openStore(dir.path, clock: clock)
        defer { store.close() }
        var random = SeededGenerator(state: seed)
        let users = ["alice", "bob", "carol"]
        let planA = try store.registerPlan(
            planSpec(inputs: [["stage:x"]], outputs: [["stage:y"]], log: ["type:log"]),
            creator: "alice"
        ).planId
        let planB = try store.registerPlan(
            planSpec(image: "repo/eval:v1", inputs: [["stage:y"]], outputs: [["stage:z"]]),
            creator: "bob"
        ).planId
        var uploadRuns: [String] = []
        var uploadedData: [String] = []
        var open: [UploadTicket] = []
        var steps: [String: Int] = [:]

        for step in 0..<150 {
            clock.advance(10)
            let action: String
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<30:
                action = "upload"
                let ticket = try store.beginUpload(creator: users.randomElement(using: &random)!)
                writeFile(ticket.stagingPath + "/file", "x")
                let tags = Bool.random(using: &random) ? ["stage:x"] : ["other:\(step)"]
                let detail = try store.finishUpload(
                    ticket,
                    tags: tags.map(tag),
                    sizeBytes: Int64.random(in: 0...5_000, using: &random)
                )
                uploadRuns.append(detail.upstream.run.runId)
                uploadedData.append(detail.knitId)
            case 30..<38:
                action = "begin"
                open.append(try store.beginUpload(creator: users.randomElement(using: &random)!))
            case 38..<44:
                action = "abandon"
                if !open.isEmpty {
                    store.abandonUpload(open.remove(at: Int.random(in: 0..<open.count, using: &random)))
                }
            case 44..<62:
                action = "run"
                let startable = try store.runsToStart(limit: 100)
                if let run = startable.randomElement(using: &random) {
                    #expect(try store.markReady(runId: run.runId))
                    #expect(try store.markStarting(runId: run.runId))
                    #expect(try store.markRunning(runId: run.runId))
                    let succeeded = Int.random(in: 0..<4, using: &random) != 0
                    let exit = RunExitJSON(code: succeeded ? 0 : 1, message: succeeded ? "" : "crashed")
                    #expect(try store.finishRun(runId: run.runId, exit: exit, succeeded: succeeded))
                }
            case 62..<74:
                action = "retry"
                let ended = try store.findRuns(planIds: [planA, planB]).filter {
                    ["done", "failed"].contains($0.status)
                }
                if let run = ended.randomElement(using: &random) {
                    // Refused while a live Run consumes an output: the refusal must leave usage alone too.
                    _ = try? store.retryRun(runId: run.runId)
                }
            case 74..<86:
                action = "rm"
                let runs = try store.findRuns(planIds: [planA, planB]).map(\.runId) + uploadRuns
                if let runId = runs.randomElement(using: &random) { _ = try? store.removeRun(runId: runId) }
            case 86..<90:
                action = "active"
                _ = try store.setPlanActive(
                    planId: Bool.random(using: &random) ? planA : planB,
                    active: Bool.random(using: &random)
                )
            case 90..<96:
                action = "tag"
                if let knitId = uploadedData.randomElement(using: &random) {
                    _ = try? store.updateTags(knitId: knitId, change: TagChangeJSON(add: [tag("stage:x")]))
                }
            default:
                action = "recover"
                _ = store.recoverAtStartup()
                open.removeAll()
            }
            steps[action, default: 0] += 1
            let counted = try recount(store)
            let kept = try store.read("kept usage") { txn in try store.allKeptUsage(txn) }
            try #require(kept == counted, "seed \(seed) step \(step) (\(action)): kept \(kept), recount \(counted)")
            #expect(try reported(store) == counted, "seed \(seed) step \(step) (\(action))")
            #expect(try store.checkUsage(repair: false).isEmpty)
        }
        // The sequence did exercise what it claims to (no branch only ever found nothing to do).
        #expect(try store.findRuns(planIds: [planB]).isEmpty == false, "seed \(seed): no Run of B was ever made")
        #expect(steps.keys.count >= 8, "seed \(seed): \(steps)")
    }

    /// A store written in schema 1 (no kept usage) is migrated when opened: the kept usage then equals the
    /// recount, the version is 2, and a quota check uses it.
    @Test func openingASchema1StoreBuildsTheKeptUsage() throws {
        let dir = TemporaryDirectory()
        var expected: [String: KeptUsage] = [:]
        do {
            let store = try openStore(dir.path)
            _ = try store.addUser(name: "alice", role: .user)
            _ = try store.registerPlan(
                planSpec(inputs: [["stage:x"]], outputs: [["stage:y"]], log: ["type:log"]),
                creator: "bob"
            )
            for creator in ["alice", "alice", "bob", "carol"] {
                _ = try upload(store, tags: ["stage:x"], creator: creator)
            }
            _ = try store.beginUpload(creator: "carol")  // an upload in progress counts as a Data
            expected = try recount(store)
            #expect(expected["alice"] == KeptUsage(bytes: 10, data: 2))
            #expect(
                expected["bob"] == KeptUsage(bytes: 5, data: 1 + 4 * 2, plans: 1, runs: ["waiting": 4]),
                "bob's plan has 4 Runs waiting, with 4 outputs and 4 logs"
            )
            #expect(expected["carol"] == KeptUsage(bytes: 5, data: 2))
            try rewindToSchema1(store)
            #expect(try store.read("kept") { txn in try store.allKeptUsage(txn) }.isEmpty)
            store.close()
        }
        let store = try openStore(dir.path)
        defer { store.close() }
        let version = try store.read("version") { txn in try txn.get(store.db.meta, key: KnitStore.schemaKey) }
        #expect(version.map { String(decoding: $0, as: UTF8.self) } == KnitStore.schemaVersion)
        #expect(try store.read("kept") { txn in try store.allKeptUsage(txn) } == expected)
        #expect(try reported(store) == expected)
        try store.setQuota(user: "alice", data: .limit(2))
        let refused = #expect(throws: StoreError.self) { try store.beginUpload(creator: "alice") }
        #expect(refused?.code == .quotaExceeded)
        #expect(
            refused?.message.contains("holds 2 Data of a data quota of 2 Data") == true,
            "\(String(describing: refused))"
        )
    }

    /// A backup of a schema 1 store (snapshot and manifest both saying 1) is restored as it is and migrated at the
    /// next open; one of a newer schema is refused before the home is touched.
    @Test func aSchema1BackupIsRestoredAndMigratedAndANewerOneRefused() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.file("home"))
        _ = try upload(store, tags: [], creator: "alice")
        _ = try upload(store, tags: [], creator: "bob")
        let expected = try recount(store)
        try rewindToSchema1(store)
        _ = try store.backup(to: dir.file("backup"))
        store.close()
        func setManifestSchema(_ version: String) throws {
            var manifest = try #require(try KnitStore.readManifest(dir.file("backup")))
            manifest.schemaVersion = version
            writeFile(dir.file("backup/manifest.json"), bytes: Array(try JSONEncoder().encode(manifest)))
        }
        try setManifestSchema("1")
        _ = try KnitStore.restore(from: dir.file("backup"), into: dir.file("target"))
        let restored = try openStore(dir.file("target"))
        #expect(try restored.read("kept") { txn in try restored.allKeptUsage(txn) } == expected)
        restored.close()

        try setManifestSchema("\(KnitStore.currentSchema + 1)")
        let refused = #expect(throws: StoreError.self) {
            try KnitStore.restore(from: dir.file("backup"), into: dir.file("other"))
        }
        #expect(refused?.code == .schemaMismatch)
        #expect(
            refused?.message.contains(
                "schema \(KnitStore.currentSchema + 1); this knitadm restores format 1, schema 1 to \(KnitStore.schemaVersion)"
            ) == true
        )
        #expect(!pathExists(dir.file("other/db")))
    }

    /// A store of a schema newer than this code knows is refused, naming both versions, and left unchanged.
    @Test func aNewerSchemaIsRefusedNamingBothVersions() throws {
        let dir = TemporaryDirectory()
        do {
            let store = try openStore(dir.path)
            try store.write("forge") { txn in
                let newer = Array("\(KnitStore.currentSchema + 1)".utf8)
                try txn.put(store.db.meta, key: KnitStore.schemaKey, value: newer)
            }
            store.close()
        }
        let error = #expect(throws: StoreError.self) { try openStore(dir.path) }
        #expect(error?.code == .schemaMismatch)
        let newer = KnitStore.currentSchema + 1
        #expect(error?.message.contains("store schema version \(newer) is newer than this ") == true)
        #expect(
            error?.message.contains("knows (\(KnitStore.schemaVersion))") == true,
            "\(String(describing: error?.message))"
        )
    }

    /// knitd, the scheduler and knitadm each refuse a store of a newer schema at start, naming both versions,
    /// and exit non-zero without serving.
    @Test(.enabled(if: getenv("KNIT_BIN_DIR") != nil, "needs the built binaries (KNIT_BIN_DIR)"))
    func theProgramsRefuseANewerSchemaNamingBothVersions() throws {
        let dir = TemporaryDirectory()
        do {
            let store = try openStore(dir.path)
            try store.write("forge") { txn in
                let newer = Array("\(KnitStore.currentSchema + 1)".utf8)
                try txn.put(store.db.meta, key: KnitStore.schemaKey, value: newer)
            }
            store.close()
        }
        let bin = String(cString: getenv("KNIT_BIN_DIR")!)
        for (program, arguments) in [
            ("knitd", ["--socket", dir.file("knitd.sock")]), ("knit-scheduler", []), ("knitadm", ["usage"]),
        ] {
            let result = runProcess(
                ["/usr/bin/timeout", "60", bin + "/" + program, "--home", dir.path] + arguments,
                input: ""
            )
            #expect(result.status != 0 && result.status != 124, "\(program) exited \(result.status): \(result.output)")
            #expect(
                result.output.contains(
                    "store schema version \(KnitStore.currentSchema + 1) is newer than this \(program) knows "
                        + "(\(KnitStore.schemaVersion))"
                ),
                "\(program): \(result.output)"
            )
        }
        #expect(!pathExists(dir.file("knitd.sock")), "knitd never listened")
    }

    /// A program of the previous release still has the store open (here: another opener, holding it since before
    /// the store said schema 1): a new opener must not migrate under it, and says what to stop.
    @Test func anOlderStoreOpenElsewhereIsRefusedNotMigrated() throws {
        let dir = TemporaryDirectory()
        let running = try openStore(dir.path)
        defer { running.close() }
        _ = try upload(running, tags: [], creator: "alice")
        try rewindToSchema1(running)
        let refused = #expect(throws: StoreError.self) { try openStore(dir.path) }
        #expect(refused?.code == .schemaMismatch)
        #expect(
            refused?.message.contains("must be migrated to \(KnitStore.currentSchema), and other programs") == true,
            "\(String(describing: refused))"
        )
        let version = try running.read("version") { txn in try txn.get(running.db.meta, key: KnitStore.schemaKey) }
        #expect(version.map { String(decoding: $0, as: UTF8.self) } == "1", "nothing migrated")
        #expect(try running.read("kept") { txn in try running.allKeptUsage(txn) }.isEmpty)
    }

    /// knitd taking over from its predecessor (`beforeWaitingToMigrate`) waits until the predecessor closed the
    /// store, then migrates; an opener of the current schema opens beside others at once.
    @Test func aWaitingOpenerMigratesOnlyOnceTheOthersClosedTheStore() async throws {
        let dir = TemporaryDirectory()
        let running = try openStore(dir.path)
        _ = try upload(running, tags: [], creator: "alice")
        let expected = try recount(running)
        try rewindToSchema1(running)
        final class Flag: Sendable { let raised = Atomic<Bool>(false) }
        let waiting = Flag()
        let path = dir.path
        let opening = Task.detached { () throws -> KnitStore in
            try KnitStore(
                home: path,
                logger: quietLogger,
                mapSize: 64 << 20,
                beforeWaitingToMigrate: { waiting.raised.store(true, ordering: .relaxed) }
            )
        }
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while !waiting.raised.load(ordering: .relaxed), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let announced = waiting.raised.load(ordering: .relaxed)
        #expect(announced, "the opener announced its wait")
        try await Task.sleep(for: .milliseconds(300))
        let stillOld = try running.read("version") { txn in try txn.get(running.db.meta, key: KnitStore.schemaKey) }
        #expect(stillOld.map { String(decoding: $0, as: UTF8.self) } == "1", "no migration while the other is open")
        running.close()
        let migrated = try await opening.value
        defer { migrated.close() }
        let version = try migrated.read("version") { txn in try txn.get(migrated.db.meta, key: KnitStore.schemaKey) }
        #expect(version.map { String(decoding: $0, as: UTF8.self) } == KnitStore.schemaVersion)
        #expect(try migrated.read("kept") { txn in try migrated.allKeptUsage(txn) } == expected)
        // Current schema: a second opener beside the first one neither waits nor refuses.
        let beside = try openStore(dir.path)
        beside.close()
    }

    /// `knitadm usage` on a schema 1 store migrates it and shows the recounted usage.
    @Test(.enabled(if: getenv("KNIT_BIN_DIR") != nil, "needs the built binaries (KNIT_BIN_DIR)"))
    func knitadmMigratesASchema1Store() throws {
        let dir = TemporaryDirectory()
        do {
            let store = try openStore(dir.path)
            _ = try upload(store, tags: [], creator: "alice")
            _ = try upload(store, tags: [], creator: "alice")
            try rewindToSchema1(store)
            store.close()
        }
        let bin = String(cString: getenv("KNIT_BIN_DIR")!)
        let result = runProcess([bin + "/knitadm", "--home", dir.path, "usage"], input: "")
        #expect(result.status == 0, "\(result.output)")
        let compact = result.output.filter { !$0.isWhitespace }
        #expect(compact.contains("\"bytes\":10,\"data\":2"), "\(result.output)")
        // Read without KnitStore, whose open would migrate by itself.
        let env = try LMDBEnvironment(path: dir.path + "/db", mapSize: 64 << 20)
        defer { env.close() }
        let meta = try env.openDatabase(name: "meta")
        let version = try env.read { txn in try txn.get(meta, key: Array("schema_version".utf8)) }
        #expect(version == Array(KnitStore.schemaVersion.utf8), "knitadm left the store migrated")
    }

    /// `knitadm fsck` reports a drifted entry (exit 2, JSON naming the user and both figures), `--repair`
    /// rewrites it, and the next fsck is clean.
    @Test(.enabled(if: getenv("KNIT_BIN_DIR") != nil, "needs the built binaries (KNIT_BIN_DIR)"))
    func knitadmFsckReportsAndRepairsDriftedUsage() throws {
        let dir = TemporaryDirectory()
        do {
            let store = try openStore(dir.path)
            _ = try upload(store, tags: [], creator: "alice")
            try store.write("corrupt") { txn in
                try txn.put(
                    store.db.usage,
                    key: Array("alice".utf8),
                    value: KnitStore.encode(KeptUsage(bytes: 9, data: 4))
                )
            }
            store.close()
        }
        let knitadm = String(cString: getenv("KNIT_BIN_DIR")!) + "/knitadm"
        let found = runProcess([knitadm, "--home", dir.path, "fsck"], input: "")
        #expect(found.status == 2, "\(found.output)")
        let compact = found.output.filter { !$0.isWhitespace }
        #expect(compact.contains("\"countedBytes\":5,\"countedData\":1"), "\(found.output)")
        #expect(compact.contains("\"keptBytes\":9,\"keptData\":4"), "\(found.output)")
        #expect(compact.contains("\"user\":\"alice\""), "\(found.output)")
        let again = runProcess([knitadm, "--home", dir.path, "fsck"], input: "")
        #expect(again.status == 2, "fsck without --repair changes nothing: \(again.output)")
        let repaired = runProcess([knitadm, "--home", dir.path, "fsck", "--repair"], input: "")
        #expect(repaired.output.filter { !$0.isWhitespace }.contains("\"usageRewritten\":true"), "\(repaired.output)")
        let clean = runProcess([knitadm, "--home", dir.path, "fsck"], input: "")
        #expect(clean.status == 0, "\(clean.output)")
        let usage = runProcess([knitadm, "--home", dir.path, "usage"], input: "")
        #expect(usage.output.filter { !$0.isWhitespace }.contains("\"bytes\":5,\"data\":1"), "\(usage.output)")
    }

    /// fsck's check reports a kept entry that drifted (and one for a user who holds nothing), and the repair
    /// rewrites them from the recount.
    @Test func aCorruptedEntryIsReportedAndRepaired() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        defer { store.close() }
        _ = try upload(store, tags: [], creator: "alice")
        _ = try upload(store, tags: [], creator: "bob")
        #expect(try store.checkUsage(repair: false).isEmpty)
        try store.write("corrupt") { txn in
            try txn.put(store.db.usage, key: Array("alice".utf8), value: KnitStore.encode(KeptUsage(bytes: 1, data: 7)))
            try txn.put(store.db.usage, key: Array("ghost".utf8), value: KnitStore.encode(KeptUsage(bytes: 3, data: 1)))
        }
        let found = try store.checkUsage(repair: false)
        #expect(
            found == [
                UsageMismatch(user: "alice", keptBytes: 1, keptData: 7, countedBytes: 5, countedData: 1),
                UsageMismatch(user: "ghost", keptBytes: 3, keptData: 1, countedBytes: 0, countedData: 0),
            ]
        )
        #expect(try store.checkUsage(repair: false) == found, "a check alone changes nothing")
        #expect(try store.checkUsage(repair: true) == found)
        #expect(try store.checkUsage(repair: false).isEmpty)
        #expect(try store.read("kept") { txn in try store.allKeptUsage(txn) } == recount(store))
    }
}
