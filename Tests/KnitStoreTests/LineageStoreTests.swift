import KnitCore
import KnitLMDB
import KnitSystem
import KnitTestSupport
import Testing

@testable import KnitStore

// Lineage and plan graphs read from a real LMDB store: uploads, a chain of plans run to the end, a fan-in
// plan, a failed Run, a log, depth limits, directions, unknown ids and tombstones.

/// Walks the only waiting Run of `planId` to done (or failed), as the scheduler would.
private func finish(_ store: KnitStore, plan planId: String, succeeded: Bool = true) throws -> RunDetailJSON {
    let runs = try store.findRuns(planIds: [planId], statuses: [.waiting])
    let run = try #require(runs.first)
    #expect(try store.markReady(runId: run.runId))
    #expect(try store.markStarting(runId: run.runId))
    #expect(try store.markRunning(runId: run.runId))
    #expect(
        try store.finishRun(
            runId: run.runId,
            exit: RunExitJSON(code: succeeded ? 0 : 1, message: succeeded ? "" : "boom"),
            succeeded: succeeded
        )
    )
    return try store.runDetail(runId: run.runId)
}

private func ids(_ graph: KnitGraph, _ type: GraphNodeType) -> [String] {
    graph.nodes.filter { $0.type == type }.map(\.id)
}

@Suite struct LineageStoreTests {
    @Test func singleUpload() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let data = try upload(store, tags: ["project:p"])
        let graph = try store.lineage(knitId: data.knitId, upstream: true, downstream: true, depth: .default)
        #expect(ids(graph, .data) == ["d" + data.knitId])
        #expect(ids(graph, .run) == ["r" + data.upstream.run.runId])
        #expect(graph.nodes.filter { $0.type == .root }.count == 1)
        let node = try #require(graph.node("d" + data.knitId))
        #expect(node.tags == data.tags)
        #expect(graph.node("r" + data.upstream.run.runId)?.plan?.name == "knit#uploaded")
        #expect(
            graph.edges.contains(
                GraphEdge(from: "r" + data.upstream.run.runId, to: "d" + data.knitId, type: .output, label: "/upload")
            )
        )
    }

    @Test func threeStageChainWithLogAndDepthLimits() throws {
        let dir = TemporaryDirectory()
        let clock = TestClock()
        let store = try openStore(dir.path, clock: clock)
        let a = try store.registerPlan(
            planSpec(inputs: [["stage:0"]], outputs: [["stage:1"]], log: ["type:log"]),
            creator: "alice"
        ).planId
        let b = try store.registerPlan(
            planSpec(image: "repo/b:v1", inputs: [["stage:1"]], outputs: [["stage:2"]]),
            creator: "alice"
        ).planId
        let c = try store.registerPlan(
            planSpec(image: "repo/c:v1", inputs: [["stage:2"]], outputs: [["stage:3"]]),
            creator: "alice"
        ).planId
        let source = try upload(store, tags: ["stage:0"])
        let runA = try finish(store, plan: a)
        let runB = try finish(store, plan: b)
        let runC = try finish(store, plan: c)
        let last = runC.outputs[0].knitId

        let all = try store.lineage(knitId: last, upstream: true, downstream: false, depth: .all)
        #expect(
            Set(ids(all, .run)) == Set([runA, runB, runC].map { "r" + $0.runId } + ["r" + source.upstream.run.runId])
        )
        let log = try #require(runA.log)
        #expect(all.edges.contains(GraphEdge(from: "r" + runA.runId, to: "d" + log.knitId, type: .log, label: "(log)")))
        #expect(all.node("d" + log.knitId)?.tags?.contains(Tag(key: "type", value: "log")) == true)
        #expect(
            all.edges.contains(GraphEdge(from: "d" + source.knitId, to: "r" + runA.runId, type: .input, label: "/in/0"))
        )

        let one = try store.lineage(knitId: last, upstream: true, downstream: false, depth: GraphDepth(1))
        #expect(ids(one, .run) == ["r" + runC.runId])
        #expect(Set(ids(one, .data)) == ["d" + last, "d" + runC.inputs[0].knitId])

        // Default depth 3 from the source downstream reaches C's output; depth 2 stops at B's.
        let down = try store.lineage(knitId: source.knitId, upstream: false, downstream: true, depth: .default)
        #expect(down.node("d" + last) != nil)
        let downTwo = try store.lineage(knitId: source.knitId, upstream: false, downstream: true, depth: GraphDepth(2))
        #expect(downTwo.node("d" + last) == nil)
        #expect(downTwo.node("d" + runB.outputs[0].knitId) != nil)
        #expect(downTwo.nodes.allSatisfy { $0.type != .root })

        // The graph's dot is accepted by graphviz.
        let dot = all.dot()
        #expect(dot.hasPrefix("digraph G {"))
        #expect(dot.contains("image = repo/b:v1"))
    }

    @Test func fanInPlanShowsBothInputs() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let plan = try store.registerPlan(
            planSpec(inputs: [["side:a"], ["side:b"]], outputs: [["joined:yes"]]),
            creator: "alice"
        ).planId
        let left = try upload(store, tags: ["side:a"])
        let right = try upload(store, tags: ["side:b"])
        let run = try finish(store, plan: plan)
        let graph = try store.lineage(
            knitId: run.outputs[0].knitId,
            upstream: true,
            downstream: false,
            depth: GraphDepth(1)
        )
        let inputs = graph.edges.filter { $0.type == .input && $0.to == "r" + run.runId }
        #expect(Set(inputs.map(\.from)) == ["d" + left.knitId, "d" + right.knitId])
        #expect(Set(inputs.compactMap(\.label)) == ["/in/0", "/in/1"])
        // From one input downstream, the other input is shown but not expanded.
        let down = try store.lineage(knitId: left.knitId, upstream: false, downstream: true, depth: .all)
        #expect(down.node("d" + right.knitId) != nil)
        #expect(down.nodes.allSatisfy { $0.type != .root })
    }

    @Test func failedRunIsShownWithItsStatus() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let plan = try store.registerPlan(planSpec(inputs: [["x:1"]], outputs: [["y:1"]]), creator: "alice").planId
        let source = try upload(store, tags: ["x:1"])
        let run = try finish(store, plan: plan, succeeded: false)
        let graph = try store.lineage(knitId: source.knitId, upstream: true, downstream: true, depth: .default)
        let node = try #require(graph.node("r" + run.runId))
        #expect(node.status == "failed")
        #expect(node.exit == RunExitJSON(code: 1, message: "boom"))
        #expect(
            graph.node("d" + run.outputs[0].knitId)?.tags?.contains(Tag(key: "knit#transient", value: "failed")) == true
        )
        #expect(graph.dot().contains("<FONT COLOR=\"red\"><B>failed</B></FONT>"))
    }

    @Test func unknownIdsAreNotFound() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        #expect(throws: StoreError(.notFound, "data nope not found")) {
            try store.lineage(knitId: "nope", upstream: true, downstream: true, depth: .default)
        }
        #expect(throws: StoreError(.notFound, "plan nope not found")) {
            try store.planGraph(planId: "nope", upstream: true, downstream: true, depth: .default)
        }
    }

    @Test func tombstonesAreHidden() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let plan = try store.registerPlan(planSpec(inputs: [["x:1"]], outputs: [["y:1"]]), creator: "alice").planId
        let source = try upload(store, tags: ["x:1"])
        let run = try store.findRuns(planIds: [plan])[0]
        try store.write("invalidate") { txn in
            var record = try store.run(txn, run.runId)
            record.status = .invalidated
            try store.putRun(txn, record)
        }
        let graph = try store.lineage(knitId: source.knitId, upstream: true, downstream: true, depth: .all)
        #expect(graph.node("r" + run.runId) == nil)
        #expect(graph.edges.allSatisfy { $0.to != "r" + run.runId })
        // Its output's own lineage no longer shows the deleted producer.
        let orphan = try store.lineage(knitId: run.outputs[0].knitId, upstream: true, downstream: true, depth: .all)
        #expect(orphan.nodes.map(\.id) == ["d" + run.outputs[0].knitId])
    }

    @Test func planGraphFollowsTagLinks() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let a = try store.registerPlan(
            planSpec(inputs: [["s:0"]], outputs: [["s:1"]], log: ["s:log"]),
            creator: "alice"
        ).planId
        let b = try store.registerPlan(
            planSpec(image: "repo/b:v1", inputs: [["s:1"]], outputs: [["s:2"]]),
            creator: "alice"
        ).planId
        let c = try store.registerPlan(planSpec(image: "repo/c:v1", inputs: [["s:log"]]), creator: "alice").planId
        let graph = try store.planGraph(planId: a, upstream: true, downstream: true, depth: .default)
        #expect(Set(ids(graph, .plan)) == Set([a, b, c].map { "p" + $0 }))
        #expect(graph.edges.contains(GraphEdge(from: "p\(a)@/out/0", to: "p\(b)@/in/0", type: .feeds)))
        #expect(graph.edges.contains(GraphEdge(from: "p\(a)@log", to: "p\(c)@/in/0", type: .feeds)))
        let up = try store.planGraph(planId: b, upstream: true, downstream: false, depth: GraphDepth(1))
        #expect(Set(ids(up, .plan)) == ["p" + a, "p" + b])
        let down = try store.planGraph(planId: b, upstream: false, downstream: true, depth: .all)
        #expect(ids(down, .plan) == ["p" + b])
    }
}
