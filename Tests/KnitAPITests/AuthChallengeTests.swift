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

/// F18: a 401 says how to authenticate (RFC 7235 `WWW-Authenticate`), without making browsers pop a dialog.
@Suite struct AuthChallengeTests {
    private func challenges(_ response: APIResponse) -> [String] {
        response.headers.filter { $0.0.lowercased() == "www-authenticate" }.map(\.1)
    }

    @Test func unauthorizedAPICallsNameBearerAndBasicUnlessTheClientSentBearer() throws {
        let harness = try APIHarness()
        let token = try #require(harness.tokens["alice"])
        let basicWrong = "Basic " + Data("alice:knit_wrong".utf8).base64EncodedString()

        // No credentials, Basic, or an unknown scheme: both schemes work here, so both are offered.
        for authorization in [nil, basicWrong, "Token \(token)"] {
            var headers: [String: String] = [:]
            if let authorization { headers["authorization"] = authorization }
            let response = harness.request("GET", "/api/whoami", as: nil, headers: headers)
            #expect(response.status == 401)
            #expect(
                challenges(response) == [#"Bearer realm="knit""#, #"Basic realm="knit""#],
                "\(authorization ?? "none")"
            )
            #expect(try json(response)["message"]?.stringValue?.isEmpty == false)
        }

        // A wrong Bearer token (what the web console sends): Bearer only, so a browser never shows a
        // Basic login dialog. The scheme is case-insensitive.
        for authorization in ["Bearer knit_wrong", "bearer knit_wrong"] {
            let response = harness.request("POST", "/api/plans", as: nil, headers: ["authorization": authorization])
            #expect(response.status == 401)
            #expect(challenges(response) == [#"Bearer realm="knit""#], "\(authorization)")
        }

        // Success and other errors carry no challenge.
        #expect(challenges(harness.request("GET", "/api/whoami", as: "alice")).isEmpty)
        let forbidden = harness.request("POST", "/api/plans", as: "rita", body: Array("{}".utf8))
        #expect(forbidden.status == 403)
        #expect(challenges(forbidden).isEmpty)
    }

    /// nginx copies a challenge of its auth_request check into the 401 of `/v2/`; docker and podman must see
    /// only the registry's own Basic challenge there, so the check answers without one.
    @Test func theRegistryCheckAnswers401WithoutAChallenge() throws {
        let harness = try APIHarness()
        let response = harness.request("GET", "/api/auth/registry", as: nil)
        #expect(response.status == 401)
        #expect(challenges(response).isEmpty)
    }

    /// F16: what knitd puts in its log lines from a request path never holds a token.
    @Test func tokensInLoggedPathsAreRedacted() {
        let token = "knit_" + String(repeating: "aB3-_", count: 8) + "xyz"
        #expect(redactingTokens("/api/\(token)") == "/api/knit_[redacted]")
        #expect(redactingTokens("/api/data/\(token)/x/\(token)") == "/api/data/knit_[redacted]/x/knit_[redacted]")
        #expect(redactingTokens("/api/data/1234-abcd/") == "/api/data/1234-abcd/")
        #expect(redactingTokens("/api/kknit_abc") == "/api/kknit_[redacted]")
        #expect(redactingTokens("/knit/knitknit_abc/knit") == "/knit/knitknit_[redacted]/knit")
        #expect(redactingTokens("/api/knit") == "/api/knit")
        #expect(redactingTokens("knit_") == "knit_[redacted]")
    }
}
