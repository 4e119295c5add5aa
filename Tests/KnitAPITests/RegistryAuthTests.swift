import KnitAPI
import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `GET /api/auth/registry`, as nginx's auth_request asks it: the original method in X-Original-Method.
@Suite struct RegistryAuthTests {
    private func ask(
        _ harness: APIHarness,
        method: String?,
        authorization: String?,
        path: String = "/api/auth/registry",
        repository: String = "img"
    ) -> Int {
        var headers: [String: String] = [:]
        if let method { headers["x-original-method"] = method }
        headers["x-original-uri"] = "/v2/\(repository)/manifests/1"
        if let authorization { headers["authorization"] = authorization }
        return harness.request("GET", path, as: nil, headers: headers).status
    }

    private func basic(_ user: String, _ password: String) -> String {
        "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
    }

    @Test func everyRoleMayReadOnlyWritersMayPush() throws {
        let harness = try APIHarness()
        let admin = try harness.store.addUser(name: "ada", role: .admin)
        let writer = try #require(harness.tokens["alice"])
        let reader = try #require(harness.tokens["rita"])

        for method in ["GET", "HEAD"] {
            #expect(ask(harness, method: method, authorization: "Bearer \(admin)") == 204)
            #expect(ask(harness, method: method, authorization: "Bearer \(writer)") == 204)
            #expect(ask(harness, method: method, authorization: "Bearer \(reader)") == 204)
        }
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            // Each in a repository of their own (the first pusher owns one: OwnershipAPITests).
            #expect(
                ask(harness, method: method, authorization: "Bearer \(admin)", repository: "ada/img") == 204,
                "\(method)"
            )
            #expect(
                ask(harness, method: method, authorization: "Bearer \(writer)", repository: "alice/img") == 204,
                "\(method)"
            )
            #expect(ask(harness, method: method, authorization: "Bearer \(reader)") == 403, "\(method)")
        }
        // Lower case from a hand-written proxy config is the same method.
        #expect(ask(harness, method: "put", authorization: "Bearer \(reader)") == 403)
        // Methods the registry API never needs are refused even for an admin.
        #expect(ask(harness, method: "OPTIONS", authorization: "Bearer \(admin)") == 403)
        #expect(ask(harness, method: "TRACE", authorization: "Bearer \(admin)") == 403)
        // Without X-Original-Method (a direct call through /api/) the answer is about reading.
        #expect(ask(harness, method: nil, authorization: "Bearer \(reader)") == 204)
        // Trailing slash and HEAD, like every other endpoint.
        #expect(ask(harness, method: "GET", authorization: "Bearer \(reader)", path: "/api/auth/registry/") == 204)
        let head = harness.request("HEAD", "/api/auth/registry", as: "alice")
        #expect(head.status == 204)
    }

    @Test func basicCredentialsCarryTheTokenAsPassword() throws {
        // What `docker login -u NAME -p TOKEN` and `podman push --creds NAME:TOKEN` send.
        let harness = try APIHarness()
        let writer = try #require(harness.tokens["alice"])
        let reader = try #require(harness.tokens["rita"])
        #expect(ask(harness, method: "PUT", authorization: basic("alice", writer)) == 204)
        // The user name is not checked; the token alone says who it is.
        #expect(ask(harness, method: "PATCH", authorization: basic("anything", writer)) == 204)
        #expect(ask(harness, method: "PUT", authorization: basic("rita", reader)) == 403)
        #expect(ask(harness, method: "GET", authorization: basic("rita", reader)) == 204)
        #expect(ask(harness, method: "GET", authorization: basic("alice", "")) == 401)
        #expect(ask(harness, method: "GET", authorization: basic("alice", "not-a-token")) == 401)
    }

    @Test func missingOrBadTokensAre401WithAJSONBody() throws {
        let harness = try APIHarness()
        #expect(ask(harness, method: "GET", authorization: nil) == 401)
        #expect(ask(harness, method: "PUT", authorization: nil) == 401)
        #expect(ask(harness, method: "GET", authorization: "Bearer wrong") == 401)
        #expect(ask(harness, method: "GET", authorization: "Token \(harness.tokens["alice"]!)") == 401)

        let refused = harness.request(
            "GET",
            "/api/auth/registry",
            as: "rita",
            headers: ["x-original-method": "DELETE"]
        )
        #expect(refused.status == 403)
        let message = try json(refused)["message"]?.stringValue ?? ""
        #expect(message.contains("reader"))
    }

    /// The method nginx asks about travels in `X-Original-Method`; the request itself is GET or HEAD, and any
    /// other method is 405 (the path exists), as on every path of the route table.
    @Test func otherMethodsOnTheEndpointAreNotRoutes() throws {
        let harness = try APIHarness()
        let put = harness.request("PUT", "/api/auth/registry")
        #expect(put.status == 405)
        #expect(put.headers.contains { $0 == ("Allow", "GET, HEAD") })
        #expect(harness.request("GET", "/api/auth/other").status == 404)
        #expect(harness.request("GET", "/api/auth").status == 404)
    }

    @Test func aSecondTokenOfAReaderIsStillAReader() throws {
        let harness = try APIHarness()
        let second = try harness.store.issueToken(name: "rita")
        #expect(ask(harness, method: "HEAD", authorization: "Bearer \(second)") == 204)
        #expect(ask(harness, method: "POST", authorization: "Bearer \(second)") == 403)
    }
}
