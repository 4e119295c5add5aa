import KnitArchive
import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

@testable import KnitAPI

// Who may change what: a user changes only what they own (their uploads, their plans, the Runs of those
// plans and what those Runs made), an admin anything, a reader nothing; every change and every refusal
// leaves an audit line naming the caller.

let ownershipPlanSpec = """
    {"image":"repo/train:v1","inputs":[{"path":"/in","tags":["own:data"]}],
     "outputs":[{"path":"/out","tags":["own:model"]}],"log":{"tags":["own:log"]}}
    """

/// alice's things on a fresh server: an upload, a plan taking it and that plan's finished Run. The access matrix
/// (AccessMatrixTests) uses it too.
struct OwnershipFixture {
    let harness: APIHarness
    let upload: DataDetailJSON
    let uploadRunId: String
    let planId: String
    let planRun: RunDetailJSON

    /// alice uploads a Data and registers a plan that takes it; the plan's Run has finished.
    init() throws {
        harness = try APIHarness()
        let archive = try makeArchive(format: .tar, files: ["a.txt": "alice's"])
        let posted = harness.request("POST", "/api/data/?tag=own:data", as: "alice", body: archive)
        try #require(posted.status == 200)
        let knitId = try #require(try json(posted)["knitId"]?.stringValue)
        upload = try harness.store.dataDetail(knitId: knitId)
        uploadRunId = upload.upstream.run.runId
        let registered = harness.request(
            "POST",
            "/api/plans/",
            as: "alice",
            headers: ["content-type": "application/json"],
            body: Array(ownershipPlanSpec.utf8)
        )
        try #require(registered.status == 200)
        planId = try #require(try json(registered)["planId"]?.stringValue)
        let run = try #require(try harness.store.findRuns(planIds: [planId]).first)
        try #require(try harness.store.markStarting(runId: run.runId))
        try #require(
            try harness.store.finishRun(runId: run.runId, exit: RunExitJSON(code: 0, message: ""), succeeded: true)
        )
        planRun = try harness.store.runDetail(runId: run.runId)
    }

    /// Every change a user might try on alice's things, as (method, uri, body).
    var changes: [(String, String, String)] {
        [
            ("PUT", "/api/data/\(upload.knitId)/", #"{"add":["x:y"],"remove":[]}"#),
            ("PUT", "/api/data/\(planRun.outputs[0].knitId)/", #"{"add":["x:y"],"remove":[]}"#),
            ("PUT", "/api/runs/\(planRun.runId)/retry", ""),
            ("PUT", "/api/plans/\(planId)/resources", #"{"set":{"cpu":"1"}}"#),
            ("PUT", "/api/plans/\(planId)/annotations", #"{"add":["k=v"]}"#),
            ("PUT", "/api/plans/\(planId)/serviceaccount", #"{"service_account":"sa"}"#),
            ("DELETE", "/api/plans/\(planId)/serviceaccount", ""),
            ("DELETE", "/api/plans/\(planId)/active", ""),
            ("PUT", "/api/plans/\(planId)/active", ""),
            ("DELETE", "/api/runs/\(planRun.runId)", ""),
            ("DELETE", "/api/runs/\(uploadRunId)", ""),
        ]
    }

    func request(_ change: (String, String, String), as user: String) -> APIResponse {
        harness.request(
            change.0,
            change.1,
            as: user,
            headers: change.2.isEmpty ? [:] : ["content-type": "application/json"],
            body: Array(change.2.utf8)
        )
    }
}

@Suite struct OwnershipAPITests {
    /// F7: carol deleted alice's Data (204) and retried alice's Run; now every such change is 403 with the
    /// owner named, and nothing of alice's changed.
    @Test func anotherUserCannotChangeOrDestroyWhatIsNotTheirs() throws {
        let fixture = try OwnershipFixture()
        let before = try fixture.harness.store.dataDetail(knitId: fixture.upload.knitId)
        let planBefore = try fixture.harness.store.planDetail(planId: fixture.planId)
        for change in fixture.changes {
            let response = fixture.request(change, as: "carol")
            #expect(response.status == 403, "carol \(change.0) \(change.1): \(response.status)")
            let body = try json(response)
            #expect(body["reason"]?.stringValue?.contains("user 'alice'") == true, "\(change.1): \(body)")
            #expect(body["reason"]?.stringValue?.contains("only its owner or an admin") == true)
        }
        #expect(try fixture.harness.store.dataDetail(knitId: fixture.upload.knitId) == before)
        #expect(try fixture.harness.store.runDetail(runId: fixture.planRun.runId) == fixture.planRun)
        #expect(try fixture.harness.store.planDetail(planId: fixture.planId) == planBefore)

        // Readers are refused as before; unknown ids are still 404, not 403.
        for change in fixture.changes {
            #expect(fixture.request(change, as: "rita").status == 403)
        }
        #expect(fixture.harness.request("DELETE", "/api/runs/no-such-run", as: "carol").status == 404)
        #expect(
            fixture.harness.request("PUT", "/api/data/no-such-data/", as: "carol", body: Array("{}".utf8)).status == 404
        )
    }

    @Test func theOwnerAndAnAdminMay() throws {
        let fixture = try OwnershipFixture()
        let tagged = fixture.request(
            ("PUT", "/api/data/\(fixture.upload.knitId)/", #"{"add":["by:alice"]}"#),
            as: "alice"
        )
        #expect(tagged.status == 200)
        let adminTagged = fixture.request(
            ("PUT", "/api/data/\(fixture.upload.knitId)/", #"{"add":["by:root"]}"#),
            as: "root"
        )
        #expect(adminTagged.status == 200)
        // The Run's output belongs to the plan's owner, even though nobody uploaded it.
        #expect(
            fixture.request(
                ("PUT", "/api/data/\(fixture.planRun.outputs[0].knitId)/", #"{"add":["ok:1"]}"#),
                as: "alice"
            ).status == 200
        )
        #expect(
            fixture.request(("PUT", "/api/plans/\(fixture.planId)/resources", #"{"set":{"cpu":"1"}}"#), as: "root")
                .status == 200
        )
        #expect(fixture.request(("PUT", "/api/runs/\(fixture.planRun.runId)/retry", ""), as: "alice").status == 200)
        // The retried Run is still alice's; an admin may delete it once it is done.
        let retried = try fixture.harness.store.runDetail(runId: fixture.planRun.runId)
        #expect(try fixture.harness.store.owner(of: .run(runId: retried.runId)) == "alice")
        #expect(try fixture.harness.store.owner(of: .data(knitId: retried.outputs[0].knitId)) == "alice")
    }

    /// Every change and every refusal is logged with who did it and on what; reads are not.
    @Test func changesAndRefusalsLeaveAuditLines() throws {
        let fixture = try OwnershipFixture()
        let refused = fixture.request(("DELETE", "/api/runs/\(fixture.uploadRunId)", ""), as: "carol")
        #expect(refused.status == 403)
        let deleted = fixture.harness.request("DELETE", "/api/runs/\(fixture.uploadRunId)", as: "root")
        #expect(deleted.status == 409 || deleted.status == 204, "\(deleted.status)")
        _ = fixture.harness.request("GET", "/api/data/", as: "carol")

        let audit = fixture.harness.log.entries("audit")
        let denied = audit.filter { $0["audit.outcome"] == "denied" }
        #expect(denied.count == 1)
        #expect(denied.first?["audit.user"] == "carol")
        #expect(denied.first?["audit.role"] == "user")
        #expect(denied.first?["audit.action"] == "DELETE /api/runs/\(fixture.uploadRunId)")
        // alice's upload and plan registration were audited with the ids they made.
        let done = audit.filter { $0["audit.outcome"] == "done" }
        #expect(done.contains { $0["audit.user"] == "alice" && $0["audit.created"] == fixture.upload.knitId })
        #expect(done.contains { $0["audit.user"] == "alice" && $0["audit.created"] == fixture.planId })
        #expect(!audit.contains { $0["audit.action"]?.hasPrefix("GET") == true })
    }

    /// F7 for images: the first pusher owns a repository; nobody else may push to it or delete from it.
    @Test func imageRepositoriesBelongToTheirFirstPusher() throws {
        let harness = try APIHarness()
        func check(_ method: String, _ uri: String, as user: String) -> Int {
            harness.request(
                "GET",
                "/api/auth/registry",
                as: user,
                headers: ["x-original-method": method, "x-original-uri": uri]
            ).status
        }
        #expect(check("POST", "/v2/team/train/blobs/uploads/", as: "alice") == 204)
        #expect(check("PUT", "/v2/team/train/manifests/1", as: "alice") == 204)
        #expect(check("PUT", "/v2/team/train/manifests/1", as: "carol") == 403)
        #expect(check("POST", "/v2/team/train/blobs/uploads/?mount=sha256:00&from=x", as: "carol") == 403)
        #expect(check("DELETE", "/v2/team/train/manifests/sha256:abc", as: "carol") == 403)
        #expect(check("DELETE", "/v2/team/train/manifests/sha256:abc", as: "root") == 204)
        #expect(check("GET", "/v2/team/train/manifests/1", as: "carol") == 204)
        #expect(check("GET", "/v2/team/train/manifests/1", as: "rita") == 204)
        #expect(check("PUT", "/v2/team/train/manifests/2", as: "rita") == 403)
        // A repository of carol's own is hers; a nested name is a different repository.
        #expect(check("PUT", "/v2/team/train/extra/manifests/1", as: "carol") == 204)
        #expect(check("PUT", "/v2/team/train/extra/manifests/1", as: "alice") == 403)
        // A write that names no repository is refused.
        #expect(check("DELETE", "/v2/_catalog", as: "alice") == 403)
        let denied = harness.log.entries("audit").filter { $0["audit.outcome"] == "denied" }
        #expect(
            denied.contains { $0["audit.user"] == "carol" && $0["audit.action"] == "PUT /v2/team/train/manifests/1" }
        )
    }

    @Test func repositoryNamesComeFromRegistryPaths() {
        #expect(registryRepository(inPath: "/v2/train/manifests/1") == "train")
        #expect(registryRepository(inPath: "/v2/a/b/c/blobs/uploads/x") == "a/b/c")
        #expect(registryRepository(inPath: "/v2/tags/tags/list") == "tags")
        #expect(registryRepository(inPath: "/v2/") == nil)
        #expect(registryRepository(inPath: "/v2/_catalog") == nil)
        #expect(registryRepository(inPath: "/api/x/manifests/1") == nil)
    }
}

@Suite struct SlotSharingAPITests {
    /// F5/F12: one user's transfers take at most their share; another user still gets a slot, and followed
    /// logs use a pool of their own.
    @Test func oneUserCannotTakeEveryTransferSlot() throws {
        let harness = try APIHarness(transferSlots: 4, followSlots: 2, slotsPerUser: 2)
        let archive = try makeArchive(format: .tar, files: ["a": "1"])
        let knitId = try #require(try json(harness.request("POST", "/api/data/", body: archive))["knitId"]?.stringValue)
        var held: [APIResponse] = [
            harness.request("GET", "/api/data/\(knitId)"), harness.request("GET", "/api/data/\(knitId)"),
        ]
        #expect(harness.api.transfersInFlight == 2)
        let refused = harness.request("GET", "/api/data/\(knitId)")
        #expect(refused.status == 503)
        #expect(try json(refused)["reason"]?.stringValue?.contains("of yours") == true)
        #expect(refused.headers.contains { $0.0 == "Retry-After" })
        // carol is not alice: her upload gets a slot.
        #expect(harness.request("POST", "/api/data/", as: "carol", body: archive).status == 200)
        for response in held { _ = try response.collectBody() }
        held.removeAll()
        #expect(harness.api.transfersInFlight == 0)
        #expect(harness.request("GET", "/api/data/\(knitId)").status == 200)
    }
}
