import Foundation
import KnitCore
import KnitTesting
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension Live {
    /// Slow clients cannot take the server down: when every transfer slot is held by a trickling
    /// upload, knitd still answers small requests promptly and refuses further transfers with
    /// 503 ("too many transfers, retry later") instead of queueing them.
    @Suite(.knitInstance(.init(threads: 8, transferSlots: 4, followSlots: 2, slotsPerUser: 4)))
    struct SlowClients {
        @Test func busyTransferSlotsDoNotBlockSmallRequests() throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "slow")
            let body = scratch + "/body.tar.gz"
            try makeValidArchive(knit, body, bytes: 2 << 20)
            let before = try StoreSnapshot(knit)

            var uploads: [BackgroundProcess] = []
            for _ in 0..<4 {
                uploads.append(try startSlowUpload(knit, bodyPath: body, chunk: 1024, interval: 0.5, burst: 8192))
            }
            defer { for upload in uploads { upload.stop(signal: SIGKILL) } }
            #expect(
                eventually(timeout: 15) { uploads.allSatisfy { $0.stdoutText.contains("started") } },
                "slow uploads did not start"
            )
            // Let the requests reach knitd and take their slots.
            usleep(2_000_000)
            let allRunning = uploads.allSatisfy { $0.isRunning }
            #expect(allRunning, "a slow upload ended early: \(uploads.map { $0.stdoutText })")

            var start = Date()
            let health = knit.request("GET", "/api/health", user: nil, timeout: 10)
            #expect(health.status == 200)
            #expect(Date().timeIntervalSince(start) < 3, "health took \(Date().timeIntervalSince(start)) s")

            start = Date()
            let find = knit.runKnit(["data", "find", "-t", "nothing:here"])
            #expect(find.status == 0, "knit data find while slots are busy: \(find.stderr)")
            #expect(Date().timeIntervalSince(start) < 5, "find took \(Date().timeIntervalSince(start)) s")

            // One more transfer is refused promptly.
            start = Date()
            let extra = knit.request(
                "POST",
                "/api/data/",
                headers: ["Content-Type: application/tar+gzip"],
                bodyFile: body,
                timeout: 20
            )
            #expect(extra.status == 503, "upload beyond the slots: \(extra.status) \(extra.text)")
            #expect(errorMessage(extra) != nil, "no JSON message: \(extra.text)")
            #expect(Date().timeIntervalSince(start) < 5, "503 took \(Date().timeIntervalSince(start)) s")

            // Releasing the slow clients frees the slots and leaves nothing behind.
            for upload in uploads { upload.stop(signal: SIGKILL) }
            try before.expectUnchanged(knit, "slow uploads killed")
            let dir = try makeScratchDirectory(knit, "after-slow")
            try "ok\n".write(toFile: dir + "/ok.txt", atomically: true, encoding: .utf8)
            var pushed: DataDetailJSON?
            // Slots are released when knitd notices the aborted requests; allow it a moment.
            let freed = eventually(timeout: 15) {
                let result = knit.runKnit(["data", "push", "-t", "after:slow", dir])
                if result.status == 0 { pushed = try? decodeDetail(result.stdout) }
                return result.status == 0
            }
            #expect(freed, "push still refused after the slow clients went away")
            #expect(pushed != nil)
        }
    }

    /// Process lifecycle: clean exit on SIGTERM, refusal of a future schema.
    @Suite(.knitInstance())
    struct Lifecycle {
        @Test func knitdExitsCleanlyOnSIGTERMAndRestarts() throws {
            let knit = try LiveKnit.instance()
            let status = knit.killKnitd(signal: SIGTERM, timeout: 15)
            #expect(status == 0, "knitd did not exit 0 on SIGTERM within 15 s (status \(String(describing: status)))")
            #expect(knit.knitdPID == nil)
            // nginx answers for a missing knitd with a JSON 502.
            let down = knit.request("GET", "/api/health", user: nil)
            #expect(down.status == 502, "with knitd down: \(down.status) \(down.text)")
            #expect(errorMessage(down) != nil, "no JSON message: \(down.text)")
            try knit.restartKnitd()
            #expect(knit.request("GET", "/api/health", user: nil).status == 200)
        }

        /// knitd (and knitadm) refuse to open a store whose schema is newer than they understand.
        @Test func knitdRefusesUnknownSchemaVersion() throws {
            let knit = try LiveKnit.instance()
            let home = try makeScratchDirectory(knit, "future-home")
            let created = knit.run(knit.knitadmPath, ["--home", home, "init"])
            try #require(created.status == 0, "knitadm init: \(created.stderr)")
            // Forge a future schema with LMDB's own loader (plain-text pairs: key line, value line);
            // the store keeps `schema_version` as text in the `meta` database.
            let forged = knit.run(
                "/usr/bin/mdb_load",
                ["-T", "-s", "meta", home + "/db"],
                stdin: Data("schema_version\n999\n".utf8)
            )
            try #require(forged.status == 0, "mdb_load failed: \(forged.stderr)")
            let dump = knit.run("/usr/bin/mdb_dump", ["-p", "-s", "meta", home + "/db"])
            #expect(dump.stdoutText.contains("999"), "forged version not in the store: \(dump.stdoutText)")

            let socket = home + "/run/test.sock"
            let start = try knit.background(
                knit.knitdPath,
                ["--home", home, "--socket", socket, "--threads", "4", "--transfer-slots", "2", "--follow-slots", "1"],
                name: "knitd-future"
            )
            #expect(start.wait(timeout: 20), "knitd kept running on a store with schema version 999")
            start.stop(signal: SIGKILL)
            #expect((start.exitStatus ?? 0) != 0)
            let message = (start.stderrText + start.stdoutText).lowercased()
            #expect(message.contains("schema"), "knitd's error does not mention the schema: \(message)")

            let reinit = knit.run(knit.knitadmPath, ["--home", home, "init"])
            #expect(reinit.status != 0, "knitadm init accepted schema version 999")
        }
    }
}
