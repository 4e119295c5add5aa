import KnitCore
import KnitTestSupport
import Testing

@Suite struct PlanJSONTests {
    private func text<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try KnitJSON.encode(value), as: UTF8.self)
    }

    @Test func specDecodesLeniently() throws {
        let spec = try JSONDecoderShim.decode(
            PlanSpecJSON.self,
            """
            {"image":"repo:tag","inputs":[{"path":"/in","tags":["a:b",{"key":"c","value":"d"}]}],
             "log":null,"active":null,"resources":{"cpu":1,"memory":"1Gi","gpu":0.5,"big":2e3},
             "on_node":{"must":["k=v"]},"service_account":"sa"}
            """
        )
        #expect(spec.outputs.isEmpty)
        #expect(spec.log == nil)
        #expect(spec.active == nil)
        #expect(spec.resources == ["cpu": "1", "memory": "1Gi", "gpu": "0.5", "big": "2000"])
        #expect(spec.onNode == OnNodeJSON(must: ["k=v"]))
        #expect(spec.serviceAccount == "sa")
        #expect(spec.inputs[0].tags == tagSet("a:b", "c:d"))
        let empty = try JSONDecoderShim.decode(PlanSpecJSON.self, "{}")
        #expect(empty.image.isEmpty && empty.inputs.isEmpty)
        #expect(problems(empty).map(\.code) == [.image, .missing])
    }

    @Test func specEncodesInKnitfabOrderWithSortedResources() throws {
        let spec = PlanSpecJSON(
            image: "repo:tag",
            inputs: [mount("/in", "a:b")],
            active: true,
            resources: ["memory": "1Gi", "cpu": "1", "a/gpu": "1"],
            onNode: OnNodeJSON(may: ["k=v"]),
            serviceAccount: "sa"
        )
        #expect(
            try text(spec)
                == #"{"image":"repo:tag","inputs":[{"path":"/in","tags":["a:b"]}],"outputs":[],"active":true,"#
                + #""resources":{"a/gpu":"1","cpu":"1","memory":"1Gi"},"on_node":{"may":["k=v"]},"service_account":"sa"}"#
        )
        #expect(try JSONDecoderShim.decode(PlanSpecJSON.self, try text(spec)) == spec)
    }

    /// The detail the getting-started tutorial shows after `knit plan apply`.
    @Test func detailMatchesTheTutorial() throws {
        let plan = try Plan(
            validating: PlanSpecJSON(
                image: "localhost:30503/knitfab-first-train:v1.0",
                entrypoint: ["python", "-u", "train.py"],
                args: ["--dataset", "/in/dataset", "--save-to", "/out/model"],
                annotations: [],
                inputs: [mount("/in/dataset", "project:first-knitfab", "type:dataset", "mode:training")],
                outputs: [
                    mount(
                        "/out/model",
                        "project:first-knitfab",
                        "type:model",
                        "description: 2 layer CNN + 2 layer Affine"
                    )
                ],
                log: LogPointJSON(tags: tagSet("project:first-knitfab", "type:log")),
                active: true,
                resources: ["cpu": "1", "memory": "1Gi"]
            )
        )
        let detail = PlanDetailJSON(planId: "da6c4451-4886-4d78-9c20-aede6b288d22", plan: plan, others: [])
        #expect(
            try KnitJSON.encodePretty(detail) == """
                {
                    "planId": "da6c4451-4886-4d78-9c20-aede6b288d22",
                    "image": "localhost:30503/knitfab-first-train:v1.0",
                    "entrypoint": [
                        "python",
                        "-u",
                        "train.py"
                    ],
                    "args": [
                        "--dataset",
                        "/in/dataset",
                        "--save-to",
                        "/out/model"
                    ],
                    "inputs": [
                        {
                            "path": "/in/dataset",
                            "tags": [
                                "mode:training",
                                "project:first-knitfab",
                                "type:dataset"
                            ],
                            "upstreams": []
                        }
                    ],
                    "outputs": [
                        {
                            "path": "/out/model",
                            "tags": [
                                "description:2 layer CNN + 2 layer Affine",
                                "project:first-knitfab",
                                "type:model"
                            ],
                            "downstreams": []
                        }
                    ],
                    "log": {
                        "tags": [
                            "project:first-knitfab",
                            "type:log"
                        ],
                        "downstreams": []
                    },
                    "active": true,
                    "resources": {
                        "cpu": "1",
                        "memory": "1Gi"
                    }
                }
                """
        )
        // The streaming encoder writes the same text compactly, and it reads back.
        let compact = try text(detail)
        #expect(
            compact.hasPrefix(
                #"{"planId":"da6c4451-4886-4d78-9c20-aede6b288d22","image":"localhost:30503/knitfab-first-train:v1.0""#
            )
        )
        #expect(compact.hasSuffix(#""active":true,"resources":{"cpu":"1","memory":"1Gi"}}"#))
        #expect(try JSONDecoderShim.decode(PlanDetailJSON.self, compact) == detail)
    }

    @Test func detailShowsOptionalFieldsWhenSet() throws {
        let plan = try Plan(
            validating: makeSpec {
                $0.annotations = ["b=2", "a=1"]
                $0.onNode = OnNodeJSON(may: ["x=1"], must: ["y=2"])
                $0.serviceAccount = "robot"
                $0.log = nil
            }
        )
        let compact = try text(PlanDetailJSON(planId: "p", plan: plan, others: []))
        #expect(compact.contains(#""annotations":["a=1","b=2"],"inputs""#))
        #expect(compact.contains(#""active":true,"on_node":{"may":["x=1"],"must":["y=2"]},"resources""#))
        #expect(compact.hasSuffix(#""service_account":"robot"}"#))
        #expect(!compact.contains(#""log""#))
        #expect(plan.summary(planId: "p").annotations == ["a=1", "b=2"])
    }

    @Test func upstreamEntriesHaveMountpointOrLog() throws {
        let summary = PlanSummaryJSON(planId: "p", image: "i:t")
        #expect(
            try text(PlanUpstreamJSON(plan: summary, mountpoint: mount("/out", "a:b")))
                == #"{"plan":{"planId":"p","image":"i:t"},"mountpoint":{"path":"/out","tags":["a:b"]}}"#
        )
        #expect(
            try text(PlanUpstreamJSON(plan: summary, log: LogPointJSON(tags: tagSet("type:log"))))
                == #"{"plan":{"planId":"p","image":"i:t"},"log":{"tags":["type:log"]}}"#
        )
    }

    @Test func changeBodiesDecode() throws {
        let resources = try JSONDecoderShim.decode(
            PlanResourceChangeJSON.self,
            #"{"set":{"cpu":2,"memory":"4Gi"},"unset":["gpu"]}"#
        )
        #expect(resources == PlanResourceChangeJSON(set: ["cpu": "2", "memory": "4Gi"], unset: ["gpu"]))
        #expect(try JSONDecoderShim.decode(PlanResourceChangeJSON.self, "{}") == PlanResourceChangeJSON())
        let annotations = try JSONDecoderShim.decode(
            PlanAnnotationChangeJSON.self,
            #"{"add":["a=1"],"remove_key":["b"]}"#
        )
        #expect(annotations == PlanAnnotationChangeJSON(add: ["a=1"], removeKey: ["b"]))
        let account = try JSONDecoderShim.decode(PlanServiceAccountJSON.self, #"{"service_account":"sa"}"#)
        #expect(account.serviceAccount == "sa")
    }
}
