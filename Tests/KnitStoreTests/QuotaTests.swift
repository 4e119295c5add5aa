import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

// Per-user quotas: stored bytes and Data count (checked when an upload begins and again when it is
// published), Runs in flight (the scheduler's reads list no more of a user's Runs than the limit allows), and
// the usage report `knitadm usage` prints.

@Suite struct QuotaTests {
    @Test func limitsComeFromTheUserElseTheDefaultAndUnsetFallsBack() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        defer { store.close() }
        _ = try store.addUser(name: "alice", role: .user)
        _ = try store.addUser(name: "bob", role: .user)
        #expect(try store.quota(user: "alice") == Quota(), "no limits until one is set")

        try store.setQuota(user: nil, bytes: .limit(1000), data: .limit(10))
        #expect(try store.quota(user: "alice") == Quota(bytes: 1000, data: 10))

        // A user's own limits start from what was in force for them; fields not given stay.
        #expect(try store.setQuota(user: "alice", runs: .limit(2)) == Quota(bytes: 1000, data: 10, runs: 2))
        #expect(try store.setQuota(user: "alice", data: .unlimited) == Quota(bytes: 1000, runs: 2))
        try store.setQuota(user: nil, bytes: .limit(5))
        #expect(try store.quota(user: "alice") == Quota(bytes: 1000, runs: 2), "own limits do not follow the default")
        #expect(try store.quota(user: "bob") == Quota(bytes: 5, data: 10))

        #expect(try store.unsetQuota(user: "alice"))
        #expect(try store.quota(user: "alice") == Quota(bytes: 5, data: 10))
        #expect(try store.unsetQuota(user: "alice") == false)
        #expect(try store.unsetQuota(user: nil))
        #expect(try store.quota(user: "bob") == Quota())

        let unknown = #expect(throws: StoreError.self) { try store.setQuota(user: "nobody", runs: .limit(1)) }
        #expect(unknown?.code == .notFound)
        let negative = #expect(throws: StoreError.self) { try store.setQuota(user: "alice", bytes: .limit(-1)) }
        #expect(negative?.code == .invalid)
    }

    @Test func anUploadBeyondTheDataQuotaIsRefusedBeforeAnythingIsCreated() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        defer { store.close() }
        _ = try store.addUser(name: "alice", role: .user)
        try store.setQuota(user: "alice", data: .limit(2))
        _ = try upload(store, tags: ["k:1"])
        // An upload in progress counts: two of them in parallel cannot both squeeze past the limit.
        let open = try store.beginUpload(creator: "alice")

        let refused = #expect(throws: StoreError.self) { try store.beginUpload(creator: "alice") }
        #expect(refused?.code == .quotaExceeded)
        #expect(refused?.message.contains("alice holds 2 Data of a data quota of 2 Data") == true)
        #expect(listDirectory(store.layout.staging) == [open.knitId], "no staging directory was made")
        #expect(try store.usageReport().first { $0.user == "alice" }?.data == 2, "the refused one left no record")
        _ = try upload(store, tags: ["k:2"], creator: "bob")  // others are not limited by alice's quota

        store.abandonUpload(open)
        _ = try upload(store, tags: ["k:3"])
        #expect(try store.findData(tags: [], since: nil, durationMs: nil, creator: "alice").count == 2)
    }

    @Test func bytesAreCheckedWhenAnUploadBeginsAndAgainWhenItIsPublished() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        defer { store.close() }
        _ = try store.addUser(name: "alice", role: .user)
        try store.setQuota(user: "alice", bytes: .limit(12))
        _ = try upload(store, tags: ["k:1"])  // 5 bytes

        // Two uploads in parallel each may write the 7 bytes left; the second to publish is refused.
        let first = try store.beginUpload(creator: "alice")
        let second = try store.beginUpload(creator: "alice")
        #expect(first.quotaBytesLeft == 7)
        #expect(second.quotaBytesLeft == 7)
        _ = try store.finishUpload(first, tags: [], sizeBytes: 6)
        writeFile(second.stagingPath + "/f", "123456")
        let late = #expect(throws: StoreError.self) { try store.finishUpload(second, tags: [], sizeBytes: 6) }
        #expect(late?.code == .quotaExceeded)
        #expect(
            late?.message.contains("alice holds 11 bytes of a bytes quota of 12 bytes; this Data holds 6 more") == true
        )
        // Refused before anything moved: the content is back in staging and abandoning drops it all.
        #expect(listDirectory(second.stagingPath) == ["f"])
        store.abandonUpload(second)
        #expect(listDirectory(store.layout.staging).isEmpty)
        #expect(try store.usageReport().first { $0.user == "alice" }?.bytes == 11)

        _ = try store.finishUpload(try store.beginUpload(creator: "alice"), tags: [], sizeBytes: 1)
        let full = #expect(throws: StoreError.self) { try store.beginUpload(creator: "alice") }
        #expect(full?.code == .quotaExceeded, "at the limit, nothing more can begin")
        #expect(full?.message.contains("holds 12 bytes of a bytes quota of 12 bytes") == true)
        #expect(listDirectory(store.layout.staging).isEmpty)
    }

    @Test func runOutputsCountForThePlanOwner() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        defer { store.close() }
        _ = try store.addUser(name: "alice", role: .user)
        _ = try store.addUser(name: "bob", role: .user)
        let spec = planSpec(inputs: [["k:1"]], outputs: [["out:1"]], log: ["type:log"])
        _ = try store.registerPlan(spec, creator: "bob")
        _ = try upload(store, tags: ["k:1"], creator: "alice")

        let usage = try store.usageReport()
        let bob = try #require(usage.first { $0.user == "bob" })
        #expect(bob.data == 2, "the Run's output and log are bob's")
        #expect(bob.plans == 1)
        #expect(bob.runs == ["waiting": 1])
        let alice = try #require(usage.first { $0.user == "alice" })
        #expect(alice.data == 1)
        #expect(alice.bytes == 5)
        #expect(alice.runs.isEmpty, "uploads are not listed as Runs")

        try store.setQuota(user: "bob", data: .limit(2))
        let refused = #expect(throws: StoreError.self) { try store.beginUpload(creator: "bob") }
        #expect(refused?.code == .quotaExceeded)
        #expect(try store.usageReport().first { $0.user == "bob" }?.quota == Quota(data: 2))
    }

    /// A finished Run's outputs and log weigh what the scheduler measured the Run wrote, in the plan owner's usage,
    /// so their later uploads meet the bytes quota. Before, outputs counted 0 bytes.
    @Test func runOutputsWeighWhatTheRunWroteInThePlanOwnersUsage() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        defer { store.close() }
        _ = try store.addUser(name: "bob", role: .user)
        _ = try store.registerPlan(
            planSpec(inputs: [["k:1"]], outputs: [["out:1"]], log: ["type:log"]),
            creator: "bob"
        )
        _ = try upload(store, tags: ["k:1"], creator: "bob")
        let bytesBefore = try #require(try store.usageReport().first { $0.user == "bob" }).bytes

        let run = try #require(try store.runsToStart(limit: 1).first)
        #expect(try store.markStarting(runId: run.runId))
        let output = try #require(run.outputs.first).knitId
        let log = try #require(try store.runOutputs(runId: run.runId)?.logKnitId)
        #expect(try store.runOutputs(runId: run.runId)?.logPath == store.logFilePath(logKnitId: log))
        #expect(
            try store.finishRun(
                runId: run.runId,
                exit: RunExitJSON(code: 0, message: ""),
                succeeded: true,
                writtenBytes: [output: 1010, log: 6]
            )
        )

        let bob = try #require(try store.usageReport().first { $0.user == "bob" })
        #expect(bob.bytes - bytesBefore == 1010 + 6)
        try store.setQuota(user: "bob", bytes: .limit(bob.bytes))
        let refused = #expect(throws: StoreError.self) {
            let ticket = try store.beginUpload(creator: "bob")
            _ = try store.finishUpload(ticket, tags: [], sizeBytes: 1)
        }
        #expect(refused?.code == .quotaExceeded)
    }

    @Test func theSchedulerSeesNoMoreOfAUsersRunsThanTheRunsQuota() throws {
        let queue = try TwoUsersQueue()
        let store = queue.store
        try store.setQuota(user: "alice", runs: .limit(2))

        #expect(try queue.startable() == ["alice": 2, "bob": 1])
        let first = try queue.startAlicesNext()
        #expect(try queue.startable() == ["alice": 1, "bob": 1], "one of alice's two slots is taken")
        _ = try queue.startAlicesNext()
        #expect(try queue.startable() == ["bob": 1], "alice's third Run waits; bob's does not")

        #expect(try store.finishRun(runId: first.runId, exit: RunExitJSON(code: 0, message: ""), succeeded: true))
        #expect(try queue.startable() == ["alice": 1, "bob": 1])
        #expect(try store.findRuns(planIds: [queue.alicePlan]).filter { $0.status == "waiting" }.count == 1)
        #expect(try store.findRuns(planIds: [queue.bobPlan]).count == 1)
    }

    /// Once a Run's outputs take its owner to their bytes quota, their other Runs stay waiting (the outputs would
    /// only add to it), while other users' Runs go; raising the quota lets them start. Before, every Run kept
    /// starting, so the overshoot had no bound.
    @Test func runsOfAUserAtTheirBytesQuotaWaitOthersGo() throws {
        let queue = try TwoUsersQueue()
        let store = queue.store
        let aliceUsage = try #require(try store.usageReport().first { $0.user == "alice" }).bytes
        try store.setQuota(user: "alice", bytes: .limit(aliceUsage + 100))

        #expect(try queue.startable() == ["alice": 3, "bob": 1])
        let first = try queue.startAlicesNext()
        let output = try #require(first.outputs.first).knitId
        #expect(
            try store.finishRun(
                runId: first.runId,
                exit: RunExitJSON(code: 0, message: ""),
                succeeded: true,
                writtenBytes: [output: 100]
            )
        )
        #expect(try queue.startable() == ["bob": 1], "alice is at her bytes quota: her two other Runs wait")
        try store.setQuota(user: "alice", bytes: .limit(aliceUsage + 1000))
        #expect(try queue.startable() == ["alice": 2, "bob": 1])
    }
}

/// alice's plan with three Runs waiting and bob's with one, for what the scheduler may start of each.
private final class TwoUsersQueue {
    private let directory = TemporaryDirectory()
    let store: KnitStore
    let alicePlan: String
    let bobPlan: String

    init() throws {
        store = try openStore(directory.path)
        _ = try store.addUser(name: "alice", role: .user)
        _ = try store.addUser(name: "bob", role: .user)
        alicePlan = try store.registerPlan(planSpec(inputs: [["k:a"]], outputs: [["o:a"]]), creator: "alice").planId
        bobPlan = try store.registerPlan(
            planSpec(image: "repo/b:v1", inputs: [["k:b"]], outputs: [["o:b"]]),
            creator: "bob"
        ).planId
        for _ in 0..<3 { _ = try upload(store, tags: ["k:a"]) }
        _ = try upload(store, tags: ["k:b"])
    }

    deinit { store.close() }

    /// How many Runs of each user the scheduler would be handed now.
    func startable() throws -> [String: Int] {
        try store.runsToStart(limit: 10).reduce(into: [:]) {
            $0[$1.planId == alicePlan ? "alice" : "bob", default: 0] += 1
        }
    }

    /// Marks the first of alice's startable Runs starting.
    func startAlicesNext() throws -> ScheduledRun {
        let run = try #require(try store.runsToStart(limit: 10).first { $0.planId == alicePlan })
        #expect(try store.markStarting(runId: run.runId))
        return run
    }
}
