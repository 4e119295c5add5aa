import Foundation
import KnitCore
import KnitTesting
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What the store looked like before a bad request, to prove that the request left nothing.
struct StoreSnapshot {
    var knitIds: Set<String>
    var dataDirectories: [String]

    init(_ knit: KnitInstance) throws {
        knitIds = try allKnitIds(knit)
        dataDirectories = knit.entries("data")
    }

    /// No new Data visible, staging empty (within a few seconds), no new directory in data/.
    func expectUnchanged(_ knit: KnitInstance, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws
    {
        // knitd abandons an upload in three steps (staging removed, records dropped, data directory removed), the
        // middle one a durable commit that waits for the disk: wait for the last step, not the first.
        let drained = eventually(timeout: 30) {
            knit.entries("staging").isEmpty && knit.entries("data") == dataDirectories
        }
        #expect(drained, "\(what): staging not empty: \(knit.entries("staging"))", sourceLocation: sourceLocation)
        let now = try allKnitIds(knit)
        #expect(
            now == knitIds,
            "\(what): new Data visible: \(now.subtracting(knitIds))",
            sourceLocation: sourceLocation
        )
        #expect(
            knit.entries("data") == dataDirectories,
            "\(what): data/ changed: \(Set(knit.entries("data")).subtracting(dataDirectories))",
            sourceLocation: sourceLocation
        )
    }
}

/// A crafted archive that must be refused as a whole.
struct EvilArchive: CustomTestStringConvertible, Sendable {
    var name: String
    /// python calls of the craftTar helpers; `OUT` is replaced with a directory outside the
    /// Data that the archive tries to write into.
    var entries: String
    var testDescription: String { name }

    static let all: [EvilArchive] = [
        EvilArchive(name: "dot-dot entry", entries: #"file("ok.txt")\#nfile("../evil-dotdot")"#),
        EvilArchive(name: "dot-dot inside a path", entries: #"directory("a")\#nfile("a/../../evil-nested")"#),
        EvilArchive(name: "absolute path", entries: #"file("ok.txt")\#nfile("OUT/evil-absolute")"#),
        EvilArchive(
            name: "symlink escaping the Data, written through",
            entries: #"symlink("esc", "OUT")\#nfile("esc/evil-through-link")"#
        ),
        EvilArchive(
            name: "relative symlink escaping the Data, written through",
            entries: #"symlink("up", "../../../../../../../../../../..OUT")\#nfile("up/evil-through-relative-link")"#
        ),
        EvilArchive(
            name: "symlink escaping the Data",
            entries: #"file("ok.txt")\#nsymlink("passwd", "../../../../etc/passwd")"#
        ),
        EvilArchive(name: "hard link to a file outside", entries: #"file("ok.txt")\#nhardlink("h", "/etc/passwd")"#),
        EvilArchive(name: "character device", entries: #"file("ok.txt")\#nchardev("null", 1, 3)"#),
    ]
}

extension Live {
    /// Bad input through nginx: each request gets a clear 4xx with a JSON message and leaves no
    /// trace (no Data, nothing in staging/ or data/, nothing written outside).
    @Suite(.knitInstance())
    struct BadInput {
        @Test(arguments: EvilArchive.all)
        func evilArchiveIsRejected(_ archive: EvilArchive) throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "evil")
            let outside = scratch + "/outside"
            try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
            let path = scratch + "/evil.tar.gz"
            try craftTar(knit, path, entries: archive.entries.replacingOccurrences(of: "OUT", with: outside))
            let before = try StoreSnapshot(knit)

            let response = knit.request(
                "POST",
                "/api/data/",
                headers: ["Content-Type: application/tar+gzip", "Transfer-Encoding: chunked"],
                bodyFile: path
            )
            #expect(response.status == 400, "\(archive.name): answered \(response.status): \(response.text)")
            #expect(errorMessage(response) != nil, "\(archive.name): no JSON message: \(response.text)")
            try before.expectUnchanged(knit, archive.name)
            #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "written outside the Data")
            let strays = knit.run("/usr/bin/find", [knit.home, "-name", "evil-*"]).stdoutText
            #expect(strays.isEmpty, "stray files: \(strays)")
        }

        @Test func truncatedGzipIsRejected() throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "truncated")
            let whole = scratch + "/whole.tar.gz"
            try makeValidArchive(knit, whole, bytes: 1 << 20)
            let data = try Data(contentsOf: URL(fileURLWithPath: whole))
            let before = try StoreSnapshot(knit)
            for chunked in [false, true] {
                var headers = ["Content-Type: application/tar+gzip"]
                if chunked { headers.append("Transfer-Encoding: chunked") }
                let response = knit.request("POST", "/api/data/", headers: headers, body: data.prefix(data.count / 2))
                #expect(response.status == 400, "truncated (chunked: \(chunked)): \(response.status) \(response.text)")
                #expect(errorMessage(response) != nil, "no JSON message: \(response.text)")
            }
            try before.expectUnchanged(knit, "truncated gzip")
        }

        @Test(arguments: ["application/tar+gzip", "application/x-tar", "application/tar+zstd"])
        func garbageBodyIsRejected(_ contentType: String) throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "garbage")
            try writeRandomFile(scratch + "/garbage", bytes: 64 << 10)
            let before = try StoreSnapshot(knit)
            let response = knit.request(
                "POST",
                "/api/data/",
                headers: ["Content-Type: \(contentType)"],
                bodyFile: scratch + "/garbage"
            )
            #expect(response.status == 400, "garbage as \(contentType): \(response.status) \(response.text)")
            #expect(errorMessage(response) != nil, "no JSON message: \(response.text)")
            try before.expectUnchanged(knit, "garbage body")
        }

        @Test func checksumHeaderIsVerified() throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "checksum")
            let path = scratch + "/body.tar.gz"
            try makeValidArchive(knit, path, bytes: 200 << 10)
            let before = try StoreSnapshot(knit)

            let wrong = knit.request(
                "POST",
                "/api/data/",
                headers: ["Content-Type: application/tar+gzip", "x-checksum-md5: 00000000000000000000000000000000"],
                bodyFile: path
            )
            #expect(wrong.status == 400, "wrong md5: \(wrong.status) \(wrong.text)")
            #expect(errorMessage(wrong) != nil, "no JSON message: \(wrong.text)")
            try before.expectUnchanged(knit, "wrong checksum")

            // The right checksum is accepted (so the header really reaches knitd).
            let md5 = String(knit.run("/usr/bin/md5sum", [path]).stdoutText.prefix(32))
            let right = knit.request(
                "POST",
                "/api/data/",
                headers: ["Content-Type: application/tar+gzip", "x-checksum-md5: \(md5)"],
                bodyFile: path
            )
            #expect(right.status == 200, "right md5: \(right.status) \(right.text)")
            let created = try decodeDetail(right.body)
            #expect(try allKnitIds(knit) == before.knitIds.union([created.knitId]))
        }

        /// F9: 500, a leftover in staging/, and a start-up recovery that stopped at it.
        @Test func nonUTF8EntryNameIsRejected() throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "badname")
            let path = scratch + "/badname.tar.gz"
            try craftTar(knit, path, entries: #"file(b"bad\xff\xfename".decode("utf-8", "surrogateescape"))"#)
            let before = try StoreSnapshot(knit)
            let response = knit.request(
                "POST",
                "/api/data/",
                headers: ["Content-Type: application/tar+gzip"],
                bodyFile: path
            )
            #expect(response.status == 400, "non-UTF-8 name: \(response.status) \(response.text)")
            #expect(errorMessage(response)?.contains("not valid UTF-8") == true, "\(response.text)")
            try before.expectUnchanged(knit, "non-UTF-8 name")
        }

        /// F11: 10 KB that declared a 50 GB sparse file was stored, and every download sent 50 GB. 15 TiB is more
        /// than any test machine has free, so the free-space limit refuses it without --max-data-bytes.
        @Test func sparseFileLargerThanTheDiskIsRefused() throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "sparse")
            try FileManager.default.createDirectory(atPath: scratch + "/tree", withIntermediateDirectories: true)
            #expect(knit.run("/usr/bin/truncate", ["-s", "15T", scratch + "/tree/huge"]).status == 0)
            let made = knit.run(
                "/bin/tar",
                ["--sparse", "-cf", scratch + "/sparse.tar", "-C", scratch + "/tree", "huge"]
            )
            try #require(made.status == 0, "tar --sparse: \(made.stderr)")
            try FileManager.default.removeItem(atPath: scratch + "/tree/huge")
            let before = try StoreSnapshot(knit)
            let response = knit.request(
                "POST",
                "/api/data/",
                headers: ["Content-Type: application/x-tar"],
                bodyFile: scratch + "/sparse.tar"
            )
            #expect(response.status == 413, "sparse 15 TiB: \(response.status) \(response.text)")
            #expect(errorMessage(response)?.contains("free space") == true, "\(response.text)")
            try before.expectUnchanged(knit, "sparse file")
        }

        @Test func clientKilledMidUploadLeavesNothing() throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "killed-client")
            let body = scratch + "/body.tar.gz"
            try makeValidArchive(knit, body, bytes: 4 << 20)
            let knitdPID = try #require(knit.knitdPID)
            let fdsBefore = fdCount(pid: knitdPID) ?? 0
            let before = try StoreSnapshot(knit)

            let uploader = try startSlowUpload(knit, bodyPath: body, chunk: 4096, interval: 0.1, burst: 256 << 10)
            #expect(eventually(timeout: 10) { uploader.stdoutText.contains("started") }, "upload did not start")
            usleep(1_500_000)
            #expect(uploader.isRunning, "the slow upload ended early: \(uploader.stdoutText) \(uploader.stderrText)")
            uploader.stop(signal: SIGKILL)

            try before.expectUnchanged(knit, "client killed mid-upload")
            #expect(knit.knitdPID == knitdPID, "knitd died")
            // The aborted request must not leak descriptors (a little slack for lazily opened files).
            let settled = eventually(timeout: 10) { (fdCount(pid: knitdPID) ?? 0) <= fdsBefore + 4 }
            #expect(settled, "knitd fds: \(fdsBefore) before, \(fdCount(pid: knitdPID) ?? -1) after")
            #expect(knit.request("GET", "/api/health", user: nil).status == 200)
        }

        @Test func knitdKilledMidUploadLeavesNoHalfData() throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "killed-server")
            let body = scratch + "/body.tar.gz"
            try makeValidArchive(knit, body, bytes: 4 << 20)
            let before = try StoreSnapshot(knit)

            let uploader = try startSlowUpload(knit, bodyPath: body, chunk: 4096, interval: 0.1, burst: 256 << 10)
            #expect(eventually(timeout: 10) { uploader.stdoutText.contains("started") }, "upload did not start")
            usleep(1_500_000)
            #expect(knit.killKnitd(signal: SIGKILL) != nil, "knitd did not die on SIGKILL")
            uploader.stop(signal: SIGKILL)

            try knit.restartKnitd()
            try before.expectUnchanged(knit, "knitd killed mid-upload")

            // And the restarted server works normally.
            let dir = try makeScratchDirectory(knit, "after-restart")
            try "ok\n".write(toFile: dir + "/ok.txt", atomically: true, encoding: .utf8)
            let pushed = try push(knit, dir, tags: ["after:restart"])
            #expect(try detail(knit, pushed.knitId).tagStrings.contains("after:restart"))
        }

        @Test func unknownKnitIdIsNotFound() throws {
            let knit = try LiveKnit.instance()
            let unknown = UUID().uuidString.lowercased()
            let get = knit.request("GET", "/api/data/\(unknown)/")
            #expect(get.status == 404, "GET unknown: \(get.status) \(get.text)")
            #expect(errorMessage(get) != nil, "no JSON message: \(get.text)")
            let put = knit.request(
                "PUT",
                "/api/data/\(unknown)",
                headers: ["Content-Type: application/json"],
                body: Data(#"{"add":["a:b"]}"#.utf8)
            )
            #expect(put.status == 404, "PUT unknown: \(put.status) \(put.text)")
            #expect(errorMessage(put) != nil, "no JSON message: \(put.text)")

            let dest = try makeScratchDirectory(knit, "pull-unknown")
            let pull = knit.runKnit(["data", "pull", unknown, dest])
            #expect(pull.status != 0)
            let message = pull.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!message.isEmpty && !message.contains("\n"), "expected a one-line error, got: \(pull.stderr)")
            #expect(message.hasPrefix("knit:"), "error does not start with knit: — \(message)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dest).isEmpty, "pull left files: \(dest)")
        }

        @Test func malformedQueriesAreRejected() throws {
            let knit = try LiveKnit.instance()
            for query in [
                "tag=nocolon", "since=yesterday-ish", "since=2024-01-01T00:00:00Z&duration=-5m", "duration=1h",
            ] {
                let response = knit.request("GET", "/api/data/?\(query)")
                #expect(response.status == 400, "\(query): \(response.status) \(response.text)")
                #expect(errorMessage(response) != nil, "\(query): no JSON message: \(response.text)")
            }
        }

        @Test func authenticationAndRoles() throws {
            let knit = try LiveKnit.instance()
            let missing = knit.request("GET", "/api/data/", user: nil)
            #expect(missing.status == 401, "no token: \(missing.status)")
            #expect(errorMessage(missing) != nil, "no JSON message: \(missing.text)")
            let invalid = knit.request("GET", "/api/data/", user: nil, headers: ["Authorization: Bearer not-a-token"])
            #expect(invalid.status == 401, "invalid token: \(invalid.status)")
            let health = knit.request("GET", "/api/health", user: nil)
            #expect(health.status == 200)
            let healthJSON = try #require(health.json as? [String: Any], "health is not JSON: \(health.text)")
            #expect(healthJSON["status"] as? String == "ok")
            #expect(healthJSON["version"] is String)
            #expect((healthJSON["formats"] as? [Any])?.isEmpty == false)

            // HTTP Basic with the token as password (Knitfab's CLI with user:token@host).
            let basic = knit.curl([
                "-o", "/dev/null", "-w", "%{http_code}", "-u", "alice:\(knit.token(for: "alice"))",
                knit.apiRoot + "/data/",
            ])
            #expect(basic.stdoutText == "200", "basic auth: \(basic.stdoutText) \(basic.stderr)")
            let badBasic = knit.curl([
                "-o", "/dev/null", "-w", "%{http_code}", "-u", "alice:wrong", knit.apiRoot + "/data/",
            ])
            #expect(badBasic.stdoutText == "401", "wrong basic password: \(badBasic.stdoutText)")

            // A reader cannot push, neither with curl nor with the CLI; nothing is created.
            let scratch = try makeScratchDirectory(knit, "reader")
            try makeValidArchive(knit, scratch + "/body.tar.gz", bytes: 10 << 10)
            let before = try StoreSnapshot(knit)
            let denied = knit.request(
                "POST",
                "/api/data/",
                user: "rita",
                headers: ["Content-Type: application/tar+gzip"],
                bodyFile: scratch + "/body.tar.gz"
            )
            #expect(denied.status == 403, "reader push: \(denied.status) \(denied.text)")
            #expect(errorMessage(denied) != nil, "no JSON message: \(denied.text)")
            let dir = try makeScratchDirectory(knit, "reader-dir")
            try "r\n".write(toFile: dir + "/r.txt", atomically: true, encoding: .utf8)
            let cli = knit.runKnit(["data", "push", dir], user: "rita")
            #expect(cli.status != 0, "reader push via CLI succeeded")
            try before.expectUnchanged(knit, "reader push")
        }
    }
}
