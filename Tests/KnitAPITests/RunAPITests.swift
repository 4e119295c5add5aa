import KnitAPI
import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

private let pipelineSpec = """
    {"image":"repo/train:v1","inputs":[{"path":"/in/data","tags":["type:dataset"]}],
     "outputs":[{"path":"/out/model","tags":["type:model"]}],"log":{"tags":["type:log"]}}
    """

private func pushed(_ harness: APIHarness, tags: [String]) throws -> DataDetailJSON {
    let ticket = try harness.store.beginUpload(creator: "alice")
    return try harness.store.finishUpload(ticket, tags: tags.map { try Tag(parsing: $0) }, sizeBytes: 0)
}

private func registered(_ harness: APIHarness, _ body: String = pipelineSpec) throws -> String {
    let response = harness.request(
        "POST",
        "/api/plans/",
        headers: ["content-type": "application/json"],
        body: Array(body.utf8)
    )
    #expect(response.status == 200)
    return try #require(try json(response)["planId"]?.stringValue)
}

/// runIds of `GET uri`, in the answer's order.
private func runIds(_ harness: APIHarness, _ uri: String) throws -> [String] {
    let response = harness.request("GET", uri)
    #expect(response.status == 200, "\(uri)")
    return try #require(try json(response).arrayValue).compactMap { $0["runId"]?.stringValue }
}

@Suite struct RunAPITests {
    @Test func showAndFindTheRunsAPushCreates() throws {
        let harness = try APIHarness()
        let planId = try registered(harness)
        let data = try pushed(harness, tags: ["type:dataset"])
        let other = try pushed(harness, tags: ["type:dataset", "n:2"])
        let runs = try harness.store.findRuns(planIds: [planId])
        #expect(runs.count == 2)
        let run = try #require(runs.first { $0.inputs.first?.knitId == data.knitId })

        let shown = harness.request("GET", "/api/runs/\(run.runId)/")
        #expect(shown.status == 200)
        let body = try json(shown)
        #expect(body["runId"]?.stringValue == run.runId)
        #expect(body["status"]?.stringValue == "waiting")
        #expect(body["plan"]?["planId"]?.stringValue == planId)
        #expect(body["inputs"]?.arrayValue?.first?["path"]?.stringValue == "/in/data")
        #expect(body["inputs"]?.arrayValue?.first?["knitId"]?.stringValue == data.knitId)
        #expect(body["outputs"]?.arrayValue?.first?["path"]?.stringValue == "/out/model")
        #expect(body["log"]?["knitId"]?.stringValue == run.log?.knitId)
        #expect(body["exit"] == nil)
        #expect(harness.request("GET", "/api/runs/\(run.runId)").status == 200)
        #expect(harness.request("GET", "/api/runs/nope/").status == 404)

        #expect(Set(try runIds(harness, "/api/runs/?plan=\(planId)")) == Set(runs.map(\.runId)))
        #expect(try runIds(harness, "/api/runs/?plan=\(planId)&knitIdInput=\(data.knitId)") == [run.runId])
        #expect(
            Set(try runIds(harness, "/api/runs/?knitIdInput=\(data.knitId),\(other.knitId)")) == Set(runs.map(\.runId))
        )
        #expect(try runIds(harness, "/api/runs/?knitIdOutput=\(run.outputs[0].knitId)") == [run.runId])
        #expect(try runIds(harness, "/api/runs/?status=waiting&plan=\(planId)").count == 2)
        #expect(try runIds(harness, "/api/runs/?status=done,failed").count == 2)  // the uploads
        #expect(try runIds(harness, "/api/runs/?status=running").isEmpty)
        #expect(try runIds(harness, "/api/runs/").count == 4)
        #expect(try runIds(harness, "/api/runs/?since=2000-01-01T00:00:00Z&duration=1h").isEmpty)
        #expect(try runIds(harness, "/api/runs/?since=2000-01-01T00:00:00Z").count == 4)

        // Data detail shows the consuming Run and the nomination.
        let detail = try json(harness.request("GET", "/api/data/?tag=knit%23id:\(data.knitId)"))
        let first = try #require(detail.arrayValue?.first)
        #expect(first["downstreams"]?.arrayValue?.first?["run"]?["runId"]?.stringValue == run.runId)
        #expect(first["downstreams"]?.arrayValue?.first?["mountpoint"]?["path"]?.stringValue == "/in/data")
        #expect(first["nomination"]?.arrayValue?.first?["plan"]?["planId"]?.stringValue == planId)
        #expect(first["nomination"]?.arrayValue?.first?["path"]?.stringValue == "/in/data")
    }

    @Test func logIsNullWhenThePlanKeepsNone() throws {
        let harness = try APIHarness()
        let planId = try registered(
            harness,
            #"{"image":"repo/nolog:v1","inputs":[{"path":"/in","tags":["a:b"]}],"outputs":[]}"#
        )
        _ = try pushed(harness, tags: ["a:b"])
        let runId = try #require(try harness.store.findRuns(planIds: [planId]).first?.runId)
        let text = String(decoding: try harness.request("GET", "/api/runs/\(runId)").collectBody(), as: UTF8.self)
        #expect(text.contains(#""log":null"#))
    }

    @Test func badQueriesAre400() throws {
        let harness = try APIHarness()
        for uri in [
            "/api/runs/?status=invalidated",
            "/api/runs/?status=waiting,bogus",
            "/api/runs/?since=yesterday",
            "/api/runs/?since=2024-01-01T00:00:00Z&duration=forever",
            "/api/runs/?duration=1h",
        ] {
            #expect(harness.request("GET", uri).status == 400, "\(uri)")
        }
        #expect(harness.request("POST", "/api/runs/").status == 405)
        #expect(harness.request("GET", "/api/runs/", as: nil).status == 401)
        #expect(harness.request("GET", "/api/runs/", as: "rita").status == 200)
    }
}

@Suite struct RunLogAPITests {
    @Test func logIs503BeforeTheRunStartsThenTheFileAndEmptyWhileNothingIsWritten() throws {
        let harness = try APIHarness()
        let planId = try registered(harness)
        _ = try pushed(harness, tags: ["type:dataset"])
        let waiting = try #require(try harness.store.findRuns(planIds: [planId]).first)
        #expect(harness.request("GET", "/api/runs/\(waiting.runId)/log").status == 503)

        try #require(try harness.store.markStarting(runId: waiting.runId))
        try #require(try harness.store.markRunning(runId: waiting.runId))
        let started = harness.request("GET", "/api/runs/\(waiting.runId)/log")
        #expect(started.status == 200)
        #expect(try started.collectBody().isEmpty, "no log file yet streams as empty")

        let logId = try #require(waiting.log?.knitId)
        let logPath = harness.store.dataDirectory(knitId: logId) + "/log"
        let written = makeTree(["log": Array("hello\nworld\n".utf8)])
        defer { run(["rm", "-rf", written]) }
        run(["cp", written + "/log", logPath])
        let exit = RunExitJSON(code: 0, message: "")
        try #require(try harness.store.finishRun(runId: waiting.runId, exit: exit, succeeded: true))
        // Finished: follow asks for nothing more than the file.
        let finished = harness.request("GET", "/api/runs/\(waiting.runId)/log?follow")
        #expect(finished.status == 200)
        #expect(String(decoding: try finished.collectBody(), as: UTF8.self) == "hello\nworld\n")
        #expect(finished.headers.contains { $0 == ("Content-Type", "text/plain; charset=utf-8") })
    }

    @Test func logIs404ForAPlanWithoutLogAndForUnknownRuns() throws {
        let harness = try APIHarness()
        let planId = try registered(
            harness,
            #"{"image":"repo/x:v1","inputs":[{"path":"/in","tags":["type:dataset"]}],"outputs":[]}"#
        )
        _ = try pushed(harness, tags: ["type:dataset"])
        let run = try #require(try harness.store.findRuns(planIds: [planId]).first)
        #expect(harness.request("GET", "/api/runs/\(run.runId)/log").status == 404)
        #expect(harness.request("GET", "/api/runs/00000000-0000-4000-8000-000000000000/log").status == 404)
    }
}
