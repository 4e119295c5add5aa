import KnitAPI
import KnitCore
import Testing

/// The route table answers every path the same way: 405 with `Allow` for a method the path does not take,
/// HEAD wherever GET is, 404 for a path that does not exist, 403 for a role that may not write.
@Suite struct RouteTableTests {
    /// Every path of the API and the methods it takes (ids need not exist: the method is judged first).
    static let paths: [(path: String, methods: Set<String>)] = [
        ("/api/health", ["GET", "HEAD"]),
        ("/api/whoami", ["GET", "HEAD"]),
        ("/api/data", ["GET", "HEAD", "POST"]),
        ("/api/data/x", ["GET", "HEAD", "PUT"]),
        ("/api/data/x/lineage", ["GET", "HEAD"]),
        ("/api/plans", ["GET", "HEAD", "POST"]),
        ("/api/plans/x", ["GET", "HEAD"]),
        ("/api/plans/x/graph", ["GET", "HEAD"]),
        ("/api/plans/x/active", ["PUT", "DELETE"]),
        ("/api/plans/x/resources", ["PUT"]),
        ("/api/plans/x/annotations", ["PUT"]),
        ("/api/plans/x/serviceaccount", ["PUT", "DELETE"]),
        ("/api/runs", ["GET", "HEAD"]),
        ("/api/runs/x", ["GET", "HEAD", "DELETE"]),
        ("/api/runs/x/log", ["GET", "HEAD"]),
        ("/api/runs/x/abort", ["PUT"]),
        ("/api/runs/x/tearoff", ["PUT"]),
        ("/api/runs/x/retry", ["PUT"]),
        ("/api/auth/registry", ["GET", "HEAD"]),
        ("/metrics", ["GET", "HEAD"]),
    ]

    /// Before the route table, `POST /api/whoami`, `PUT /api/runs/{id}/log` and `POST /api/auth/registry`
    /// were 404 and no 405 named the allowed methods.
    @Test func everyPathAnswers405WithAllowForTheMethodsItDoesNotTake() throws {
        let harness = try APIHarness()
        for (path, methods) in Self.paths {
            for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"] where !methods.contains(method) {
                for spelling in [path, path + "/"] {
                    let response = harness.request(method, spelling)
                    #expect(response.status == 405, "\(method) \(spelling)")
                    let allow = response.headers.first { $0.0 == "Allow" }?.1 ?? ""
                    let allowed = Set(allow.split(separator: ",").map { String($0.trimmingPrefix(" ")) })
                    #expect(allowed == methods, "\(method) \(spelling): Allow: \(allow)")
                    if method != "HEAD" {
                        let reason = try json(response)["reason"]?.stringValue
                        #expect(reason == "method \(method) is not allowed on \(spelling)")
                    }
                }
            }
        }
    }

    /// Before the route table, HEAD was 405 on `/api/runs`, `/api/plans` and `/api/whoami`.
    @Test func headIsServedWhereverGetIsWithoutTheBody() throws {
        let harness = try APIHarness()
        for path in ["/api/runs", "/api/plans", "/api/whoami", "/api/data", "/api/health"] {
            let get = harness.request("GET", path)
            let head = harness.request("HEAD", path)
            #expect(get.status == 200, "GET \(path)")
            #expect(head.status == 200, "HEAD \(path)")
            #expect(try head.collectBody().isEmpty, "HEAD \(path)")
            #expect(head.headers.first { $0.0 == "Content-Type" }?.1 == "application/json", "HEAD \(path)")
        }
        // A HEAD of something that does not exist is the GET's 404.
        #expect(harness.request("HEAD", "/api/runs/no-such-run").status == 404)
    }

    @Test func unknownPathsAre404OnlyToCallersWithAToken() throws {
        let harness = try APIHarness()
        for path in ["/api/nope", "/api/runs/x/log/more", "/api/plans/x/unknown", "/api/data/x/y"] {
            #expect(harness.request("GET", path, as: nil).status == 401, "\(path)")
            let response = harness.request("GET", path)
            #expect(response.status == 404, "\(path)")
            #expect(try json(response)["reason"]?.stringValue == "no such endpoint: GET \(path)")
        }
        #expect(harness.request("GET", "/other", as: nil).status == 404)
        // The open route needs no token, not even to learn which methods it takes.
        #expect(harness.request("POST", "/api/health", as: nil).status == 405)
        #expect(harness.request("GET", "/api/health", as: nil).status == 200)
    }

    /// Every route that changes something refuses a reader with 403 before it looks at the ids or the body,
    /// and the refusal is audited.
    @Test func everyChangingRouteRefusesAReaderWith403AndAuditsIt() throws {
        let harness = try APIHarness()
        var changing = 0
        for (path, methods) in Self.paths where path != "/api/health" {
            for method in methods where method != "GET" && method != "HEAD" {
                let response = harness.request(method, path, as: "rita", body: Array("{}".utf8))
                #expect(response.status == 403, "\(method) \(path)")
                changing += 1
            }
        }
        #expect(changing == 13)
        #expect(harness.log.entries("audit").filter { $0["audit.outcome"] == "denied" }.count == changing)
    }
}
