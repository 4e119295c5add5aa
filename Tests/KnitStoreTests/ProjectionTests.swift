import KnitCore
import KnitLMDB
import KnitSystem
import KnitTestSupport
import Testing

@testable import KnitStore

/// Every non-invalidated Run of `planId`.
private func runs(_ store: KnitStore, plan planId: String) throws -> [RunDetailJSON] {
    try store.findRuns(planIds: [planId])
}

/// The combinations (input knitIds in order) of the plan's Runs, sorted.
private func combinations(_ store: KnitStore, plan planId: String) throws -> [[String]] {
    try runs(store, plan: planId).map { $0.inputs.map(\.knitId) }.sorted { $0.joined() < $1.joined() }
}

private let oneInput = planSpec(inputs: [["type:dataset"]], outputs: [["type:model"]], log: ["type:log"])

@Suite struct ProjectionTests {
    @Test func threeDataThenPlanGiveThreeWaitingRunsWithProcessingOutputs() throws {
        let dir = TemporaryDirectory()
        let clock = TestClock()
        let store = try openStore(dir.path, clock: clock)
        let data = try (0..<3).map { index in try upload(store, tags: ["type:dataset", "n:\(index)"]) }
        _ = try upload(store, tags: ["type:other"])
        clock.advance(1000)
        let plan = try store.registerPlan(oneInput, creator: "alice")
        let found = try runs(store, plan: plan.planId)
        #expect(found.count == 3)
        #expect(Set(found.map { $0.inputs.map(\.knitId) }) == Set(data.map { [$0.knitId] }))
        for run in found {
            #expect(run.status == "waiting")
            #expect(run.updatedAt == KnitTime(milliseconds: clock.milliseconds).description)
            #expect(run.plan.planId == plan.planId && run.plan.image == "repo/train:v1")
            #expect(run.inputs.map(\.path) == ["/in/0"])
            #expect(run.inputs[0].tags == TagSet([tag("type:dataset")]))
            #expect(run.outputs.map(\.path) == ["/out/0"])
            #expect(run.outputs[0].tags == TagSet([tag("type:model")]))
            let log = try #require(run.log)
            #expect(log.tags == TagSet([tag("type:log")]))
            #expect(try store.runDetail(runId: run.runId) == run)

            let output = try store.dataDetail(knitId: run.outputs[0].knitId)
            #expect(output.tags.contains(tag("knit#transient:processing")))
            #expect(output.tags.contains(tag("type:model")))
            #expect(output.tags.values(of: "knit#timestamp").isEmpty)
            #expect(output.upstream.mountpoint == MountpointJSON(path: "/out/0", tags: [tag("type:model")]))
            #expect(output.upstream.log == nil)
            #expect(output.upstream.run.runId == run.runId && output.upstream.run.status == "waiting")
            #expect(output.nomination.isEmpty)
            let logData = try store.dataDetail(knitId: log.knitId)
            #expect(logData.upstream.log == LogPointJSON(tags: [tag("type:log")]))
            #expect(logData.upstream.mountpoint == nil)
            #expect(logData.tags.contains(tag("knit#transient:processing")))
        }
        let models = try store.findData(tags: [tag("type:model")], since: nil, durationMs: nil)
        #expect(Set(models.map(\.knitId)) == Set(found.map { $0.outputs[0].knitId }))
        let logs = try store.findData(
            tags: [tag("type:log"), tag("knit#transient:processing")],
            since: nil,
            durationMs: nil
        )
        #expect(logs.count == 3)
        #expect(try store.runIds(status: .waiting).count == 3)
    }

    @Test func planFirstThenPushesGiveTheSameRuns() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let plan = try store.registerPlan(oneInput, creator: "alice")
        #expect(try runs(store, plan: plan.planId).isEmpty)
        var pushed: [String] = []
        for index in 0..<3 {
            let detail = try upload(store, tags: ["type:dataset", "n:\(index)"])
            pushed.append(detail.knitId)
            // The answer to the push already shows the Run that consumes it.
            #expect(detail.downstreams.count == 1)
            #expect(detail.downstreams.first?.mountpoint == MountpointJSON(path: "/in/0", tags: [tag("type:dataset")]))
            #expect(detail.nomination.map(\.plan.planId) == [plan.planId])
        }
        #expect(try combinations(store, plan: plan.planId) == pushed.map { [$0] }.sorted { $0.joined() < $1.joined() })
        #expect(try runs(store, plan: plan.planId).allSatisfy { $0.status == "waiting" })
    }

    @Test func twoInputsGiveEveryCombinationOnceWhateverTheOrder() throws {
        let spec = planSpec(inputs: [["side:a"], ["side:b"]], outputs: [["out:x"]])
        for order in 0..<3 {
            let dir = TemporaryDirectory()
            let store = try openStore(dir.path)
            var planId: String?
            if order == 0 { planId = try store.registerPlan(spec, creator: "alice").planId }
            var aIds: [String] = []
            var bIds: [String] = []
            // Interleaved pushes: a, b, a, b, a (N = 3, M = 2).
            for index in 0..<5 {
                if order == 1, index == 2 { planId = try store.registerPlan(spec, creator: "alice").planId }
                if index % 2 == 0 {
                    aIds.append(try upload(store, tags: ["side:a", "i:\(index)"]).knitId)
                } else {
                    bIds.append(try upload(store, tags: ["side:b", "i:\(index)"]).knitId)
                }
            }
            if order == 2 { planId = try store.registerPlan(spec, creator: "alice").planId }
            let id = try #require(planId)
            let expected = aIds.flatMap { a in bIds.map { b in [a, b] } }.sorted { $0.joined() < $1.joined() }
            #expect(try combinations(store, plan: id) == expected, "order \(order)")
        }
    }

    @Test func oneDataFittingBothInputsIsCombinedWithItselfOnce() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let plan = try store.registerPlan(planSpec(inputs: [["k:v"], ["k:v", "more:1"]]), creator: "alice")
        let both = try upload(store, tags: ["k:v", "more:1"])
        #expect(try combinations(store, plan: plan.planId) == [[both.knitId, both.knitId]])
        let first = try upload(store, tags: ["k:v"])
        #expect(try combinations(store, plan: plan.planId).count == 2)
        #expect(try combinations(store, plan: plan.planId).contains([first.knitId, both.knitId]))
        let detail = try store.dataDetail(knitId: both.knitId)
        #expect(Set(detail.downstreams.map(\.mountpoint.path)) == ["/in/0", "/in/1"])
        #expect(detail.nomination.map(\.path) == ["/in/0", "/in/1"])
    }

    @Test func removingAndReAddingATagCreatesNothingNew() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let plan = try store.registerPlan(oneInput, creator: "alice")
        let data = try upload(store, tags: ["type:dataset"])
        #expect(try runs(store, plan: plan.planId).count == 1)
        let removed = try store.updateTags(knitId: data.knitId, change: TagChangeJSON(remove: [tag("type:dataset")]))
        #expect(removed.nomination.isEmpty)
        // The Run stays, and stays listed as a downstream.
        #expect(removed.downstreams.count == 1)
        #expect(try runs(store, plan: plan.planId).count == 1)
        let again = try store.updateTags(knitId: data.knitId, change: TagChangeJSON(add: [tag("type:dataset")]))
        #expect(again.nomination.count == 1)
        #expect(try runs(store, plan: plan.planId).count == 1)
    }

    @Test func aTagMakingOldDataMatchCreatesOnlyItsNewCombinations() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let plan = try store.registerPlan(planSpec(inputs: [["side:a"], ["side:b"]]), creator: "alice")
        let a = try upload(store, tags: ["side:a"])
        let b1 = try upload(store, tags: ["side:b"])
        let late = try upload(store, tags: ["other:1"])
        #expect(try combinations(store, plan: plan.planId) == [[a.knitId, b1.knitId]])
        let changed = try store.updateTags(knitId: late.knitId, change: TagChangeJSON(add: [tag("side:b")]))
        #expect(changed.downstreams.count == 1)
        #expect(
            try combinations(store, plan: plan.planId)
                == [[a.knitId, b1.knitId], [a.knitId, late.knitId]].sorted { $0.joined() < $1.joined() }
        )
        // An unrelated tag change on a Data that already ran creates nothing.
        _ = try store.updateTags(knitId: a.knitId, change: TagChangeJSON(add: [tag("note:x")]))
        #expect(try runs(store, plan: plan.planId).count == 2)
    }

    @Test func inactivePlanMakesDeactivatedRunsAndActivationSwitchesThem() throws {
        let dir = TemporaryDirectory()
        let clock = TestClock()
        let store = try openStore(dir.path, clock: clock)
        var spec = oneInput
        spec.active = false
        let plan = try store.registerPlan(spec, creator: "alice")
        let first = try upload(store, tags: ["type:dataset"])
        let deactivated = try runs(store, plan: plan.planId)
        #expect(deactivated.map(\.status) == ["deactivated"])
        #expect(
            try store.dataDetail(knitId: deactivated[0].outputs[0].knitId).upstream.run.status == "deactivated"
        )
        #expect(try store.findRuns(statuses: [.deactivated]).count == 1)
        clock.advance(50)
        _ = try store.setPlanActive(planId: plan.planId, active: true)
        let waiting = try runs(store, plan: plan.planId)
        #expect(waiting.map(\.status) == ["waiting"])
        #expect(waiting[0].updatedAt == KnitTime(milliseconds: clock.milliseconds).description)
        #expect(try store.dataDetail(knitId: waiting[0].outputs[0].knitId).upstream.run.status == "waiting")
        #expect(try store.findRuns(statuses: [.deactivated]).isEmpty)
        #expect(try store.runIds(status: .waiting) == [waiting[0].runId])
        _ = try store.setPlanActive(planId: plan.planId, active: false)
        #expect(try runs(store, plan: plan.planId).map(\.status) == ["deactivated"])
        #expect(try store.runIds(status: .waiting).isEmpty)
        // The upload Run (done) is untouched by the plan switch.
        #expect(try store.dataDetail(knitId: first.knitId).upstream.run.status == "done")
    }

    @Test func knitIdPinnedInputMatchesOnlyThatData() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let wanted = try upload(store, tags: ["x:1"])
        _ = try upload(store, tags: ["x:1"])
        let plan = try store.registerPlan(planSpec(inputs: [["knit#id:\(wanted.knitId)"]]), creator: "alice")
        #expect(try combinations(store, plan: plan.planId) == [[wanted.knitId]])
        _ = try upload(store, tags: ["x:1"])
        #expect(try runs(store, plan: plan.planId).count == 1)
        // A pinned plan registered before its Data cannot exist; one pinned to a user tag and an id:
        let other = try upload(store, tags: ["y:1"])
        let both = try store.registerPlan(
            planSpec(image: "repo/other:v1", inputs: [["knit#id:\(other.knitId)", "y:2"]]),
            creator: "alice"
        )
        #expect(try runs(store, plan: both.planId).isEmpty)
        _ = try store.updateTags(knitId: other.knitId, change: TagChangeJSON(add: [tag("y:2")]))
        #expect(try combinations(store, plan: both.planId) == [[other.knitId]])
    }

    @Test func processingDataIsNeverNominated() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        // Stage 2 takes stage 1's model; stage 1's Run never finishes here.
        let stage2 = try store.registerPlan(
            planSpec(image: "repo/eval:v1", inputs: [["type:model"]], outputs: [["type:metrics"]]),
            creator: "alice"
        )
        let stage1 = try store.registerPlan(oneInput, creator: "alice")
        _ = try upload(store, tags: ["type:dataset"])
        let run = try #require(try runs(store, plan: stage1.planId).first)
        let model = try store.dataDetail(knitId: run.outputs[0].knitId)
        #expect(model.nomination.isEmpty)
        #expect(try runs(store, plan: stage2.planId).isEmpty)
        // Tag changes on processing Data do not nominate it either.
        _ = try store.updateTags(knitId: model.knitId, change: TagChangeJSON(add: [tag("extra:1")]))
        #expect(try runs(store, plan: stage2.planId).isEmpty)
        // Nor does an upload that has begun but not finished.
        let ticket = try store.beginUpload(creator: "alice")
        _ = try store.updateTags(knitId: ticket.knitId, change: TagChangeJSON(add: [tag("type:dataset")]))
        #expect(try runs(store, plan: stage1.planId).count == 1)
        store.abandonUpload(ticket)
    }

    @Test func findRunsFilters() throws {
        let dir = TemporaryDirectory()
        let clock = TestClock()
        let store = try openStore(dir.path, clock: clock)
        let start = clock.milliseconds
        let planA = try store.registerPlan(oneInput, creator: "alice")
        clock.advance(1000)
        let d1 = try upload(store, tags: ["type:dataset"])
        clock.advance(1000)
        let d2 = try upload(store, tags: ["type:dataset"])
        let runA = try #require(try runs(store, plan: planA.planId).first { $0.inputs[0].knitId == d1.knitId })
        let runB = try #require(try runs(store, plan: planA.planId).first { $0.inputs[0].knitId == d2.knitId })

        let all = try store.findRuns()
        // Two uploads and two plan Runs, by update time then runId.
        #expect(all.count == 4)
        #expect(all.map(\.updatedAt) == all.map(\.updatedAt).sorted())
        let uploads = all.filter { $0.plan.name == PseudoPlan.uploaded }
        #expect(Set(uploads.flatMap { $0.outputs.map(\.knitId) }) == [d1.knitId, d2.knitId])
        #expect(uploads.allSatisfy { $0.status == "done" && $0.inputs.isEmpty && $0.log == nil })
        #expect(uploads.first?.outputs.first?.path == "/upload")

        #expect(try store.findRuns(inputKnitIds: [d1.knitId]).map(\.runId) == [runA.runId])
        #expect(
            Set(try store.findRuns(inputKnitIds: [d1.knitId, d2.knitId]).map(\.runId)) == [runA.runId, runB.runId]
        )
        #expect(try store.findRuns(outputKnitIds: [runB.outputs[0].knitId]).map(\.runId) == [runB.runId])
        #expect(try store.findRuns(outputKnitIds: [runB.log!.knitId]).map(\.runId) == [runB.runId])
        #expect(try store.findRuns(outputKnitIds: [d1.knitId]).map(\.runId) == [d1.upstream.run.runId])
        #expect(try store.findRuns(planIds: [planA.planId], statuses: [.done]).isEmpty)
        #expect(try store.findRuns(statuses: [.done]).count == 2)
        #expect(try store.findRuns(planIds: [planA.planId], inputKnitIds: [d2.knitId]).map(\.runId) == [runB.runId])
        #expect(try store.findRuns(planIds: ["nope"]).isEmpty)
        // since <= updatedAt < since + duration
        let second = KnitTime(milliseconds: start + 2000)
        #expect(Set(try store.findRuns(since: second).map(\.runId)) == [runB.runId, d2.upstream.run.runId])
        #expect(try store.findRuns(since: KnitTime(milliseconds: start + 1000), durationMs: 1000).count == 2)
        #expect(try store.findRuns(since: KnitTime(milliseconds: start + 1001), durationMs: 999).isEmpty)

        let error = try #require(throws: StoreError.self) { try store.findRuns(statuses: [.invalidated]) }
        #expect(error.code == .invalid)
        let missing = try #require(throws: StoreError.self) { try store.runDetail(runId: "nope") }
        #expect(missing.code == .notFound)
    }

    @Test func runsAndIndexesSurviveReopening() throws {
        let dir = TemporaryDirectory()
        var planId = ""
        var before: [RunDetailJSON] = []
        do {
            let store = try openStore(dir.path)
            planId = try store.registerPlan(oneInput, creator: "alice").planId
            _ = try upload(store, tags: ["type:dataset"])
            before = try runs(store, plan: planId)
            store.close()
        }
        let store = try openStore(dir.path)
        #expect(try runs(store, plan: planId) == before)
        _ = try upload(store, tags: ["type:dataset"])
        #expect(try runs(store, plan: planId).count == 2)
    }
}

@Suite struct ProjectionRecordTests {
    @Test func runAndOutputRecordsRoundTripAndUploadsKeepTheOldFormats() throws {
        let snapshot = ProducerSnapshot(status: .waiting, updatedAtMs: 9, planId: "p", exit: nil)
        let log = DataRecord(
            knitId: "k",
            runId: "r",
            outputPath: "/log",
            userTags: [tag("type:log")],
            timestampMs: nil,
            sizeBytes: nil,
            creator: "alice",
            producer: snapshot,
            isLog: true,
            mountpointTags: [tag("type:log")]
        )
        let logBytes = log.encoded()
        #expect(logBytes.first == 3)
        let logBack = try logBytes.withUnsafeBytes { try DataRecord(decoding: $0) }
        #expect(logBack.isLog && logBack.mountpointTags == [tag("type:log")] && logBack.producer == snapshot)
        var upload = log
        upload.isLog = false
        upload.mountpointTags = []
        #expect(upload.encoded().first == 2)

        let run = RunRecord(
            runId: "r",
            planId: "p",
            status: .waiting,
            updatedAtMs: 9,
            exit: nil,
            outputs: ["o", "k"],
            creator: "alice",
            assignments: [RunAssignmentRecord(path: "/in/a", tags: [tag("a:1"), tag("knit#id:x")], knitId: "x")],
            logKnitId: "k"
        )
        let runBytes = run.encoded()
        #expect(runBytes.first == 2)
        let runBack = try runBytes.withUnsafeBytes { try RunRecord(decoding: $0) }
        #expect(runBack.assignments == run.assignments && runBack.logKnitId == "k" && runBack.outputs == run.outputs)
        var plain = run
        plain.assignments = []
        plain.logKnitId = nil
        #expect(plain.encoded().first == 1)
        let cut = Array(runBytes.dropLast(2))
        #expect(throws: StoreError.self) { try cut.withUnsafeBytes { try RunRecord(decoding: $0) } }
    }

    @Test func runIndexesAreRebuiltForAStoreWrittenWithoutThem() throws {
        let dir = TemporaryDirectory()
        var uploadRunId = ""
        do {
            let store = try openStore(dir.path)
            uploadRunId = try upload(store, tags: ["a:1"]).upstream.run.runId
            // As a store written before the run indexes existed.
            try store.env.write { txn in
                try txn.delete(store.db.meta, key: KnitStore.runIndexesKey)
                try txn.delete(store.db.runsByPlan, key: Array(store.uploadedPlan.planId.utf8))
                try txn.delete(store.db.runsByStatus, key: Array("done".utf8))
            }
            #expect(try store.findRuns(statuses: [.done]).isEmpty)
            store.close()
        }
        let store = try openStore(dir.path)
        #expect(try store.findRuns(statuses: [.done]).map(\.runId) == [uploadRunId])
        #expect(try store.findRuns(planIds: [store.uploadedPlan.planId]).map(\.runId) == [uploadRunId])
    }

    @Test func abandonedUploadLeavesNoRunBehind() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let ticket = try store.beginUpload(creator: "alice")
        #expect(try store.findRuns(statuses: [.running]).map(\.runId) == [ticket.runId])
        store.abandonUpload(ticket)
        #expect(try store.findRuns().isEmpty)
        #expect(try store.runIds(status: .running).isEmpty)
    }
}
