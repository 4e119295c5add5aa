import KnitCore
import KnitTestSupport
import Testing

@Suite struct RunJSONTests {
    private let plan = PlanSummaryJSON(planId: "p", image: "localhost:30503/train:v1.0", entrypoint: ["python"])

    @Test func detailWithLogAndExit() throws {
        let detail = RunDetailJSON(
            runId: "r",
            status: RunStatus.done.rawValue,
            updatedAt: "2024-11-19T05:25:23.911+00:00",
            exit: RunExitJSON(code: 0, message: ""),
            plan: plan,
            inputs: [RunAssignmentJSON(path: "/in/dataset", tags: tagSet("type:dataset"), knitId: "k1")],
            outputs: [RunAssignmentJSON(path: "/out/model", tags: tagSet("type:model"), knitId: "k2")],
            log: RunLogJSON(tags: tagSet("type:log"), knitId: "k3")
        )
        let text = String(decoding: try KnitJSON.encode(detail), as: UTF8.self)
        #expect(
            text
                == #"{"runId":"r","status":"done","updatedAt":"2024-11-19T05:25:23.911+00:00","exit":{"code":0,"message":""},"#
                + #""plan":{"planId":"p","image":"localhost:30503/train:v1.0","entrypoint":["python"]},"#
                + #""inputs":[{"path":"/in/dataset","tags":["type:dataset"],"knitId":"k1"}],"#
                + #""outputs":[{"path":"/out/model","tags":["type:model"],"knitId":"k2"}],"#
                + #""log":{"tags":["type:log"],"knitId":"k3"}}"#
        )
        #expect(try JSONDecoderShim.decode(RunDetailJSON.self, text) == detail)
        #expect(
            detail.summary
                == RunSummaryJSON(
                    runId: "r",
                    status: "done",
                    updatedAt: detail.updatedAt,
                    exit: detail.exit,
                    plan: plan
                )
        )
    }

    /// Knitfab writes `"log": null` for a plan without log (no omitempty), but omits an unset exit.
    @Test func missingLogIsAnExplicitNull() throws {
        let detail = RunDetailJSON(runId: "r", status: "waiting", updatedAt: "t", plan: plan)
        let compact = String(decoding: try KnitJSON.encode(detail), as: UTF8.self)
        #expect(compact.hasSuffix(#""inputs":[],"outputs":[],"log":null}"#))
        #expect(!compact.contains("exit"))
        // The tree encoder (pretty printing) agrees.
        #expect(try KnitJSON.encodeValue(detail)["log"] == .null)
        #expect(try KnitJSON.encodePretty(detail).contains(#""log": null"#))
        #expect(try JSONDecoderShim.decode(RunDetailJSON.self, compact) == detail)
    }
}
