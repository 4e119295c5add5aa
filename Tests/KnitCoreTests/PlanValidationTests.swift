import KnitCore
import KnitTestSupport
import Testing

// Shared by the Plan*Tests files.

func tagSet(_ texts: String...) -> TagSet { TagSet(texts.map { try! KnitCore.Tag(parsing: $0) }) }

func mount(_ path: String, _ texts: String...) -> MountpointJSON {
    MountpointJSON(path: path, tags: TagSet(texts.map { try! KnitCore.Tag(parsing: $0) }))
}

/// A valid spec: one input, one output, a log; tweak with `change`.
func makeSpec(_ change: (inout PlanSpecJSON) -> Void = { _ in }) -> PlanSpecJSON {
    var spec = PlanSpecJSON(
        image: "localhost:30503/train:v1.0",
        inputs: [mount("/in/dataset", "type:dataset", "project:p")],
        outputs: [mount("/out/model", "type:model", "project:p")],
        log: LogPointJSON(tags: tagSet("type:log"))
    )
    change(&spec)
    return spec
}

/// The validation problems of `spec` (empty when valid).
func problems(_ spec: PlanSpecJSON) -> [PlanValidationError.Problem] {
    do {
        _ = try Plan(validating: spec)
        return []
    } catch { return error.problems }
}

@Suite struct PlanValidationTests {
    @Test func validSpecIsNormalized() throws {
        let plan = try Plan(
            validating: makeSpec {
                $0.inputs = [mount("/in/dataset/", "type:dataset")]
                $0.annotations = ["owner=alice", "description = first ", "owner=alice", "owner=bob"]
                $0.onNode = OnNodeJSON(may: ["b=2", "a=1"], must: ["accelerator=gpu", "accelerator=gpu"])
                $0.resources = ["cpu": "500m"]
                $0.serviceAccount = ""
            }
        )
        #expect(plan.image == "localhost:30503/train")
        #expect(plan.version == "v1.0")
        #expect(plan.imageReference == "localhost:30503/train:v1.0")
        #expect(plan.inputs[0].path == "/in/dataset")
        #expect(plan.annotations.map(\.description) == ["description=first", "owner=alice", "owner=bob"])
        #expect(plan.onNode.map(\.description) == ["a=1", "b=2", "accelerator=gpu"])
        #expect(plan.onNode.map(\.mode) == [.may, .may, .must])
        #expect(plan.resources.mapValues(\.text) == ["cpu": "500m", "memory": "1Gi"])
        #expect(plan.cpuMillicores == 500)
        #expect(plan.memoryBytes == 1 << 30)
        #expect(plan.serviceAccount == nil)
        #expect(plan.active)
        #expect(try Plan(validating: makeSpec { $0.active = false }).active == false)
    }

    @Test(arguments: [
        ("repo/name:tag", "repo/name", "tag"),
        ("localhost:5000/name:v1", "localhost:5000/name", "v1"),
        ("host:30503/a/b/c:1.0-rc", "host:30503/a/b/c", "1.0-rc"),
        ("busybox:1.36", "busybox", "1.36"),
        ("localhost:${PORT}/knitfab-first-train:v1.0", "localhost:${PORT}/knitfab-first-train", "v1.0"),
    ])
    func imageSplitsAtLastColonAfterLastSlash(text: String, image: String, version: String) throws {
        let plan = try Plan(validating: makeSpec { $0.image = text })
        #expect(plan.image == image)
        #expect(plan.version == version)
    }

    @Test(arguments: ["", "busybox", "localhost:5000/busybox", ":tag", "repo:", "has space:1", "repo/:tag"])
    func imageWithoutNameOrTagIsRejected(text: String) {
        let found = problems(makeSpec { $0.image = text })
        #expect(found.map(\.code) == [.image], "\(text): \(found)")
        #expect(found.first?.path == "image")
    }

    @Test func imageAndTagLengthLimits() {
        let name = String(repeating: "a", count: 512)
        let tag = String(repeating: "t", count: 128)
        #expect(problems(makeSpec { $0.image = "\(name):\(tag)" }).isEmpty)
        #expect(problems(makeSpec { $0.image = "\(name)a:\(tag)" }).map(\.code) == [.image])
        #expect(problems(makeSpec { $0.image = "\(name):\(tag)t" }).map(\.code) == [.image])
    }

    @Test(arguments: ["/in", "/in/a/b", "/in/", "/in/a.b", "/in/..x", "/in/.hidden"])
    func cleanAbsolutePathsAreAccepted(path: String) {
        #expect(problems(makeSpec { $0.inputs = [mount(path, "a:b")] }).isEmpty)
    }

    @Test(arguments: [
        ("in/x", "is not absolute"),
        ("", "path is required"),
        ("/", "is the root directory"),
        ("/in//x", "is not clean"),
        ("/in/./x", "is not clean"),
        ("/in/../x", "is not clean"),
        ("/in/x/..", "is not clean"),
        ("/in/x//", "is not clean"),
        ("./in", "is not absolute"),
    ])
    func badPathsAreRejected(path: String, message: String) throws {
        let found = problems(makeSpec { $0.inputs = [mount(path, "a:b")] })
        let problem = try #require(found.first)
        #expect(found.count == 1)
        #expect(problem.code == .path)
        #expect(problem.path == "inputs[0].path")
        #expect(problem.message.contains(message), "\(problem)")
    }

    @Test func badOutputPathIsNamedByIndex() {
        let found = problems(makeSpec { $0.outputs = [mount("/out/a", "x:y"), mount("out/b", "x:y")] })
        #expect(found.map(\.description) == ["outputs[1].path: \"out/b\" is not absolute"])
        #expect(problems(makeSpec { $0.outputs = [] }).isEmpty)
    }

    @Test func atLeastOneInputAndOneTagEach() {
        #expect(problems(makeSpec { $0.inputs = [] }).map(\.description) == ["inputs: a plan needs at least one input"])
        let found = problems(makeSpec { $0.inputs = [mount("/in/a", "a:b"), mount("/in/b")] })
        #expect(found.map(\.path) == ["inputs[1].tags"])
        #expect(found.map(\.code) == [.missing])
    }

    @Test func inputSystemTags() throws {
        let id = "0a1b2c3d-0000-4000-8000-000000000000"
        let pinned = try Plan(
            validating: makeSpec {
                $0.inputs = [mount("/in/a", "knit#id:\(id)", "knit#timestamp:2024-05-17T13:19:33.3+09:00")]
            }
        )
        #expect(pinned.inputs[0].knitId == id)
        #expect(pinned.inputs[0].timestamp == (try KnitTime(rfc3339: "2024-05-17T04:19:33.300Z")))
        #expect(pinned.inputs[0].userTags.isEmpty)
        #expect(pinned.inputs[0].isPinned)
        // The timestamp is shown in Knitfab's own form.
        #expect(pinned.inputs[0].tags.values(of: "knit#timestamp") == ["2024-05-17T04:19:33.3+00:00"])

        let cases: [(String, [String])] = [
            ("knit#transient:processing", ["knit#transient:processing"]),
            ("knit#other:x", ["knit#other:x"]),
            ("knit#timestamp:yesterday", ["knit#timestamp:yesterday"]),
        ]
        for (tag, items) in cases {
            let found = problems(makeSpec { $0.inputs = [mount("/in/a", "type:x", tag)] })
            #expect(found.map(\.code) == [.systemTag], "\(tag)")
            #expect(found.compactMap(\.item) == items)
            #expect(found.first?.path == "inputs[0].tags")
        }
        let twoIds = problems(makeSpec { $0.inputs = [mount("/in/a", "knit#id:a", "knit#id:b")] })
        #expect(twoIds.map(\.code) == [.systemTag])
        let twoTimes = problems(
            makeSpec {
                $0.inputs = [
                    mount("/in/a", "knit#timestamp:2024-01-01T00:00:00Z", "knit#timestamp:2024-01-02T00:00:00Z")
                ]
            }
        )
        #expect(twoTimes.map(\.code) == [.systemTag])
        // The same instant written twice is one requirement.
        let sameInstant = problems(
            makeSpec {
                $0.inputs = [
                    mount("/in/a", "knit#timestamp:2024-01-01T00:00:00Z", "knit#timestamp:2024-01-01T09:00:00+09:00")
                ]
            }
        )
        #expect(sameInstant.isEmpty)
    }

    @Test func outputAndLogTagsMayNotBeSystemTags() {
        let found = problems(
            makeSpec {
                $0.outputs = [mount("/out/a", "type:x", "knit#id:1")]
                $0.log = LogPointJSON(tags: tagSet("knit#transient:failed"))
            }
        )
        #expect(found.map(\.path) == ["outputs[0].tags", "log.tags"])
        #expect(found.map(\.code) == [.systemTag, .systemTag])
        #expect(problems(makeSpec { $0.log = nil }).isEmpty)
        #expect(problems(makeSpec { $0.log = LogPointJSON(tags: []) }).isEmpty)
    }

    @Test func overlappingMountpointsAreRejected() {
        let same = problems(makeSpec { $0.outputs = [mount("/in/dataset", "x:y")] })
        #expect(same.map(\.description) == ["outputs[0].path: \"/in/dataset\" is also used by inputs[0].path"])
        let inside = problems(makeSpec { $0.outputs = [mount("/in/dataset/out", "x:y")] })
        #expect(inside.map(\.code) == [.overlap])
        #expect(inside.first?.path == "outputs[0].path")
        let outside = problems(makeSpec { $0.inputs = [mount("/in/a/b", "x:y"), mount("/in/a", "x:z")] })
        #expect(outside.map(\.path) == ["inputs[0].path"])
        let trailingSlash = problems(makeSpec { $0.inputs = [mount("/in/a/", "x:y"), mount("/in/a", "x:z")] })
        #expect(trailingSlash.map(\.code) == [.overlap])
        // A shared name prefix is not a directory prefix; the log is not a mountpoint.
        #expect(problems(makeSpec { $0.inputs = [mount("/in/a", "x:y"), mount("/in/ab", "x:z")] }).isEmpty)
        #expect(problems(makeSpec { $0.outputs = [mount("/log", "x:y")] }).isEmpty)
    }

    @Test(arguments: [
        "a=b", "key=", "example.com/key=value", "k8s.io/a_b.c-d=V_1.2-3", "A=Z",
        "x=\(String(repeating: "v", count: 63))",
        "\(String(repeating: "k", count: 63))=v",
    ])
    func validNodeLabels(text: String) {
        #expect(problems(makeSpec { $0.onNode = OnNodeJSON(prefer: [text]) }).isEmpty, "\(text)")
    }

    @Test(arguments: [
        "novalue", "=v", "-a=b", "a-=b", "a b=c", "a=b c", "a=-b", "Example.com/a=b", "/a=b", "a.com/=b",
        "x=\(String(repeating: "v", count: 64))", "\(String(repeating: "k", count: 64))=v",
        "\(String(repeating: "p", count: 254))/k=v", "a/b/c=d",
    ])
    func invalidNodeLabels(text: String) {
        let found = problems(makeSpec { $0.onNode = OnNodeJSON(may: ["ok=1"], must: [text]) })
        #expect(found.map(\.code) == [.onNode], "\(text)")
        #expect(found.first?.path == "on_node.must[0]")
    }

    @Test func annotations() {
        #expect(problems(makeSpec { $0.annotations = ["a=b", "a=c", "k=v=w", "empty="] }).isEmpty)
        let found = problems(makeSpec { $0.annotations = ["ok=1", "novalue", "=x"] })
        #expect(found.map(\.path) == ["annotations[1]", "annotations[2]"])
        let longKey = String(repeating: "k", count: 254)
        #expect(problems(makeSpec { $0.annotations = ["\(longKey)=v"] }).map(\.code) == [.annotation])
        let bigValue = String(repeating: "v", count: (1 << 20) + 1)
        #expect(problems(makeSpec { $0.annotations = ["k=\(bigValue)"] }).map(\.code) == [.annotation])
    }

    @Test func serviceAccountLength() throws {
        let name = String(repeating: "s", count: 63)
        #expect(try Plan(validating: makeSpec { $0.serviceAccount = name }).serviceAccount == name)
        let found = problems(makeSpec { $0.serviceAccount = name + "s" })
        #expect(found.map(\.path) == ["service_account"])
    }

    @Test func resources() throws {
        let plan = try Plan(validating: makeSpec { $0.resources = ["memory": "2Gi", "nvidia.com/gpu": "1"] })
        #expect(plan.resources.mapValues(\.text) == ["cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"])
        #expect(plan.cpuMillicores == 1000)
        #expect(plan.memoryBytes == 2 << 30)
        let found = problems(makeSpec { $0.resources = ["cpu": "lots", "memory": "-1Gi", "bad key!": "1"] })
        #expect(Set(found.map(\.path)) == ["resources.cpu", "resources.memory", "resources.bad key!"])
        #expect(found.allSatisfy { $0.code == .resource })
    }

    @Test(
        arguments: [
            ("1", 1000, 1), ("0.5", 500, 1), ("500m", 500, 1), ("1Gi", 1_073_741_824_000, 1_073_741_824),
            ("2e3", 2_000_000, 2000), ("1.5Ki", 1_536_000, 1536), ("3k", 3_000_000, 3000), ("1E2", 100_000, 100),
            ("100Mi", 104_857_600_000, 104_857_600), ("0.1m", 1, 1), ("+2", 2000, 2), ("1.", 1000, 1),
            (".5", 500, 1), ("2.5e-1", 250, 1), ("1M", 1_000_000_000, 1_000_000), ("0", 0, 0),
        ] as [(String, Int64, Int64)]
    )
    func quantitiesParse(text: String, millis: Int64, units: Int64) throws {
        let quantity = try ResourceQuantity(parsing: text)
        #expect(quantity.scaled(by: 1000) == millis)
        #expect(quantity.scaled(by: 1) == units)
        #expect(quantity.text == text)
    }

    @Test(arguments: ["", "abc", "1 Gi", "1gi", "1Gb", "-1", "1e", "1e+", "--1", "1..5", "Gi", "1.5.5", "1e1000x"])
    func quantitiesRejected(text: String) {
        #expect(throws: QuantityError.self) { try ResourceQuantity(parsing: text) }
    }

    @Test func quantityOverflowIsNil() throws {
        #expect(try ResourceQuantity(parsing: "9Ei").scaled(by: 1000) == nil)
        #expect(try ResourceQuantity(parsing: "1e30").scaled(by: 1) == nil)
        #expect(try ResourceQuantity(parsing: "1e-30").scaled(by: 1) == 1)
    }

    /// F8: a limit that does not fit in 64 bits used to become "no limit"; F17: limits no container can run with.
    @Test(arguments: [
        ("memory", "100Ei", "too large"), ("memory", "1e30", "too large"), ("memory", "0", "at least 6Mi"),
        ("memory", "6291455", "at least 6Mi"), ("memory", "5Mi", "at least 6Mi"), ("cpu", "0", "above 0"),
        ("cpu", "0m", "above 0"), ("cpu", "9E", "too large"), ("cpu", "100Ei", "too large"),
    ])
    func F8F17LimitsThatCannotWorkAreRefused(key: String, text: String, message: String) throws {
        let found = problems(makeSpec { $0.resources = [key: text] })
        #expect(found.map(\.path) == ["resources.\(key)"])
        #expect(found.first?.code == .resource)
        #expect(found.first?.message.contains(message) == true, "\(found)")
        // The same rule holds for `PUT /plans/{id}/resources`, and a refused change changes nothing.
        var plan = try Plan(validating: makeSpec())
        let error = try #require(throws: PlanValidationError.self) {
            try plan.apply(PlanResourceChangeJSON(set: [key: text]))
        }
        #expect(error.problems.map(\.path) == ["resources.\(key)"])
        #expect(plan.resources == Plan.defaultResources)
    }

    @Test func F8F17LimitsAtTheEdgeAreAccepted() throws {
        let plan = try Plan(validating: makeSpec { $0.resources = ["memory": "6Mi", "cpu": "1m", "gpu": "0"] })
        #expect(plan.memoryBytes == 6 << 20)
        #expect(plan.cpuMillicores == 1)
    }

    /// F17: a mount path with ':' or ',' cannot be given to a container runtime; an image name starting with '-'
    /// would be read as an option.
    @Test func F17PathsAndImagesNoContainerCanUseAreRefused() {
        let colon = problems(makeSpec { $0.inputs = [mount("/in:rw", "a:b")] })
        #expect(colon.map(\.path) == ["inputs[0].path"])
        #expect(colon.first?.message.contains("':' or ','") == true)
        let comma = problems(makeSpec { $0.outputs = [mount("/out/a,z", "a:b")] })
        #expect(comma.map(\.path) == ["outputs[0].path"])
        let dash = problems(makeSpec { $0.image = "--privileged:1" })
        #expect(dash.map(\.path) == ["image"])
        #expect(dash.first?.message.contains("starts with '-'") == true)
    }

    /// Plans stored before these rules existed must still load: the store validates them without them.
    @Test func F17StoredPlansBeforeTheRulesStillLoad() throws {
        let old = makeSpec {
            $0.image = "-odd:1"
            $0.inputs = [mount("/in:x", "a:b")]
            $0.resources = ["memory": "0", "cpu": "100Ei"]
        }
        #expect(throws: PlanValidationError.self) { try Plan(validating: old) }
        let loaded = try Plan(validating: old, runnable: false)
        #expect(loaded.memoryBytes == 0)
        #expect(loaded.cpuMillicores == nil)
    }

    @Test func everyProblemIsReportedAtOnce() throws {
        let spec = PlanSpecJSON(
            image: "noversion",
            inputs: [mount("rel", "knit#transient:x"), mount("/in")],
            outputs: [mount("/in/sub", "knit#id:1")],
            onNode: OnNodeJSON(may: ["bad"]),
            serviceAccount: String(repeating: "x", count: 64)
        )
        let error = try #require(throws: PlanValidationError.self) { try Plan(validating: spec) }
        #expect(
            error.codes == [.image, .path, .systemTag, .missing, .systemTag, .overlap, .onNode, .serviceAccount]
        )
        #expect(error.apiError.status == 400)
        #expect(error.apiError.advice == error.description)
        #expect(error.description.split(separator: "\n").count == 8)
    }

    @Test func mutableFields() throws {
        var plan = try Plan(validating: makeSpec { $0.annotations = ["a=1", "a=2", "b=1"] })
        try plan.apply(PlanResourceChangeJSON(set: ["cpu": "2", "gpu": "1"], unset: ["gpu", "memory"]))
        #expect(plan.resources.mapValues(\.text) == ["cpu": "2"])
        #expect(plan.memoryBytes == nil)
        #expect(throws: PlanValidationError.self) { try plan.apply(PlanResourceChangeJSON(set: ["cpu": "x"])) }
        #expect(plan.resources.mapValues(\.text) == ["cpu": "2"])

        try plan.apply(PlanAnnotationChangeJSON(add: ["c=3", "a=1"], remove: ["b=1"], removeKey: ["a"]))
        #expect(plan.annotations.map(\.description) == ["a=1", "c=3"])
        #expect(throws: PlanValidationError.self) { try plan.apply(PlanAnnotationChangeJSON(add: ["x"])) }

        try plan.setServiceAccount("runner")
        #expect(plan.serviceAccount == "runner")
        try plan.setServiceAccount(nil)
        #expect(plan.serviceAccount == nil)
        #expect(throws: PlanValidationError.self) { try plan.setServiceAccount(String(repeating: "x", count: 64)) }
    }

    @Test func specRoundTripsThroughValidation() throws {
        let plan = try Plan(
            validating: makeSpec {
                $0.entrypoint = ["python", "-u", "train.py"]
                $0.args = ["--dataset", "/in/dataset"]
                $0.annotations = ["owner=alice"]
                $0.onNode = OnNodeJSON(must: ["gpu=yes"])
                $0.resources = ["cpu": "2"]
                $0.serviceAccount = "sa"
                $0.active = false
                $0.inputs.append(mount("/in/pinned", "knit#timestamp:2024-01-01T09:00:00+09:00"))
            }
        )
        #expect(try Plan(validating: plan.spec) == plan)
    }
}
