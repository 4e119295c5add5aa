import Foundation
import KnitArchive
import KnitCore
import KnitStore
import Testing

@testable import KnitAPI

// Roles × endpoints × ownership: every route of the API called by every kind of caller — no token, a reader,
// a user who does not own the thing, its owner, an admin — on real things (alice's upload, plan and Run).
// The expected access of each route is written out here, not read from the route table, so a route whose
// access changes, or a new route, fails this test until the list below says so on purpose.

/// Who may call a route, as this test expects it.
private enum Policy: CustomStringConvertible {
    /// No token needed.
    case open
    /// Any valid token.
    case anyRole
    /// Roles that may write (user, admin).
    case writer
    /// Admins only.
    case admin
    /// The owner of the thing the path names, or an admin.
    case owner

    var description: String {
        switch self {
        case .open: "open"
        case .anyRole: "any role"
        case .writer: "writer"
        case .admin: "admin"
        case .owner: "owner"
        }
    }

    /// The status class a caller gets: 401 without a token, 403 when their role or ownership forbids,
    /// nil when the route is theirs to call.
    func refusal(for caller: String?) -> Int? {
        switch (self, caller) {
        case (.open, _): nil
        case (_, nil): 401
        case (.anyRole, _): nil
        case (.writer, "rita"): 403
        case (.writer, _): nil
        case (.admin, "root"): nil
        case (.admin, _): 403
        case (.owner, "alice"), (.owner, "root"): nil
        case (.owner, _): 403
        }
    }
}

private struct Row {
    let method: String
    /// As the route table lists it, `{…}` for the ids.
    let path: String
    let policy: Policy
    /// The request body for a caller who may (JSON, or an archive for an upload).
    var body: String = ""
    /// Statuses a permitted caller may get besides 2xx, and why.
    var alsoAllowed: Set<Int> = []
}

@Suite struct AccessMatrixTests {
    private static let rows: [Row] = [
        Row(method: "GET", path: "/api/health", policy: .open),
        Row(method: "GET", path: "/api/whoami", policy: .anyRole),
        Row(method: "GET", path: "/api/data", policy: .anyRole),
        Row(method: "POST", path: "/api/data", policy: .writer),
        Row(method: "GET", path: "/api/data/{knitId}", policy: .anyRole),
        Row(method: "PUT", path: "/api/data/{knitId}", policy: .owner, body: #"{"add":["x:y"],"remove":[]}"#),
        Row(method: "GET", path: "/api/data/{knitId}/lineage", policy: .anyRole),
        Row(method: "GET", path: "/api/plans", policy: .anyRole),
        // The same spec as alice's plan: a permitted caller is told it exists (409), not refused.
        Row(method: "POST", path: "/api/plans", policy: .writer, body: ownershipPlanSpec, alsoAllowed: [409]),
        Row(method: "GET", path: "/api/plans/{planId}", policy: .anyRole),
        Row(method: "GET", path: "/api/plans/{planId}/graph", policy: .anyRole),
        Row(method: "PUT", path: "/api/plans/{planId}/active", policy: .owner),
        Row(method: "DELETE", path: "/api/plans/{planId}/active", policy: .owner),
        Row(method: "PUT", path: "/api/plans/{planId}/resources", policy: .owner, body: #"{"set":{"cpu":"1"}}"#),
        Row(method: "PUT", path: "/api/plans/{planId}/annotations", policy: .owner, body: #"{"add":["k=v"]}"#),
        Row(
            method: "PUT",
            path: "/api/plans/{planId}/serviceaccount",
            policy: .owner,
            body: #"{"service_account":"sa"}"#
        ),
        Row(method: "DELETE", path: "/api/plans/{planId}/serviceaccount", policy: .owner),
        Row(method: "GET", path: "/api/runs", policy: .anyRole),
        Row(method: "GET", path: "/api/runs/{runId}", policy: .anyRole),
        Row(method: "DELETE", path: "/api/runs/{runId}", policy: .owner),
        Row(method: "GET", path: "/api/runs/{runId}/log", policy: .anyRole),
        // The Run is done: stopping it is a conflict for whoever may try.
        Row(method: "PUT", path: "/api/runs/{runId}/abort", policy: .owner, alsoAllowed: [409]),
        Row(method: "PUT", path: "/api/runs/{runId}/tearoff", policy: .owner, alsoAllowed: [409]),
        Row(method: "PUT", path: "/api/runs/{runId}/retry", policy: .owner),
        Row(method: "GET", path: "/api/auth/registry", policy: .anyRole),
        Row(method: "GET", path: "/metrics", policy: .admin),
    ]

    private static let callers: [String?] = [nil, "rita", "carol", "alice", "root"]

    @Test func everyRouteOfTheTableIsInTheMatrixExactlyOnce() {
        let table = KnitAPI.routes.routes.map { "\($0.method) \($0.path)" }
        let listed = Self.rows.map { "\($0.method) \($0.path)" }
        #expect(table.sorted() == listed.sorted())
        #expect(Set(listed).count == listed.count)
    }

    /// Each caller on a fresh server for each route that changes something, so one permitted change (a
    /// deleted Run, a deactivated plan) never decides what the next caller sees.
    @Test func everyCallerGetsWhatTheirRoleAndOwnershipAllow() throws {
        var checked = 0
        for row in Self.rows {
            let reads = row.method == "GET"
            var shared = reads ? try OwnershipFixture() : nil
            for caller in Self.callers {
                let fixture = try shared ?? OwnershipFixture()
                if reads { shared = fixture }
                let response = try request(row, as: caller, on: fixture)
                let label = "\(row.method) \(row.path) as \(caller ?? "no token") (\(row.policy))"
                if let refusal = row.policy.refusal(for: caller) {
                    #expect(response.status == refusal, "\(label): \(response.status)")
                } else {
                    #expect(
                        (200..<300).contains(response.status) || row.alsoAllowed.contains(response.status),
                        "\(label): \(response.status) \(String(decoding: (try? response.collectBody()) ?? [], as: UTF8.self))"
                    )
                }
                checked += 1
            }
        }
        #expect(checked == Self.rows.count * Self.callers.count)
    }

    /// A refused change leaves alice's things as they were: her plan active, her Run there, her tags unchanged.
    @Test func refusedChangesChangeNothing() throws {
        let fixture = try OwnershipFixture()
        let before = try snapshot(fixture)
        for row in Self.rows where row.method != "GET" {
            for caller in Self.callers where row.policy.refusal(for: caller) != nil {
                _ = try request(row, as: caller, on: fixture)
            }
        }
        #expect(try snapshot(fixture) == before)
    }

    private func snapshot(_ fixture: OwnershipFixture) throws -> [String] {
        let store = fixture.harness.store
        return [
            String(describing: try store.planDetail(planId: fixture.planId)),
            String(describing: try store.runDetail(runId: fixture.planRun.runId)),
            String(describing: try store.dataDetail(knitId: fixture.upload.knitId)),
            String(describing: try store.dataDetail(knitId: fixture.planRun.outputs[0].knitId)),
            String(describing: try store.findRuns(planIds: [fixture.planId]).map(\.runId)),
        ]
    }

    private func request(_ row: Row, as caller: String?, on fixture: OwnershipFixture) throws -> APIResponse {
        let path = row.path
            .replacingOccurrences(of: "{knitId}", with: fixture.upload.knitId)
            .replacingOccurrences(of: "{planId}", with: fixture.planId)
            .replacingOccurrences(of: "{runId}", with: fixture.planRun.runId)
        if row.method == "POST" && row.path == "/api/data" {
            let archive = try makeArchive(format: .tar, files: ["b.txt": "uploaded"])
            return fixture.harness.request("POST", path + "?tag=by:matrix", as: caller, body: archive)
        }
        return fixture.harness.request(
            row.method,
            path,
            as: caller,
            headers: row.body.isEmpty ? [:] : ["content-type": "application/json"],
            body: Array(row.body.utf8)
        )
    }
}
