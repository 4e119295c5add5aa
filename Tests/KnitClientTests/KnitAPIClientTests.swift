import KnitArchive
import KnitClient
import KnitCore
import KnitSystem
import KnitTestSupport
import Testing

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

@Suite(.serialized) struct KnitAPIClientTests {
    private func client(_ server: PythonServer, token: String? = "tok") throws -> KnitAPIClient {
        KnitAPIClient(profile: try KnitProfile(apiRoot: server.base + "/api", caBase64: nil, token: token))
    }

    /// The Content-Type of the last upload the server saw.
    private func lastUpload(_ server: PythonServer) throws -> String? {
        try log(server).last { $0["method"]?.stringValue == "POST" }?["contentType"]?.stringValue
    }

    private func log(_ server: PythonServer) throws -> [JSONValue] {
        let raw = capture(["/usr/bin/curl", "-s", server.base + "/api/_log"])
        return try #require(JSONValue.parse(Array(raw.utf8))?.arrayValue)
    }

    /// A small tree: two files, a nested one, an empty directory and a symlink.
    private func makeTree(_ dir: borrowing TemporaryDirectory) -> String {
        dir.mkdir("src")
        dir.mkdir("src/sub")
        dir.mkdir("src/empty")
        dir.write("src/a.txt", "alpha\n")
        dir.write("src/sub/b.bin", String(repeating: "0123456789", count: 50_000))
        symlink("a.txt", dir.file("src/link"))
        return dir.file("src")
    }

    @Test func healthAndFormatNegotiation() throws {
        let server = try PythonServer(
            script: fakeKnitScript,
            arguments: ["knit", "application/tar+gzip", "application/x-tar"]
        )
        defer { server.stop() }
        let info = try client(server).health()
        #expect(info.status == "ok")
        #expect(info.version == "fake")
        #expect(info.formats == [.tarGzip, .tar])
        #expect(try client(server).negotiatedFormats() == [.tar, .tarGzip])

        let knitfab = try PythonServer(script: fakeKnitScript, arguments: ["knitfab"])
        defer { knitfab.stop() }
        #expect(try client(knitfab).negotiatedFormats() == [.tarGzip])
    }

    /// Without `--format` push and pull -x move the server's first format; a forced one is sent and asked for as is.
    @Test func aForcedFormatIsSentAndAskedForAsIs() throws {
        let server = try PythonServer(
            script: fakeKnitScript,
            arguments: ["knit", "application/x-tar", "application/tar+gzip"]
        )
        defer { server.stop() }
        let dir = TemporaryDirectory()
        let api = try client(server)
        let knitId = try api.pushData(directory: makeTree(dir), tags: []).detail.knitId
        #expect(try lastUpload(server) == "application/x-tar")
        _ = try api.pushData(directory: makeTree(dir), tags: [], format: .tarGzip)
        #expect(try lastUpload(server) == "application/tar+gzip")

        dir.mkdir("out")
        let pulled = try api.pullData(knitId: knitId, extractInto: dir.file("out"))
        #expect(pulled.format == .tar)
        dir.mkdir("gz")
        let forced = try api.pullData(knitId: knitId, extractInto: dir.file("gz"), format: .tarGzip)
        #expect(forced.format == .tarGzip)
        #expect(try log(server).last?["accept"]?.stringValue == "application/tar+gzip")
        #expect(readText(dir.file("gz/sub/b.bin")) == String(repeating: "0123456789", count: 50_000))
    }

    @Test func pushSendsTagsInTheQueryAndTheChecksumAsTrailer() throws {
        let server = try PythonServer(
            script: fakeKnitScript,
            arguments: ["knit", "application/x-tar", "application/tar+gzip"]
        )
        defer { server.stop() }
        let dir = TemporaryDirectory()
        let tags = [Tag(key: "project", value: "a:b c+d&e%f#g"), Tag(key: "名前", value: "データ")]
        var progressCalls = 0
        var lastProgress: TransferProgress?
        let record = try client(server).pushData(directory: makeTree(dir), tags: tags) {
            progressCalls += 1
            lastProgress = $0
        }
        #expect(record.detail.knitId == "data-1")
        #expect(record.detail.tags.contains(tags[0]) && record.detail.tags.contains(tags[1]))
        #expect(record.json["knitId"]?.stringValue == "data-1")
        #expect(progressCalls > 0)
        #expect(lastProgress?.total == 500_006)

        let requests = try log(server)
        let post = try #require(requests.first { $0["method"]?.stringValue == "POST" })
        #expect(post["contentType"]?.stringValue == "application/x-tar")
        #expect(post["query"]?["tag"] == .array(tags.map { .string($0.description) }))
        #expect(post["trailers"]?["x-checksum-md5"]?.stringValue?.count == 32)
        #expect(post["names"]?.arrayValue?.compactMap(\.stringValue) == ["a.txt", "empty", "link", "sub", "sub/b.bin"])
        #expect(!requests.contains { $0["method"]?.stringValue == "PUT" })
    }

    /// knitd never sees an upload's trailers (nginx drops them) and says so in /health: the push then computes no
    /// MD5 and announces no trailer, and everything else about it is unchanged.
    @Test func pushToAServerThatSeesNoTrailersSendsNoChecksum() throws {
        let server = try PythonServer(script: fakeKnitScript, arguments: ["knitd", "application/x-tar"])
        defer { server.stop() }
        let dir = TemporaryDirectory()
        let api = try client(server)
        #expect(try api.health().readsUploadTrailers == false)
        let record = try api.pushData(directory: makeTree(dir), tags: [Tag(key: "k", value: "v")])
        #expect(record.detail.tags.contains(Tag(key: "k", value: "v")))
        let post = try #require(try log(server).first { $0["method"]?.stringValue == "POST" })
        #expect(post["contentType"]?.stringValue == "application/x-tar")
        #expect(post["trailers"]?["x-checksum-md5"] == nil, "\(post)")
        #expect(post["names"]?.arrayValue?.compactMap(\.stringValue) == ["a.txt", "empty", "link", "sub", "sub/b.bin"])
    }

    @Test func pushToAServerIgnoringQueryTagsFollowsUpWithPut() throws {
        let server = try PythonServer(script: fakeKnitScript, arguments: ["knitfab"])
        defer { server.stop() }
        let dir = TemporaryDirectory()
        let record = try client(server).pushData(directory: makeTree(dir), tags: [Tag(key: "name", value: "src")])
        #expect(record.detail.tags.contains(Tag(key: "name", value: "src")))
        let requests = try log(server)
        #expect(requests.compactMap { $0["method"]?.stringValue } == ["GET", "POST", "PUT"])
        #expect(requests[1]["contentType"]?.stringValue == "application/tar+gzip")
        #expect(requests[2]["path"]?.stringValue == "/api/data/data-1/")
        #expect(requests[2]["body"]?["add"] == .array([.string("name:src")]))
    }

    @Test func pushOfAMissingDirectoryFailsBeforeSendingAnything() throws {
        let server = try PythonServer(script: fakeKnitScript, arguments: ["knit", "application/x-tar"])
        defer { server.stop() }
        let error = #expect(throws: KnitClientError.self) {
            try client(server).pushData(directory: "/nonexistent/knit-test", tags: [])
        }
        #expect(error?.code == .archive)
        #expect(error?.description.hasPrefix("/nonexistent/knit-test: ") == true)
    }

    @Test func pullExtractsAndSavesArchives() throws {
        let server = try PythonServer(
            script: fakeKnitScript,
            arguments: ["knit", "application/x-tar", "application/tar+gzip"]
        )
        defer { server.stop() }
        let dir = TemporaryDirectory()
        let api = try client(server)
        let knitId = try api.pushData(directory: makeTree(dir), tags: []).detail.knitId

        dir.mkdir("out")
        let extracted = try api.pullData(knitId: knitId, extractInto: dir.file("out"))
        #expect(extracted.format == .tar)
        #expect(extracted.checksum?.count == 32)
        #expect(readText(dir.file("out/a.txt")) == "alpha\n")
        #expect(readText(dir.file("out/sub/b.bin")) == String(repeating: "0123456789", count: 50_000))
        #expect(readText(dir.file("out/link")) == "alpha\n")
        let requests = try log(server)
        #expect(requests.last?["accept"]?.stringValue == "application/x-tar, application/tar+gzip;q=0.9")

        dir.mkdir("files")
        let saved = try api.pullArchive(knitId: knitId, into: dir.file("files"))
        #expect(saved.path == dir.file("files/\(knitId).tar.gz"))
        #expect(saved.format == .tarGzip)
        #expect(saved.checksum?.count == 32)
        #expect(capture(["/bin/ls", "-A", dir.file("files")]) == "\(knitId).tar.gz\n")
        #expect(
            capture(["/bin/tar", "-tzf", dir.file("files/\(knitId).tar.gz")]).split(separator: "\n").sorted()
                == ["a.txt", "empty/", "link", "sub/", "sub/b.bin"]
        )
        #expect(try log(server).last?["accept"]?.stringValue == "application/tar+gzip")

        var streamed: [UInt8] = []
        let raw = try api.pullTarGzip(knitId: knitId) { streamed.append(contentsOf: $0) }
        #expect(raw.bytes == Int64(streamed.count))
        #expect(streamed.prefix(2) == [0x1F, 0x8B])
    }

    /// A download whose bytes do not match the server's MD5 fails, and nothing unverified is left behind.
    @Test(arguments: ["test:corrupt-md5", "test:tampered"])
    func checksumMismatchFailsThePullAndLeavesNothing(tag: String) throws {
        let server = try PythonServer(script: fakeKnitScript, arguments: ["knit", "application/x-tar"])
        defer { server.stop() }
        let dir = TemporaryDirectory()
        let api = try client(server)
        let tags = [try Tag(parsing: tag)]
        let knitId = try api.pushData(directory: makeTree(dir), tags: tags).detail.knitId

        dir.mkdir("out")
        let extractError = #expect(throws: KnitClientError.self) {
            try api.pullData(knitId: knitId, extractInto: dir.file("out"))
        }
        #expect(extractError?.code == .checksum)
        #expect(extractError?.description.hasPrefix("checksum mismatch: \(knitId): ") == true)
        #expect(capture(["/bin/ls", "-A", dir.file("out")]) == "")

        dir.mkdir("files")
        let saveError = #expect(throws: KnitClientError.self) {
            try api.pullArchive(knitId: knitId, into: dir.file("files"))
        }
        #expect(saveError?.code == .checksum)
        #expect(capture(["/bin/ls", "-A", dir.file("files")]) == "")
    }

    /// The `knit` binary itself: a tampered download is an error (exit status 1, `knit: checksum mismatch: …`).
    @Test(.enabled(if: getenv("KNIT_BIN_DIR") != nil, "needs the built knit binary (KNIT_BIN_DIR)"))
    func knitDataPullFailsOnATamperedDownload() throws {
        let server = try PythonServer(script: fakeKnitScript, arguments: ["knit", "application/x-tar"])
        defer { server.stop() }
        let dir = TemporaryDirectory()
        let knitId = try client(server).pushData(directory: makeTree(dir), tags: [Tag(key: "test", value: "tampered")])
            .detail.knitId
        dir.write("handout", "apiRoot: \(server.base)/api\ntoken: tok\n")
        let knit = String(cString: getenv("KNIT_BIN_DIR")!) + "/knit"
        let store = dir.file("profiles")
        dir.mkdir("out")
        let pulled = capture([
            "/bin/sh", "-c",
            "cd \(dir.path) && \(knit) init --profile-store \(store) --profile t handout 2>/dev/null"
                + " && \(knit) data pull --profile-store \(store) --profile t -x \(knitId) out 2>&1; echo \"rc=$?\"",
        ])
        #expect(pulled.contains("knit: checksum mismatch: \(knitId): "), "\(pulled)")
        #expect(pulled.hasSuffix("rc=1\n"), "\(pulled)")
        #expect(capture(["/bin/ls", "-A", dir.file("out/\(knitId)")]) == "")
    }

    /// `knit data push|pull -x --format` sends and asks for the named format; a bad name or `--format` without
    /// `-x` is a usage error before anything is sent.
    @Test(.enabled(if: getenv("KNIT_BIN_DIR") != nil, "needs the built knit binary (KNIT_BIN_DIR)"))
    func knitDataPushAndPullTakeAFormat() throws {
        let server = try PythonServer(
            script: fakeKnitScript,
            arguments: ["knit", "application/x-tar", "application/tar+gzip"]
        )
        defer { server.stop() }
        let dir = TemporaryDirectory()
        let tree = makeTree(dir)
        dir.write("handout", "apiRoot: \(server.base)/api\ntoken: tok\n")
        let knit = String(cString: getenv("KNIT_BIN_DIR")!) + "/knit"
        let store = dir.file("profiles")
        func run(_ arguments: String) -> String {
            capture([
                "/bin/sh", "-c",
                "cd \(dir.path) && \(knit) \(arguments) --profile-store \(store) --profile t 2>&1; echo \"rc=$?\"",
            ])
        }
        #expect(run("init handout").hasSuffix("rc=0\n"))
        let pushed = run("data push --format tar+gzip \(tree)")
        #expect(pushed.hasSuffix("rc=0\n"), "\(pushed)")
        #expect(try lastUpload(server) == "application/tar+gzip")
        // The fake server numbers Data from 1.
        let knitId = "data-1"
        #expect(pushed.contains(knitId), "\(pushed)")

        dir.mkdir("out")
        let pulled = run("data pull -x --format tar+gzip \(knitId) out")
        #expect(pulled.hasSuffix("rc=0\n"), "\(pulled)")
        #expect(try log(server).last?["accept"]?.stringValue == "application/tar+gzip")
        #expect(readText(dir.file("out/\(knitId)/a.txt")) == "alpha\n")

        let requests = try log(server).count
        let bad = run("data push --format zip \(tree)")
        #expect(bad.contains("--format must be auto, tar, tar+zstd or tar+gzip, not 'zip'"), "\(bad)")
        #expect(bad.hasSuffix("rc=64\n"), "\(bad)")
        let notExtracting = run("data pull --format tar \(knitId) out")
        #expect(notExtracting.contains("--format applies to --extract only"), "\(notExtracting)")
        #expect(notExtracting.hasSuffix("rc=64\n"), "\(notExtracting)")
        #expect(try log(server).count == requests)
    }

    @Test func pullOfUnknownDataReportsTheServersReason() throws {
        let server = try PythonServer(script: fakeKnitScript, arguments: ["knit", "application/x-tar"])
        defer { server.stop() }
        let dir = TemporaryDirectory()
        dir.mkdir("out")
        let error = #expect(throws: KnitClientError.self) {
            try client(server).pullData(knitId: "nope", extractInto: dir.file("out"))
        }
        #expect(error?.description == "404: data 'nope' not found")
        #expect(error?.status == 404)
        let file = #expect(throws: KnitClientError.self) {
            try client(server).pullArchive(knitId: "nope", into: dir.path)
        }
        #expect(file?.status == 404)
        #expect(capture(["/bin/ls", "-A", dir.path]) == "out\n")  // no partial download left behind
    }

    @Test func findPassesTagsSinceAndDurationAndFiltersTransient() throws {
        let server = try PythonServer(script: fakeKnitScript, arguments: ["knit", "application/x-tar"])
        defer { server.stop() }
        let dir = TemporaryDirectory()
        let api = try client(server)
        let tree = makeTree(dir)
        _ = try api.pushData(directory: tree, tags: [Tag(key: "p", value: "x y")])
        _ = try api.pushData(
            directory: tree,
            tags: [Tag(key: "p", value: "x y"), Tag(key: "test", value: "transient")]
        )
        _ = try api.pushData(directory: tree, tags: [Tag(key: "p", value: "other")])

        #expect(try api.findData(tags: [Tag(key: "p", value: "x y")]).map(\.detail.knitId) == ["data-1", "data-2"])
        #expect(
            try api.findData(tags: [Tag(key: "p", value: "x y")], transient: .yes).map(\.detail.knitId) == ["data-2"]
        )
        #expect(
            try api.findData(tags: [Tag(key: "p", value: "x y")], transient: .no).map(\.detail.knitId) == ["data-1"]
        )
        #expect(try api.findData(tags: [Tag(key: "knit#id", value: "data-3")]).map(\.detail.knitId) == ["data-3"])

        let since = try #require(KnitTime.parseLoose("2024-05-17T13:00", defaultOffsetMinutes: 9 * 60))
        let none = try api.findData(tags: [], since: since, duration: "1h30m")
        #expect(none.count == 3)  // the fake server does not filter by time; it records the query
        let query = try #require(try log(server).last?["query"])
        #expect(query["since"] == .array([.string("2024-05-17T04:00:00+00:00")]))
        #expect(query["duration"] == .array([.string("1h30m")]))

        let usage = #expect(throws: KnitClientError.self) { try api.findData(tags: [], duration: "1h") }
        #expect(usage?.code == .usage)
    }

    @Test func tagChangesAndServerErrors() throws {
        let server = try PythonServer(script: fakeKnitScript, arguments: ["knit", "application/x-tar"])
        defer { server.stop() }
        let dir = TemporaryDirectory()
        let api = try client(server)
        let knitId = try api.pushData(
            directory: makeTree(dir),
            tags: [Tag(key: "a", value: "1"), Tag(key: "b", value: "2")]
        ).detail.knitId
        let changed = try api.updateTags(
            knitId: knitId,
            change: TagChangeJSON(
                add: [Tag(key: "c", value: "3")],
                remove: [Tag(key: "a", value: "1")],
                removeKey: ["b"]
            )
        )
        let user = changed.detail.tags.filter { !$0.isSystem }
        #expect(user == [Tag(key: "c", value: "3")])
        let body = try #require(try log(server).last?["body"])
        #expect(body["add"] == .array([.string("c:3")]))
        #expect(body["remove"] == .array([.string("a:1")]))
        #expect(body["remove_key"] == .array([.string("b")]))

        let missing = #expect(throws: KnitClientError.self) {
            try api.updateTags(knitId: "ghost", change: TagChangeJSON(add: [Tag(key: "x", value: "y")]))
        }
        #expect(missing?.description == "404: data 'ghost' not found")

        let unauthorized = #expect(throws: KnitClientError.self) {
            try client(server, token: "wrong").findData(tags: [])
        }
        #expect(unauthorized?.description == "401: missing or wrong token (ask your administrator)")
    }

    @Test func unreachableServerIsATransportError() throws {
        let api = KnitAPIClient(profile: try KnitProfile(apiRoot: "http://127.0.0.1:1/api", caBase64: nil, token: nil))
        let error = #expect(throws: KnitClientError.self) { try api.findData(tags: []) }
        #expect(error?.code == .transport)
        #expect(error?.description.hasPrefix("GET http://127.0.0.1:1/api/data/: ") == true)
    }
}
