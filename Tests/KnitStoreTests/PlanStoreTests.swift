import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

/// A plan spec with one input per entry of `inputs` (`/in/N`) and one output per entry of `outputs`
/// (`/out/N`), each a list of `k:v` tags.
func planSpec(
    image: String = "repo/train:v1",
    inputs: [[String]],
    outputs: [[String]] = [],
    log: [String]? = nil,
    resources: [String: String]? = nil,
    annotations: [String]? = nil,
    active: Bool? = nil
) -> PlanSpecJSON {
    PlanSpecJSON(
        image: image,
        annotations: annotations,
        inputs: inputs.enumerated().map { MountpointJSON(path: "/in/\($0.offset)", tags: TagSet($0.element.map(tag))) },
        outputs: outputs.enumerated().map {
            MountpointJSON(path: "/out/\($0.offset)", tags: TagSet($0.element.map(tag)))
        },
        log: log.map { LogPointJSON(tags: TagSet($0.map(tag))) },
        active: active,
        resources: resources
    )
}

@Suite struct PlanStoreTests {
    @Test func registerFillsDefaultsAndReadsBack() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let detail = try store.registerPlan(
            planSpec(inputs: [["type:dataset", "project:p"]], outputs: [["type:model"]], log: ["type:log"]),
            creator: "alice"
        )
        #expect(KnitIdentifier.isWellFormed(detail.planId))
        #expect(detail.image == "repo/train:v1")
        #expect(detail.name == nil)
        #expect(detail.active)
        #expect(detail.resources == ["cpu": "1", "memory": "1Gi"])
        #expect(detail.inputs.map(\.path) == ["/in/0"])
        #expect(detail.inputs[0].tags == TagSet([tag("project:p"), tag("type:dataset")]))
        #expect(detail.outputs.map(\.path) == ["/out/0"])
        #expect(detail.log?.tags == TagSet([tag("type:log")]))
        #expect(try store.planDetail(planId: detail.planId) == detail)
    }

    @Test func invalidSpecIsRefusedWithEveryProblem() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        var spec = planSpec(image: "noTag", inputs: [["a:b"]])
        spec.inputs[0].path = "relative"
        let error = try #require(throws: StoreError.self) { try store.registerPlan(spec, creator: "alice") }
        #expect(error.code == .invalid)
        #expect(error.message == "invalid plan spec")
        #expect(error.advice?.contains("image") == true)
        #expect(error.advice?.contains("inputs[0].path") == true)
        #expect(try store.findPlans(image: "noTag").isEmpty)
    }

    @Test func equivalentPlanIsAConflictNamingTheExistingOne() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let first = try store.registerPlan(
            planSpec(inputs: [["a:1"], ["b:2"]], outputs: [["c:3"]], resources: ["cpu": "2"]),
            creator: "alice"
        )
        // Same identity: input order, resources, annotations and active differ.
        var again = planSpec(
            inputs: [["b:2"], ["a:1"]],
            outputs: [["c:3"]],
            annotations: ["x=y"],
            active: false
        )
        again.inputs = [
            MountpointJSON(path: "/in/1", tags: [tag("b:2")]), MountpointJSON(path: "/in/0", tags: [tag("a:1")]),
        ]
        let error = try #require(throws: StoreError.self) { try store.registerPlan(again, creator: "bob") }
        #expect(error.code == .conflict)
        #expect(error.message == "there are equivalent plan")
        #expect(error.see == first.planId)

        // Another image tag is another plan.
        let other = try store.registerPlan(
            planSpec(image: "repo/train:v2", inputs: [["a:1"], ["b:2"]]),
            creator: "bob"
        )
        #expect(other.planId != first.planId)
    }

    @Test func cycleIsAConflict() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        _ = try store.registerPlan(planSpec(inputs: [["stage:a"]], outputs: [["stage:b"]]), creator: "alice")
        let error = try #require(throws: StoreError.self) {
            try store.registerPlan(
                planSpec(image: "repo/back:v1", inputs: [["stage:b"]], outputs: [["stage:a"]]),
                creator: "alice"
            )
        }
        #expect(error.code == .conflict)
        #expect(error.message == "plan spec conflicts with others")
        #expect(error.advice == "plan's tag dependency makes cycle")
        #expect(error.see == nil)

        let selfLoop = try #require(throws: StoreError.self) {
            try store.registerPlan(
                planSpec(image: "repo/loop:v1", inputs: [["x:1"]], outputs: [], log: ["x:1", "extra:y"]),
                creator: "alice"
            )
        }
        #expect(selfLoop.code == .conflict)
        // Only the first plan was stored.
        #expect(try store.findPlans(image: "repo/back").isEmpty)
        #expect(try store.findPlans(image: "repo/loop").isEmpty)
    }

    @Test func detailLinksUpstreamsAndDownstreams() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let train = try store.registerPlan(
            planSpec(
                image: "repo/train:v1",
                inputs: [["type:dataset"]],
                outputs: [["type:model", "project:p"]],
                log: ["type:log"]
            ),
            creator: "alice"
        )
        let validate = try store.registerPlan(
            planSpec(image: "repo/validate:v1", inputs: [["type:model"], ["type:log"]], outputs: [["type:metrics"]]),
            creator: "alice"
        )
        let trainNow = try store.planDetail(planId: train.planId)
        #expect(trainNow.outputs[0].downstreams.map(\.plan.planId) == [validate.planId])
        #expect(trainNow.outputs[0].downstreams[0].mountpoint.path == "/in/0")
        #expect(trainNow.log?.downstreams.map(\.mountpoint.path) == ["/in/1"])
        #expect(trainNow.inputs[0].upstreams.isEmpty)

        #expect(validate.inputs[0].upstreams.map(\.plan.planId) == [train.planId])
        #expect(validate.inputs[0].upstreams[0].mountpoint?.path == "/out/0")
        #expect(validate.inputs[0].upstreams[0].plan.image == "repo/train:v1")
        #expect(validate.inputs[1].upstreams.map(\.plan.planId) == [train.planId])
        #expect(validate.inputs[1].upstreams[0].log?.tags == TagSet([tag("type:log")]))
        #expect(validate.outputs[0].downstreams.isEmpty)
    }

    @Test func findFiltersByActiveImageAndTags() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let a = try store.registerPlan(
            planSpec(
                image: "localhost:5000/team/train:v1",
                inputs: [["type:dataset", "project:p"]],
                outputs: [["type:model"]],
                log: ["type:log"]
            ),
            creator: "alice"
        )
        let b = try store.registerPlan(
            planSpec(
                image: "localhost:5000/team/train:v2",
                inputs: [["type:dataset"]],
                outputs: [["type:model", "project:q"]]
            ),
            creator: "alice"
        )
        let c = try store.registerPlan(
            planSpec(image: "other:latest", inputs: [["knit#id:abc", "type:x"]], active: false),
            creator: "alice"
        )
        func ids(_ found: [PlanDetailJSON]) -> Set<String> { Set(found.map(\.planId)) }

        let all = try store.findPlans()
        #expect(all.count == 4)
        #expect(all.map(\.planId) == all.map(\.planId).sorted())
        let pseudo = try #require(all.first { $0.name == PseudoPlan.uploaded })
        #expect(pseudo.image == nil)
        #expect(pseudo.outputs.map(\.path) == [PseudoPlan.uploadPath])
        #expect(pseudo.inputs.isEmpty)
        #expect(try store.planDetail(planId: pseudo.planId) == pseudo)

        #expect(ids(try store.findPlans(active: true)) == [a.planId, b.planId, pseudo.planId])
        #expect(ids(try store.findPlans(active: false)) == [c.planId])

        // image: a name matches every tag; host:port is not a tag (Knitfab #225).
        #expect(ids(try store.findPlans(image: "localhost:5000/team/train")) == [a.planId, b.planId])
        #expect(ids(try store.findPlans(image: "localhost:5000/team/train:v2")) == [b.planId])
        #expect(try store.findPlans(image: "localhost:5000/team/train:v3").isEmpty)
        #expect(try store.findPlans(image: "localhost").isEmpty)
        #expect(ids(try store.findPlans(image: "other")) == [c.planId])
        // Knitfab's CLI sends `--image NAME` as `image=NAME:`; an empty version means any version.
        #expect(ids(try store.findPlans(image: "localhost:5000/team/train:")) == [a.planId, b.planId])
        #expect(ids(try store.findPlans(image: "other:")) == [c.planId])

        // in_tag: one input has all of them.
        #expect(ids(try store.findPlans(inTags: [tag("type:dataset")])) == [a.planId, b.planId])
        #expect(ids(try store.findPlans(inTags: [tag("type:dataset"), tag("project:p")])) == [a.planId])
        #expect(try store.findPlans(inTags: [tag("type:dataset"), tag("type:model")]).isEmpty)
        #expect(ids(try store.findPlans(inTags: [tag("knit#id:abc")])) == [c.planId])
        #expect(try store.findPlans(inTags: [tag("knit#id:abc"), tag("knit#id:def")]).isEmpty)
        #expect(try store.findPlans(inTags: [tag("knit#transient:processing")]).isEmpty)

        // out_tag: one output or the log has all of them; system tags match nothing.
        #expect(ids(try store.findPlans(outTags: [tag("type:model")])) == [a.planId, b.planId])
        #expect(ids(try store.findPlans(outTags: [tag("type:model"), tag("project:q")])) == [b.planId])
        #expect(ids(try store.findPlans(outTags: [tag("type:log")])) == [a.planId])
        #expect(try store.findPlans(outTags: [tag("knit#id:x")]).isEmpty)

        // Dimensions are ANDed.
        #expect(
            ids(try store.findPlans(active: true, image: "localhost:5000/team/train", inTags: [tag("project:p")])) == [
                a.planId
            ]
        )
        #expect(try store.findPlans(active: false, outTags: [tag("type:model")]).isEmpty)
    }

    @Test func activeToggles() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let plan = try store.registerPlan(planSpec(inputs: [["a:1"]]), creator: "alice")
        #expect(try store.setPlanActive(planId: plan.planId, active: false).active == false)
        #expect(try store.planDetail(planId: plan.planId).active == false)
        #expect(try store.setPlanActive(planId: plan.planId, active: false).active == false)
        #expect(try store.setPlanActive(planId: plan.planId, active: true).active == true)
        let missing = try #require(throws: StoreError.self) { try store.setPlanActive(planId: "nope", active: true) }
        #expect(missing.code == .notFound)
        #expect(try #require(throws: StoreError.self) { try store.planDetail(planId: "nope") }.code == .notFound)
    }

    @Test func resourcesSetThenUnsetAndUnsetWins() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let plan = try store.registerPlan(planSpec(inputs: [["a:1"]]), creator: "alice")
        let changed = try store.changePlanResources(
            planId: plan.planId,
            change: PlanResourceChangeJSON(set: ["cpu": "2", "nvidia.com/gpu": "1"], unset: [])
        )
        #expect(changed.resources == ["cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "1"])
        let unsetWins = try store.changePlanResources(
            planId: plan.planId,
            change: PlanResourceChangeJSON(
                set: ["memory": "4Gi", "nvidia.com/gpu": "2"],
                unset: ["nvidia.com/gpu", "cpu"]
            )
        )
        #expect(unsetWins.resources == ["memory": "4Gi"])
        // An unset limit stays unset when read back (it does not return to the default).
        #expect(try store.planDetail(planId: plan.planId).resources == ["memory": "4Gi"])

        let bad = try #require(throws: StoreError.self) {
            try store.changePlanResources(planId: plan.planId, change: PlanResourceChangeJSON(set: ["cpu": "lots"]))
        }
        #expect(bad.code == .invalid)
        #expect(bad.message == "invalid resources")
        #expect(bad.advice?.contains("resources.cpu") == true)
        #expect(try store.planDetail(planId: plan.planId).resources == ["memory": "4Gi"])
    }

    @Test func annotationsRemoveKeyThenRemoveThenAdd() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let plan = try store.registerPlan(
            planSpec(inputs: [["a:1"]], annotations: ["owner=alice", "owner=bob", "team=x", "keep=1"]),
            creator: "alice"
        )
        #expect(plan.annotations == ["keep=1", "owner=alice", "owner=bob", "team=x"])
        let changed = try store.changePlanAnnotations(
            planId: plan.planId,
            change: PlanAnnotationChangeJSON(
                add: ["owner=carol", "team=y"],
                remove: ["team=x", "team=y"],
                removeKey: ["owner"]
            )
        )
        // remove_key and remove come first, so the added owner=carol and team=y survive.
        #expect(changed.annotations == ["keep=1", "owner=carol", "team=y"])
        #expect(try store.planDetail(planId: plan.planId).annotations == ["keep=1", "owner=carol", "team=y"])
        let bad = try #require(throws: StoreError.self) {
            try store.changePlanAnnotations(planId: plan.planId, change: PlanAnnotationChangeJSON(add: ["no-equals"]))
        }
        #expect(bad.code == .invalid)
    }

    @Test func serviceAccountSetAndUnset() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let plan = try store.registerPlan(planSpec(inputs: [["a:1"]]), creator: "alice")
        #expect(plan.serviceAccount == nil)
        #expect(try store.setPlanServiceAccount(planId: plan.planId, name: "trainer").serviceAccount == "trainer")
        #expect(try store.planDetail(planId: plan.planId).serviceAccount == "trainer")
        #expect(try store.setPlanServiceAccount(planId: plan.planId, name: nil).serviceAccount == nil)
        let tooLong = try #require(throws: StoreError.self) {
            try store.setPlanServiceAccount(planId: plan.planId, name: String(repeating: "a", count: 64))
        }
        #expect(tooLong.code == .invalid)
    }

    @Test func pseudoPlanCannotChange() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        let pseudo = try #require(try store.findPlans().first { $0.name == PseudoPlan.uploaded })
        let error = try #require(throws: StoreError.self) {
            try store.setPlanActive(planId: pseudo.planId, active: false)
        }
        #expect(error.code == .invalid)
    }

    @Test func plansSurviveReopen() throws {
        let dir = TemporaryDirectory()
        var planId = ""
        do {
            let store = try openStore(dir.path)
            planId = try store.registerPlan(planSpec(inputs: [["a:1"]], outputs: [["b:2"]]), creator: "alice").planId
            _ = try store.changePlanResources(planId: planId, change: PlanResourceChangeJSON(unset: ["cpu"]))
            _ = try store.setPlanActive(planId: planId, active: false)
            store.close()
        }
        let store = try openStore(dir.path)
        defer { store.close() }
        let detail = try store.planDetail(planId: planId)
        #expect(detail.resources == ["memory": "1Gi"])
        #expect(detail.active == false)
        #expect(detail.outputs[0].tags == TagSet([tag("b:2")]))
        // The identity index survived too.
        let error = try #require(throws: StoreError.self) {
            try store.registerPlan(planSpec(inputs: [["a:1"]], outputs: [["b:2"]]), creator: "bob")
        }
        #expect(error.see == planId)
    }
}
