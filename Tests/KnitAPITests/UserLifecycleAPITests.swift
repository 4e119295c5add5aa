import KnitArchive
import KnitCore
import KnitStore
import KnitTestSupport
import Testing

@testable import KnitAPI

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

// What the API answers a token whose user was disabled or deleted, or that expired; and the creator every
// Data, Plan and Run shows, with the `creator=` filter of the three find endpoints.

private func withToken(_ harness: APIHarness, _ token: String, _ uri: String = "/api/whoami") -> APIResponse {
    harness.request("GET", uri, as: nil, headers: ["authorization": "Bearer \(token)"])
}

private func reason(_ response: APIResponse) throws -> String {
    try #require(try json(response)["reason"]?.stringValue)
}

@Suite struct UserLifecycleAPITests {
    @Test func anExpiredTokenGets401SayingItExpired() throws {
        let harness = try APIHarness()
        let expiresAt = KnitStore.systemClock() + 3000
        let issued = try harness.store.issueToken(for: "alice", expiry: .at(expiresAt), revokingOthers: false)
        #expect(withToken(harness, issued.token).status == 200)

        while KnitStore.systemClock() <= expiresAt { usleep(50_000) }
        let refused = withToken(harness, issued.token)
        #expect(refused.status == 401)
        let text = try reason(refused)
        #expect(text == "token expired at \(KnitTime(milliseconds: expiresAt)) (user 'alice')", "\(text)")
        #expect(refused.headers.contains { $0.0 == "WWW-Authenticate" && $0.1.hasPrefix("Bearer") })
        // Basic (Knitfab's CLI) is told the same.
        let basic = harness.request(
            "GET",
            "/api/data/",
            as: nil,
            headers: ["authorization": "Basic " + base64("alice:\(issued.token)")]
        )
        #expect(basic.status == 401)
        #expect(try reason(basic).hasPrefix("token expired at "))
        #expect(harness.request("GET", "/api/whoami", as: "alice").status == 200, "alice's other token lasts")
    }

    @Test func disablingOrDeletingAUserRefusesTheirNextRequest() throws {
        let harness = try APIHarness()
        let token = try #require(harness.tokens["carol"])
        #expect(withToken(harness, token).status == 200)

        try harness.store.setUserEnabled(name: "carol", enabled: false)
        let disabled = withToken(harness, token, "/api/data/")
        #expect(disabled.status == 401)
        #expect(try reason(disabled) == "user 'carol' is disabled")
        // Every route that needs a token, writes included, and the registry check nginx asks.
        #expect(harness.request("POST", "/api/data/", as: "carol", body: []).status == 401)
        #expect(harness.request("GET", "/api/auth/registry", as: "carol").status == 401)

        try harness.store.setUserEnabled(name: "carol", enabled: true)
        #expect(withToken(harness, token).status == 200)

        try harness.store.deleteUser(name: "carol")
        let deleted = withToken(harness, token)
        #expect(deleted.status == 401)
        #expect(try reason(deleted) == KnitAPIError.unauthorized.reason, "a deleted user's token is just unknown")
    }

    @Test func everyDataPlanAndRunShowsItsCreatorAndFindsFilterByIt() throws {
        let harness = try APIHarness()
        let archive = try makeArchive(format: .tar, files: ["a.txt": "a"])
        let mine = harness.request("POST", "/api/data/?tag=in:x", as: "alice", body: archive)
        #expect(mine.status == 200)
        #expect(try json(mine)["creator"]?.stringValue == "alice")
        let mineId = try #require(try json(mine)["knitId"]?.stringValue)
        let theirs = harness.request("POST", "/api/data/?tag=in:x", as: "carol", body: archive)
        let theirsId = try #require(try json(theirs)["knitId"]?.stringValue)
        let spec = #"{"image":"repo/train:v1","inputs":[{"path":"/in","tags":["in:x"]}],"outputs":[]}"#
        let plan = harness.request(
            "POST",
            "/api/plans/",
            as: "carol",
            headers: ["content-type": "application/json"],
            body: Array(spec.utf8)
        )
        #expect(plan.status == 200)
        #expect(try json(plan)["creator"]?.stringValue == "carol")
        let planId = try #require(try json(plan)["planId"]?.stringValue)

        func ids(_ uri: String, _ key: String) throws -> [String] {
            let response = harness.request("GET", uri, as: "rita")
            try #require(response.status == 200, "\(uri): \(response.status)")
            let items = try #require(try json(response).arrayValue)
            return items.compactMap { $0[key]?.stringValue }
        }
        #expect(try ids("/api/data/?creator=alice", "knitId") == [mineId])
        #expect(try ids("/api/data/?tag=in:x&creator=carol", "knitId") == [theirsId])
        #expect(try ids("/api/data/?creator=nobody", "knitId").isEmpty)
        #expect(Set(try ids("/api/data/?creator=", "knitId")) == [mineId, theirsId], "empty: anyone's")
        #expect(try ids("/api/data/?tag=in:x", "creator").sorted() == ["alice", "carol"])

        #expect(try ids("/api/plans/?creator=carol", "planId") == [planId])
        #expect(try ids("/api/plans/?creator=alice", "planId").isEmpty)

        let carolsRuns = try ids("/api/runs/?creator=carol", "runId")
        let planRuns = try ids("/api/runs/?plan=\(planId)", "runId")
        #expect(planRuns.count == 2, "one Run per Data, alice's included")
        #expect(Set(carolsRuns).isSuperset(of: planRuns), "a plan's Runs belong to its owner")
        #expect(try ids("/api/runs/?plan=\(planId)", "creator") == ["carol", "carol"])
        let alicesRuns = try ids("/api/runs/?creator=alice", "runId")
        #expect(alicesRuns.count == 1, "only her upload")
        let shown = harness.request("GET", "/api/runs/\(alicesRuns[0])/", as: "rita")
        #expect(try json(shown)["creator"]?.stringValue == "alice")
        let detail = harness.request("GET", "/api/plans/\(planId)/", as: "rita")
        #expect(try json(detail)["creator"]?.stringValue == "carol")
    }
}

private func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
