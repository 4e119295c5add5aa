import KnitAPI
import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

// PUT /api/runs/{id}/abort and /tearoff over a real store.

private let spec = """
    {"image":"repo/train:v1","inputs":[{"path":"/in/data","tags":["type:dataset"]}],
     "outputs":[{"path":"/out/model","tags":["type:model"]}],"log":{"tags":["type:log"]}}
    """

/// A harness with one plan and one pushed Data: the plan's one Run is waiting. Returns its runId.
private func waitingRun(_ harness: APIHarness) throws -> String {
    let response = harness.request(
        "POST",
        "/api/plans/",
        headers: ["content-type": "application/json"],
        body: Array(spec.utf8)
    )
    #expect(response.status == 200)
    let planId = try #require(try json(response)["planId"]?.stringValue)
    let ticket = try harness.store.beginUpload(creator: "alice")
    _ = try harness.store.finishUpload(ticket, tags: [try Tag(parsing: "type:dataset")], sizeBytes: 0)
    let runs = try harness.store.findRuns(planIds: [planId])
    try #require(runs.count == 1)
    return runs[0].runId
}

private func running(_ harness: APIHarness) throws -> String {
    let runId = try waitingRun(harness)
    #expect(try harness.store.markStarting(runId: runId))
    #expect(try harness.store.markRunning(runId: runId))
    return runId
}

@Suite struct RunLifecycleAPITests {
    @Test func abortAnswersTheRunDetailAborting() throws {
        let harness = try APIHarness()
        let runId = try running(harness)
        let response = harness.request("PUT", "/api/runs/\(runId)/abort")
        #expect(response.status == 200)
        let body = try json(response)
        #expect(body["runId"]?.stringValue == runId)
        #expect(body["status"]?.stringValue == "aborting")
        #expect(body["exit"]?["code"] == .number("253"))
        #expect(body["exit"]?["message"]?.stringValue == "aborted by user")
        #expect(body["outputs"]?.arrayValue?.count == 1)
        #expect(try harness.store.runDetail(runId: runId).status == "aborting")
        // Again: nothing to do, still 200 (trailing slash accepted too).
        #expect(harness.request("PUT", "/api/runs/\(runId)/abort/").status == 200)
    }

    @Test func abortOfAWaitingRunFailsItAtOnce() throws {
        let harness = try APIHarness()
        let runId = try waitingRun(harness)
        let response = harness.request("PUT", "/api/runs/\(runId)/abort")
        #expect(response.status == 200)
        let body = try json(response)
        #expect(body["status"]?.stringValue == "failed")
        #expect(body["exit"]?["code"] == .number("253"))
    }

    @Test func tearOffAnswersTheRunDetailCompleting() throws {
        let harness = try APIHarness()
        let runId = try running(harness)
        let response = harness.request("PUT", "/api/runs/\(runId)/tearoff")
        #expect(response.status == 200)
        let body = try json(response)
        #expect(body["status"]?.stringValue == "completing")
        #expect(body["exit"]?["code"] == .number("0"))
        #expect(body["exit"]?["message"]?.stringValue == "stopped by user")
        #expect(try harness.store.finishRun(runId: runId, exit: RunExitJSON(code: 0, message: ""), succeeded: true))
        #expect(try harness.store.runDetail(runId: runId).status == "done")
    }

    @Test func illegalTransitionsAre409ProhibitedOperation() throws {
        let harness = try APIHarness()
        let runId = try waitingRun(harness)
        let tearOff = harness.request("PUT", "/api/runs/\(runId)/tearoff")
        #expect(tearOff.status == 409)
        let body = try json(tearOff)
        #expect(body["reason"]?.stringValue == "prohibited operation")
        #expect(body["advice"]?.stringValue?.contains("waiting") == true)
        #expect(try harness.store.runDetail(runId: runId).status == "waiting")

        #expect(try harness.store.markStarting(runId: runId))
        #expect(try harness.store.finishRun(runId: runId, exit: RunExitJSON(code: 0, message: ""), succeeded: true))
        for action in ["abort", "tearoff"] {
            let response = harness.request("PUT", "/api/runs/\(runId)/\(action)")
            #expect(response.status == 409, "\(action)")
            #expect(try json(response)["reason"]?.stringValue == "prohibited operation")
        }
        #expect(try harness.store.runDetail(runId: runId).status == "done")
    }

    @Test func unknownRunsAre404ReadersAre403AndOtherMethods405() throws {
        let harness = try APIHarness()
        let runId = try running(harness)
        #expect(harness.request("PUT", "/api/runs/no-such-run/abort").status == 404)
        #expect(harness.request("PUT", "/api/runs/no-such-run/tearoff").status == 404)
        #expect(harness.request("PUT", "/api/runs/\(runId)/abort", as: "rita").status == 403)
        #expect(harness.request("PUT", "/api/runs/\(runId)/tearoff", as: "rita").status == 403)
        #expect(harness.request("PUT", "/api/runs/\(runId)/abort", as: nil).status == 401)
        #expect(harness.request("GET", "/api/runs/\(runId)/abort").status == 405)
        #expect(try harness.store.runDetail(runId: runId).status == "running")
    }
}
