import KnitCore
import KnitTestSupport
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

/// The indexed neighbourhood must give exactly what comparing every plan with every other gives.
@Suite struct PlanNeighbourhoodTests {
    /// Upstreams and downstreams the slow way: every point of every other plan, in planId order.
    private func bruteForce(_ planId: String, _ plan: Plan, _ all: [IdentifiedPlan]) -> PlanDetailJSON {
        var detail = PlanDetailJSON(planId: planId, plan: plan, neighbourhood: PlanNeighbourhood([]))
        let others = all.filter { $0.planId != planId }.sorted {
            $0.planId.utf8.lexicographicallyPrecedes($1.planId.utf8)
        }
        for (index, input) in plan.inputs.enumerated() {
            var upstreams: [PlanUpstreamJSON] = []
            for other in others {
                let summary = other.plan.summary(planId: other.planId)
                for output in other.plan.outputs where input.isFed(by: output.tags) {
                    upstreams.append(PlanUpstreamJSON(plan: summary, mountpoint: output.mountpoint))
                }
                if let log = other.plan.log, input.isFed(by: log) {
                    upstreams.append(PlanUpstreamJSON(plan: summary, log: LogPointJSON(tags: log)))
                }
            }
            detail.inputs[index].upstreams = upstreams
        }
        func downstreams(_ tags: TagSet) -> [PlanDownstreamJSON] {
            others.flatMap { other in
                other.plan.inputs.filter { $0.isFed(by: tags) }.map {
                    PlanDownstreamJSON(plan: other.plan.summary(planId: other.planId), mountpoint: $0.mountpoint)
                }
            }
        }
        for (index, output) in plan.outputs.enumerated() {
            detail.outputs[index].downstreams = downstreams(output.tags)
        }
        if let log = plan.log { detail.log?.downstreams = downstreams(log) }
        return detail
    }

    @Test func matchesComparingEveryPlanWithEveryOther() throws {
        // Deterministic pseudo-random plans over a small tag vocabulary, so tags are shared a lot.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        let vocabulary = ["k:a", "k:b", "k:c", "v:1", "v:2", "x:y"]
        func tags(_ count: Int) -> [String] {
            Array(Set((0..<count).map { _ in vocabulary[next(vocabulary.count)] })).sorted()
        }
        func point(_ path: String, _ texts: [String]) -> MountpointJSON {
            MountpointJSON(path: path, tags: TagSet(texts.map { try! KnitCore.Tag(parsing: $0) }))
        }
        var plans: [IdentifiedPlan] = []
        for i in 0..<60 {
            let inputs = (0..<(1 + next(2))).map { j in
                point("/in/\(j)", tags(1 + next(3)) + (next(8) == 0 ? ["knit#id:pinned-\(i)"] : []))
            }
            let outputs = (0..<(1 + next(2))).map { j in point("/out/\(j)", tags(1 + next(3))) }
            let log = next(2) == 0 ? LogPointJSON(tags: point("", tags(1 + next(2))).tags) : nil
            let plan = try Plan(
                validating: makeSpec {
                    $0.image = "repo/p\(i):1"
                    $0.inputs = inputs
                    $0.outputs = outputs
                    $0.log = log
                }
            )
            let number = (i * 37) % 60
            plans.append(IdentifiedPlan(planId: "p-" + (number < 10 ? "0" : "") + String(number), plan: plan))
        }
        let neighbourhood = PlanNeighbourhood(plans)
        var linked = 0
        for entry in plans {
            let fast = PlanDetailJSON(planId: entry.planId, plan: entry.plan, neighbourhood: neighbourhood)
            #expect(fast == bruteForce(entry.planId, entry.plan, plans), "plan \(entry.planId)")
            linked += fast.inputs.map(\.upstreams.count).reduce(0, +)
        }
        #expect(linked > 60, "the random plans must actually link to each other (\(linked) links)")
    }
}
