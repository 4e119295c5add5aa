import KnitAPI
import KnitArchive
import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

@Suite struct HealthAndAuthTests {
    @Test func healthNeedsNoTokenAndListsFormats() throws {
        let harness = try APIHarness()
        let response = harness.request("GET", "/api/health", as: nil)
        #expect(response.status == 200)
        let body = try json(response)
        #expect(body["status"]?.stringValue == "ok")
        #expect(body["formats"]?.arrayValue?.compactMap(\.stringValue).contains("application/tar+gzip") == true)
        // Behind nginx knitd never sees an upload's trailers, and says so (clients then skip the MD5 trailer).
        #expect(body["uploadTrailers"] == .bool(false))
    }

    @Test func everythingElseNeedsAValidToken() throws {
        let harness = try APIHarness()
        #expect(harness.request("GET", "/api/data/", as: nil).status == 401)
        #expect(
            harness.request("GET", "/api/data/", as: nil, headers: ["authorization": "Bearer knit_wrong"]).status == 401
        )
        #expect(harness.request("GET", "/api/data/", as: nil, headers: ["authorization": "Basic !!!"]).status == 401)
        let body = try json(harness.request("GET", "/api/data", as: nil))
        #expect(body["message"]?.stringValue?.contains("token") == true)
    }

    @Test func basicAuthWithTokenAsPasswordWorks() throws {
        let harness = try APIHarness()
        let credential = base64("someone:\(harness.tokens["alice"]!)")
        let response = harness.request("GET", "/api/data/", as: nil, headers: ["authorization": "Basic \(credential)"])
        #expect(response.status == 200)
    }

    @Test func whoamiNamesTheTokensUserAndRole() throws {
        let harness = try APIHarness()
        for (user, role) in [("alice", "user"), ("rita", "reader")] {
            let response = harness.request("GET", "/api/whoami", as: user)
            #expect(response.status == 200)
            let body = try json(response)
            #expect(body["name"]?.stringValue == user)
            #expect(body["role"]?.stringValue == role)
        }
        #expect(harness.request("GET", "/api/whoami", as: nil).status == 401)
        // The path exists for GET only: another method is 405, as on every path of the route table.
        #expect(harness.request("POST", "/api/whoami", as: "alice").status == 405)
    }

    @Test func readersCannotWrite() throws {
        let harness = try APIHarness()
        let archive = try makeArchive(format: .tarGzip, files: ["a.txt": "x"])
        #expect(harness.request("POST", "/api/data/", as: "rita", body: archive).status == 403)
        #expect(harness.request("GET", "/api/data/", as: "rita").status == 200)
        #expect(harness.dataEntries().isEmpty)
    }

    @Test func unknownEndpointsAndMethods() throws {
        let harness = try APIHarness()
        #expect(harness.request("GET", "/api/nothing").status == 404)
        #expect(harness.request("DELETE", "/api/data/").status == 405)
        #expect(harness.request("GET", "/elsewhere").status == 404)
    }
}

@Suite struct DataAPITests {
    @Test(arguments: ArchiveFormat.allCases)
    func uploadFindDownloadRoundTrip(format: ArchiveFormat) throws {
        let harness = try APIHarness()
        let archive = try makeArchive(format: format, files: ["dir/a.txt": "alpha", "b.txt": "beta"])
        let upload = harness.request(
            "POST",
            "/api/data?tag=project%3Ademo&tag=note:two+words",
            headers: ["content-type": format.contentType],
            body: archive
        )
        #expect(upload.status == 200)
        let detail = try json(upload)
        let knitId = try #require(detail["knitId"]?.stringValue)
        let tags = detail["tags"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(tags.contains("project:demo"))
        #expect(tags.contains("note:two words"))
        #expect(tags.contains("knit#id:\(knitId)"))
        #expect(tags.contains { $0.hasPrefix("knit#timestamp:") })
        #expect(!tags.contains { $0.hasPrefix("knit#transient") })
        #expect(detail["upstream"]?["run"]?["plan"]?["name"]?.stringValue == "knit#uploaded")

        let found = try json(harness.request("GET", "/api/data/?tag=project:demo"))
        #expect(found.arrayValue?.count == 1)
        #expect(try json(harness.request("GET", "/api/data/?tag=project:other")).arrayValue?.isEmpty == true)

        let download = harness.request("GET", "/api/data/\(knitId)", headers: ["accept": format.contentType])
        #expect(download.status == 200)
        #expect(download.headers.contains { $0 == ("Content-Type", format.contentType) })
        let root = try extractToTemporary(try download.collectBody())
        defer { run(["rm", "-rf", root]) }
        #expect(readText(root + "/dir/a.txt") == "alpha")
        #expect(readText(root + "/b.txt") == "beta")
    }

    @Test func downloadDefaultsToGzipForKnitfabClients() throws {
        let harness = try APIHarness()
        let archive = try makeArchive(format: .tarGzip, files: ["a": "1"])
        let knitId = try #require(try json(harness.request("POST", "/api/data/", body: archive))["knitId"]?.stringValue)
        let plain = harness.request("GET", "/api/data/\(knitId)/")
        #expect(plain.headers.contains { $0 == ("Content-Type", "application/tar+gzip") })
        let bytes = try plain.collectBody()
        #expect(bytes.prefix(2) == [0x1f, 0x8b])
        let weighted = harness.request(
            "GET",
            "/api/data/\(knitId)/",
            headers: ["accept": "application/tar+gzip;q=0.5, application/x-tar;q=0.9"]
        )
        #expect(weighted.headers.contains { $0 == ("Content-Type", "application/x-tar") })
    }

    @Test func wrongChecksumIsRejectedAndLeavesNothing() throws {
        let harness = try APIHarness()
        let archive = try makeArchive(format: .tarGzip, files: ["a": "1"])
        let response = harness.request(
            "POST",
            "/api/data/",
            headers: ["x-checksum-md5": String(repeating: "0", count: 32)],
            body: archive
        )
        #expect(response.status == 400)
        #expect(try json(response)["reason"]?.stringValue == "hash is not match.")
        #expect(try json(harness.request("GET", "/api/data/")).arrayValue?.isEmpty == true)
        #expect(harness.stagingEntries().isEmpty)
        #expect(harness.dataEntries().isEmpty)
        #expect(harness.request("POST", "/api/data/", headers: ["x-checksum-md5": "xyz"], body: archive).status == 400)
    }

    @Test func clientDisconnectMidUploadLeavesNothing() throws {
        let harness = try APIHarness()
        let archive = try makeArchive(format: .tar, files: ["big": String(repeating: "x", count: 200_000)])
        let response = harness.requestFailingBody("/api/data/", body: archive, failAfter: 50_000)
        #expect(response.status == 400)
        #expect(try json(response)["reason"]?.stringValue?.contains("interrupted") == true)
        #expect(harness.stagingEntries().isEmpty)
        #expect(harness.dataEntries().isEmpty)
        #expect(harness.store.dataCount() == 0)
    }

    @Test func garbageAndSystemTagsAreRejectedBeforeAnythingIsStored() throws {
        let harness = try APIHarness()
        #expect(harness.request("POST", "/api/data/", body: Array("not an archive".utf8)).status == 400)
        let archive = try makeArchive(format: .tarGzip, files: ["a": "1"])
        #expect(harness.request("POST", "/api/data/?tag=knit%23id:x", body: archive).status == 400)
        #expect(harness.request("POST", "/api/data/?tag=nocolon", body: archive).status == 400)
        #expect(harness.store.dataCount() == 0)
        #expect(harness.stagingEntries().isEmpty)
    }

    @Test func tagChangesRemoveBeforeAddAndRejectSystemKeys() throws {
        let harness = try APIHarness()
        let archive = try makeArchive(format: .tarGzip, files: ["a": "1"])
        let knitId = try #require(
            try json(harness.request("POST", "/api/data/?tag=a:1&tag=b:2&tag=b:3", body: archive))["knitId"]?
                .stringValue
        )
        let changed = try json(
            harness.request(
                "PUT",
                "/api/data/\(knitId)",
                body: Array(#"{"remove":["a:1"],"add":["a:1","c:4"],"remove_key":["b"]}"#.utf8)
            )
        )
        let userTags = changed["tags"]?.arrayValue?.compactMap(\.stringValue).filter { !$0.hasPrefix("knit#") }
        #expect(userTags == ["a:1", "c:4"])
        let rejected = harness.request("PUT", "/api/data/\(knitId)/", body: Array(#"{"add":["knit#id:x"]}"#.utf8))
        #expect(rejected.status == 400)
        #expect(harness.request("PUT", "/api/data/\(knitId)/", body: Array("{not json".utf8)).status == 400)
        #expect(harness.request("PUT", "/api/data/\(knitId)/", as: "rita", body: Array("{}".utf8)).status == 403)
        let after = try json(harness.request("GET", "/api/data/?tag=knit%23id:\(knitId)"))
        let afterTags = after.arrayValue?.first?["tags"]?.arrayValue?.compactMap(\.stringValue).filter {
            !$0.hasPrefix("knit#")
        }
        #expect(afterTags == ["a:1", "c:4"])
    }

    @Test func unknownIdsAndBadQueries() throws {
        let harness = try APIHarness()
        let unknown = "00000000-0000-4000-8000-000000000000"
        #expect(harness.request("GET", "/api/data/\(unknown)").status == 404)
        #expect(harness.request("PUT", "/api/data/\(unknown)", body: Array(#"{"add":["a:1"]}"#.utf8)).status == 404)
        #expect(harness.request("GET", "/api/data/?since=yesterday").status == 400)
        #expect(harness.request("GET", "/api/data/?since=2024-01-01T00:00:00Z&duration=1d").status == 400)
        #expect(harness.request("GET", "/api/data/?duration=1h").status == 400)
        #expect(harness.request("GET", "/api/data/?since=2024-01-01T00:00:00%2B00:00&duration=1h").status == 200)
    }

    @Test func transferSlotsAreBoundedAndReleased() throws {
        let harness = try APIHarness(transferSlots: 1)
        let archive = try makeArchive(format: .tarGzip, files: ["a": "1"])
        let knitId = try #require(try json(harness.request("POST", "/api/data/", body: archive))["knitId"]?.stringValue)
        var download: APIResponse? = harness.request("GET", "/api/data/\(knitId)")
        #expect(harness.api.transfersInFlight == 1)
        let refused = harness.request("POST", "/api/data/", body: archive)
        #expect(refused.status == 503)
        #expect(harness.request("GET", "/api/data/").status == 200)
        _ = try download?.collectBody()
        download = nil
        #expect(harness.api.transfersInFlight == 0)
        #expect(harness.request("POST", "/api/data/", body: archive).status == 200)
    }
}

private func base64(_ text: String) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    let bytes = Array(text.utf8)
    var out = ""
    var index = 0
    while index < bytes.count {
        let chunk = Array(bytes[index..<min(index + 3, bytes.count)])
        let value = chunk.enumerated().reduce(0) { $0 | Int($1.element) << (16 - 8 * $1.offset) }
        for position in 0..<4 {
            out.append(position <= chunk.count ? alphabet[(value >> (18 - 6 * position)) & 63] : "=")
        }
        index += 3
    }
    return out
}
