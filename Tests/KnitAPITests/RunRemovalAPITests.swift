import KnitAPI
import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

// PUT /api/runs/{id}/retry and DELETE /api/runs/{id} over a real store.

private let trainSpec = """
    {"image":"repo/train:v1","inputs":[{"path":"/in/data","tags":["type:dataset"]}],
     "outputs":[{"path":"/out/model","tags":["type:model"]}],"log":{"tags":["type:log"]}}
    """
private let evalSpec = """
    {"image":"repo/eval:v1","inputs":[{"path":"/in/model","tags":["type:model"]}],
     "outputs":[{"path":"/out/score","tags":["type:score"]}]}
    """

private let ok = RunExitJSON(code: 0, message: "")

/// Plans train (dataset → model, with log) and eval (model → score), one pushed dataset; train's Run
/// finished (`succeeded` or failed) with a file in its output. Returns the train Run.
private func finishedTrainRun(_ harness: APIHarness, succeeded: Bool) throws -> RunDetailJSON {
    for spec in [trainSpec, evalSpec] {
        let response = harness.request(
            "POST",
            "/api/plans/",
            headers: ["content-type": "application/json"],
            body: Array(spec.utf8)
        )
        #expect(response.status == 200)
    }
    let ticket = try harness.store.beginUpload(creator: "alice")
    let data = try harness.store.finishUpload(ticket, tags: [try Tag(parsing: "type:dataset")], sizeBytes: 0)
    let run = try #require(try harness.store.findRuns(inputKnitIds: [data.knitId]).first)
    #expect(try harness.store.markStarting(runId: run.runId))
    writeFileContent(harness.store.dataDirectory(knitId: run.outputs[0].knitId) + "/model.bin", "weights")
    #expect(try harness.store.finishRun(runId: run.runId, exit: ok, succeeded: succeeded))
    return try harness.store.runDetail(runId: run.runId)
}

private func writeFileContent(_ path: String, _ text: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    _ = text.withCString { write(fd, $0, strlen($0)) }
    close(fd)
}

/// The eval Runs (the ones taking a model).
private func evalRuns(_ harness: APIHarness, model: String) throws -> [RunDetailJSON] {
    try harness.store.findRuns(inputKnitIds: [model])
}

@Suite struct RunRemovalAPITests {
    @Test func retryAnswersTheRunDetailWithNewOutputs() throws {
        let harness = try APIHarness()
        let run = try finishedTrainRun(harness, succeeded: false)
        let oldModel = run.outputs[0].knitId
        let oldLog = try #require(run.log).knitId
        #expect(harness.dataEntries().contains(oldModel))

        let response = harness.request("PUT", "/api/runs/\(run.runId)/retry")
        #expect(response.status == 200)
        let body = try json(response)
        #expect(body["runId"]?.stringValue == run.runId)
        #expect(body["status"]?.stringValue == "waiting")
        #expect(body["exit"] == nil)
        let newModel = try #require(body["outputs"]?.arrayValue?.first?["knitId"]?.stringValue)
        let newLog = try #require(body["log"]?["knitId"]?.stringValue)
        #expect(newModel != oldModel && newLog != oldLog)
        #expect(body["inputs"]?.arrayValue?.first?["knitId"] == .string(run.inputs[0].knitId))

        // The old Data are 404 and their directories gone; the new output is processing.
        #expect(harness.request("GET", "/api/data/\(oldModel)/").status == 404)
        #expect(harness.request("GET", "/api/data/\(oldLog)/").status == 404)
        #expect(!harness.dataEntries().contains(oldModel) && !harness.dataEntries().contains(oldLog))
        let found = try json(harness.request("GET", "/api/data/?tag=type:model"))
        #expect(found.arrayValue?.count == 1)
        #expect(found.arrayValue?.first?["knitId"]?.stringValue == newModel)
        let tags = found.arrayValue?.first?["tags"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(tags.contains("knit#transient:processing"))
        #expect(try json(harness.request("GET", "/api/runs/\(run.runId)"))["status"]?.stringValue == "waiting")
    }

    @Test func retryRefusals() throws {
        let harness = try APIHarness()
        let run = try finishedTrainRun(harness, succeeded: true)
        let eval = try #require(try evalRuns(harness, model: run.outputs[0].knitId).first)

        let inUse = harness.request("PUT", "/api/runs/\(run.runId)/retry")
        #expect(inUse.status == 409)
        let body = try json(inUse)
        #expect(body["reason"]?.stringValue == "output of the run is in use")
        #expect(body["advice"]?.stringValue == "Delete all downstreams of the run first")
        #expect(try harness.store.runDetail(runId: run.runId).outputs == run.outputs)

        let notFinished = harness.request("PUT", "/api/runs/\(eval.runId)/retry")
        #expect(notFinished.status == 409)
        #expect(try json(notFinished)["reason"]?.stringValue == "the run has not finished yet")

        let upload = try #require(run.inputs.first).knitId
        let uploadRun = try harness.store.dataDetail(knitId: upload).upstream.run.runId
        let root = harness.request("PUT", "/api/runs/\(uploadRun)/retry")
        #expect(root.status == 409)
        #expect(try json(root)["reason"]?.stringValue == "Root run cannot be retried")

        #expect(harness.request("PUT", "/api/runs/no-such-run/retry").status == 404)
        #expect(harness.request("PUT", "/api/runs/\(run.runId)/retry", as: "rita").status == 403)
        #expect(harness.request("GET", "/api/runs/\(run.runId)/retry").status == 405)
        #expect(try harness.store.runDetail(runId: run.runId).status == "done")
    }

    @Test func deleteAnswers204AndTheRunDisappears() throws {
        let harness = try APIHarness()
        let run = try finishedTrainRun(harness, succeeded: true)
        let model = run.outputs[0].knitId
        let eval = try #require(try evalRuns(harness, model: model).first)

        // In use by the waiting eval Run.
        let inUse = harness.request("DELETE", "/api/runs/\(run.runId)/")
        #expect(inUse.status == 409)
        #expect(try json(inUse)["reason"]?.stringValue == "output of the run is in use")
        let waiting = harness.request("DELETE", "/api/runs/\(eval.runId)")
        #expect(waiting.status == 409)
        #expect(try json(waiting)["reason"]?.stringValue == "the run has not finished yet")
        #expect(harness.request("DELETE", "/api/runs/\(eval.runId)", as: "rita").status == 403)

        #expect(harness.request("PUT", "/api/runs/\(eval.runId)/abort").status == 200)
        let deleted = harness.request("DELETE", "/api/runs/\(eval.runId)/")
        #expect(deleted.status == 204)
        #expect(try deleted.collectBody().isEmpty)
        #expect(harness.request("GET", "/api/runs/\(eval.runId)").status == 404)
        #expect(harness.request("DELETE", "/api/runs/\(eval.runId)").status == 404)
        #expect(harness.request("PUT", "/api/runs/\(eval.runId)/retry").status == 404)
        let listed = try json(harness.request("GET", "/api/runs/"))
        #expect(listed.arrayValue?.contains { $0["runId"]?.stringValue == eval.runId } == false)
        #expect(harness.request("GET", "/api/data/\(eval.outputs[0].knitId)/").status == 404)

        // Retagging the model does not bring the deleted combination back.
        let untag = harness.request(
            "PUT",
            "/api/data/\(model)/",
            headers: ["content-type": "application/json"],
            body: Array(#"{"add":[],"remove":["type:model"]}"#.utf8)
        )
        #expect(untag.status == 200)
        let retag = harness.request(
            "PUT",
            "/api/data/\(model)/",
            headers: ["content-type": "application/json"],
            body: Array(#"{"add":["type:model"],"remove":[]}"#.utf8)
        )
        #expect(retag.status == 200)
        #expect(try evalRuns(harness, model: model).isEmpty)
        #expect(try json(retag)["downstreams"]?.arrayValue?.isEmpty == true)

        // Now the train Run may go too; its model and log go with it.
        #expect(harness.request("DELETE", "/api/runs/\(run.runId)").status == 204)
        #expect(harness.request("GET", "/api/data/\(model)/").status == 404)
        #expect(!harness.dataEntries().contains(model))
        #expect(!harness.dataEntries().contains(try #require(run.log).knitId))
    }

    @Test func deletingAnUploadRunDeletesTheUploadedData() throws {
        let harness = try APIHarness()
        let ticket = try harness.store.beginUpload(creator: "alice")
        let data = try harness.store.finishUpload(ticket, tags: [try Tag(parsing: "kind:raw")], sizeBytes: 0)
        #expect(harness.dataEntries() == [data.knitId])
        let response = harness.request("DELETE", "/api/runs/\(data.upstream.run.runId)")
        #expect(response.status == 204)
        #expect(harness.request("GET", "/api/data/\(data.knitId)/").status == 404)
        #expect(try json(harness.request("GET", "/api/data/?tag=kind:raw")).arrayValue?.isEmpty == true)
        #expect(try json(harness.request("GET", "/api/runs/")).arrayValue?.isEmpty == true)
        #expect(harness.dataEntries().isEmpty)
    }
}
