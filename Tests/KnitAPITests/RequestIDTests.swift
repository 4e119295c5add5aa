import KnitAPI
import Testing

/// The front end's request id (nginx's `$request_id`) is the one knitd logs and answers; anything that could
/// not safely sit in a log line is replaced by knitd's own counter.
struct RequestIDTests {
    private func refusedRegistryPush(_ harness: APIHarness, requestID: String?) throws -> (String?, [String]) {
        var request = try #require(
            APIRequest(
                method: "GET",
                uri: "/api/auth/registry",
                headers: [
                    "authorization": "Bearer \(harness.tokens["rita"]!)",
                    "x-original-method": "PUT", "x-original-uri": "/v2/team/train/manifests/1",
                ]
            )
        )
        request.requestID = requestID
        let response = harness.api.handle(request) { _ in 0 }
        #expect(response.status == 403)
        let answered = response.headers.filter { $0.0 == "X-Request-Id" }.map(\.1)
        #expect(answered.count == 1, "\(response.headers)")
        let logged = harness.log.entries("audit").compactMap { $0["request.id"] }
        return (answered.first, logged)
    }

    @Test func nginxsIdIsAnsweredAndOnTheAuditLine() throws {
        let harness = try APIHarness()
        let id = "0f4c2b9a8e7d6c5b4a3928171605f4e3"
        let (answered, logged) = try refusedRegistryPush(harness, requestID: id)
        #expect(answered == id)
        #expect(logged == [id])
    }

    @Test func anIdThatCouldBreakALogLineIsReplacedByKnitdsOwn() throws {
        for bad in ["a b", "line\nforged=1", String(repeating: "a", count: 65), "", "é"] {
            let harness = try APIHarness()
            let (answered, logged) = try refusedRegistryPush(harness, requestID: bad)
            let own = try #require(answered)
            #expect(own != bad && !own.isEmpty && own.allSatisfy(\.isNumber), "\(bad) -> \(own)")
            #expect(logged == [own])
        }
    }
}
