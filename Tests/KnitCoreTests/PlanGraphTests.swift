import KnitCore
import Testing

@Suite struct PlanGraphTests {
    private func node(_ id: String, inputs: [TagSet], outputs: [TagSet]) -> PlanGraphNode {
        PlanGraphNode(planId: id, inputs: inputs, outputs: outputs)
    }

    @Test func selfLoopIsACycle() {
        let loop = node("a", inputs: [tagSet("type:x")], outputs: [tagSet("type:x", "more:1")])
        #expect(PlanGraph.createsCycle(adding: loop, to: []))
        let noLoop = node("a", inputs: [tagSet("type:x", "more:1")], outputs: [tagSet("type:x")])
        #expect(!PlanGraph.createsCycle(adding: noLoop, to: []))
    }

    @Test func twoAndThreeCycles() {
        let a = node("a", inputs: [tagSet("s:1")], outputs: [tagSet("s:2")])
        let b = node("b", inputs: [tagSet("s:2")], outputs: [tagSet("s:3")])
        let closesTwo = node("c", inputs: [tagSet("s:3")], outputs: [tagSet("s:2", "x:y")])
        let closesThree = node("c", inputs: [tagSet("s:3")], outputs: [tagSet("s:1")])
        let extendsChain = node("c", inputs: [tagSet("s:3")], outputs: [tagSet("s:4")])
        #expect(PlanGraph.createsCycle(adding: closesTwo, to: [a, b]) == true)
        #expect(PlanGraph.createsCycle(adding: closesThree, to: [a, b]) == true)
        #expect(PlanGraph.createsCycle(adding: extendsChain, to: [a, b]) == false)
        // Feeding back through the log counts as well (outputs include the log's tags).
        let viaLog = node("d", inputs: [tagSet("s:1")], outputs: [tagSet("s:9"), tagSet("type:log", "s:1")])
        #expect(PlanGraph.createsCycle(adding: viaLog, to: []))
    }

    @Test func diamondIsNotACycle() {
        let top = node("top", inputs: [tagSet("raw:1")], outputs: [tagSet("l:1"), tagSet("r:1")])
        let left = node("left", inputs: [tagSet("l:1")], outputs: [tagSet("m:1", "side:l")])
        let right = node("right", inputs: [tagSet("r:1")], outputs: [tagSet("m:1", "side:r")])
        let bottom = node("bottom", inputs: [tagSet("m:1")], outputs: [tagSet("done:1")])
        #expect(!PlanGraph.createsCycle(adding: bottom, to: [top, left, right]))
        let graph = PlanGraph([top, left, right, bottom])
        #expect(graph.dependants(of: 0) == [1, 2])
        #expect(graph.dependants(of: 1) == [3])
        #expect(graph.dependants(of: 3) == [])
    }

    @Test func pinnedInputsTakePartInNoDependency() throws {
        // Plan `b` would close a 2-cycle with `a`, but its input from `a` is pinned by knit#id.
        let a = try Plan(
            validating: makeSpec {
                $0.inputs = [mount("/in", "s:1")]
                $0.outputs = [mount("/out", "s:2")]
                $0.log = nil
            }
        )
        let b = try Plan(
            validating: makeSpec {
                $0.inputs = [mount("/pinned", "s:2", "knit#id:abc")]
                $0.outputs = [mount("/out", "s:1")]
                $0.log = nil
            }
        )
        let nodeB = PlanGraphNode(planId: "b", plan: b)
        #expect(nodeB.inputs.isEmpty)
        #expect(!PlanGraph.createsCycle(adding: nodeB, to: [PlanGraphNode(planId: "a", plan: a)]))
        let c = try Plan(
            validating: makeSpec {
                $0.inputs = [mount("/in", "s:2"), mount("/other", "s:1")]
                $0.outputs = [mount("/out", "s:1")]
                $0.log = nil
            }
        )
        #expect(
            PlanGraph.createsCycle(
                adding: PlanGraphNode(planId: "c", plan: c),
                to: [PlanGraphNode(planId: "a", plan: a)]
            )
        )
        // A self loop only through a timestamp-pinned input is no loop either.
        let selfPinned = try Plan(
            validating: makeSpec {
                $0.inputs = [mount("/in", "s:1", "knit#timestamp:2024-01-01T00:00:00Z")]
                $0.outputs = [mount("/out", "s:1")]
            }
        )
        #expect(!PlanGraph.createsCycle(adding: PlanGraphNode(planId: "s", plan: selfPinned), to: []))
    }

    @Test func upstreamsAndDownstreamsInPlanDetail() throws {
        let train = try Plan(
            validating: makeSpec {
                $0.inputs = [mount("/in/dataset", "type:dataset", "mode:training")]
                $0.outputs = [mount("/out/model", "type:model", "project:p")]
                $0.log = LogPointJSON(tags: tagSet("type:log", "project:p"))
            }
        )
        let validate = try Plan(
            validating: makeSpec {
                $0.image = "localhost:30503/validate:v1.0"
                $0.inputs = [
                    mount("/in/model", "type:model"),
                    mount("/in/log", "project:p"),
                    mount("/in/pinned", "type:model", "knit#id:x"),
                ]
                $0.outputs = []
                $0.log = nil
            }
        )
        let all = [
            IdentifiedPlan(planId: "p-train", plan: train), IdentifiedPlan(planId: "p-validate", plan: validate),
        ]

        let detail = PlanDetailJSON(planId: "p-validate", plan: validate, others: all)
        #expect(detail.inputs.count == 3)
        // type:model is on train's output only; project:p is on both its output and its log.
        #expect(detail.inputs[0].upstreams.map(\.mountpoint?.path) == ["/out/model"])
        #expect(detail.inputs[0].upstreams.first?.plan == train.summary(planId: "p-train"))
        #expect(detail.inputs[1].upstreams.count == 2)
        #expect(detail.inputs[1].upstreams[0].mountpoint?.path == "/out/model")
        #expect(detail.inputs[1].upstreams[1].log == LogPointJSON(tags: tagSet("type:log", "project:p")))
        #expect(detail.inputs[1].upstreams[1].mountpoint == nil)
        #expect(detail.inputs[2].upstreams.isEmpty)
        #expect(detail.log == nil)

        let trainDetail = PlanDetailJSON(planId: "p-train", plan: train, others: all)
        #expect(trainDetail.inputs[0].upstreams.isEmpty)
        #expect(trainDetail.outputs[0].downstreams.map(\.mountpoint.path) == ["/in/model", "/in/log"])
        #expect(trainDetail.log?.downstreams.map(\.mountpoint.path) == ["/in/log"])
        #expect(trainDetail.log?.downstreams.first?.plan.image == "localhost:30503/validate:v1.0")
        #expect(trainDetail.image == "localhost:30503/train:v1.0")
        #expect(trainDetail.resources == ["cpu": "1", "memory": "1Gi"])
        #expect(trainDetail.active)
    }
}
