import KnitAPI
import Testing

/// The request URI's path and query as handlers see them, with and without anything to decode.
struct APIRequestTests {
    @Test func pathAndQueryAreDecodedOnlyWhereTheyHoldEscapes() throws {
        let request = try #require(
            APIRequest(method: "GET", uri: "/api/a+b/c%20d?tag=k%3Av&note=two+words&plain=x&empty=", headers: [:])
        )
        // `+` is a space in the query only (HTML forms, Go's url.Values), never in the path.
        #expect(request.path == "/api/a+b/c d")
        #expect(request.query.map(\.name) == ["tag", "note", "plain", "empty"])
        #expect(request.query.map(\.value) == ["k:v", "two words", "x", ""])
        #expect(APIRequest(method: "GET", uri: "/api/data?tag=%zz", headers: [:]) == nil)
        #expect(APIRequest(method: "GET", uri: "/api/%", headers: [:]) == nil)
        #expect(percentDecode("/api/data", plusIsSpace: true) == "/api/data")
        #expect(percentDecode("%C3%A9t%C3%A9+x", plusIsSpace: true) == "été x")
        #expect(percentDecode("%FF", plusIsSpace: false) == nil)
    }
}
