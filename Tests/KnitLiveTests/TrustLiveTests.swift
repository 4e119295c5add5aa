import Foundation
import KnitCore
import KnitTesting
import Testing

#if canImport(Glibc)
    import Glibc
#endif

private let trustUsers: [(name: String, role: String)] = [
    ("admin", "admin"), ("alice", "user"), ("carol", "user"), ("rita", "reader"),
]

/// Starts the `knit` CLI in the background as `user` (its HOME and project directory).
private func backgroundKnit(_ knit: KnitInstance, _ args: [String], user: String = "alice") throws -> BackgroundProcess
{
    try knit.background(
        knit.knitPath,
        args,
        cwd: knit.projectDirectory(user),
        env: ["HOME": knit.userHome(user)],
        name: "knit-\(user)"
    )
}

/// Waits for a background child and returns its exit status (nil when it is still running at `timeout`).
private func finished(_ child: BackgroundProcess, timeout: Double) -> Int32? {
    child.wait(timeout: timeout) ? child.exitStatus : nil
}

extension Live {
    /// Uploads of every size and duration survive a scheduler that ticks meanwhile, and many pushes at once
    /// all land (the adversarial review's F2, F4).
    @Suite(
        .enabled(if: podmanAvailable),
        .knitInstance(.init(threads: 24, transferSlots: 12, followSlots: 4, users: trustUsers))
    )
    struct UploadsUnderLoad {
        /// F2: an upload that outlasted one scheduler pass was failed with 409 "no longer in progress".
        @Test func anUploadOfTwentySecondsCompletesWhileOthersWrite() throws {
            let knit = try LiveKnit.instance()
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            let scratch = try makeScratchDirectory(knit, "long")
            let body = scratch + "/body.tar.gz"
            try makeValidArchive(knit, body, bytes: 640 << 10)
            let size = try FileManager.default.attributesOfItem(atPath: body)[.size] as? Int ?? 0
            // About 20 s: 20 pieces, one a second.
            let upload = try startSlowUpload(knit, bodyPath: body, chunk: max(1, size / 20), interval: 1, burst: 1024)
            defer { upload.stop(signal: SIGKILL) }

            // Meanwhile another user writes every second: each write wakes the scheduler.
            let other = try makeScratchDirectory(knit, "other")
            try "x\n".write(toFile: other + "/x", atomically: true, encoding: .utf8)
            let pushedByCarol = try push(knit, other, tags: ["poke:carol"], user: "carol")
            var writes = 0
            let start = Date()
            while upload.isRunning, Date().timeIntervalSince(start) < 60 {
                let tagged = knit.request(
                    "PUT",
                    "/api/data/\(pushedByCarol.knitId)/",
                    user: "carol",
                    headers: ["Content-Type: application/json"],
                    body: Data(#"{"add":["poke:\#(writes)"],"remove":[]}"#.utf8)
                )
                #expect(tagged.status == 200)
                writes += 1
                sleep(1)
            }
            let elapsed = Date().timeIntervalSince(start)
            #expect(upload.wait(timeout: 30))
            #expect(elapsed >= 15, "the upload was meant to take about 20 s, took \(elapsed) s")
            #expect(writes >= 10)
            #expect(upload.stdoutText.contains("\n200 "), "slow upload: \(upload.stdoutText)\n\(scheduler.logTail())")
            let all = try decodeDetails(knit.request("GET", "/api/data/", user: "admin").body)
            #expect(
                !all.contains { $0.tags.values(of: SystemTag.transient) == [SystemTag.failed] },
                "a failed Data appeared"
            )
        }

        /// F2: a 1.5 GB `knit data push` failed with 409; a 2 GiB one is stored byte for byte.
        @Test func aTwoGiBPushThroughTheCLIIsStoredExactly() throws {
            let knit = try LiveKnit.instance()
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            let dir = try makeScratchDirectory(knit, "big")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let made = knit.run("/bin/sh", ["-c", "head -c 2G /dev/urandom > '\(dir)/blob'"])
            try #require(made.status == 0, "\(made.stderr)")
            let pushed = try push(knit, dir, tags: ["size:2GiB"])
            let stored = knit.home + "/data/\(pushed.knitId)/blob"
            let compared = knit.run("/usr/bin/cmp", [dir + "/blob", stored])
            #expect(compared.status == 0, "stored content differs: \(compared.stdoutText) \(compared.stderr)")
            let detail = try detail(knit, pushed.knitId)
            #expect(detail.tags.values(of: SystemTag.transient).isEmpty)
            #expect(detail.upstream.run.status == "done")
            _ = knit.run("/bin/rm", ["-f", stored])
        }

        /// F2 and the transfer slots: 50 pushes at once (4 times the slots there are) all succeed; the CLI
        /// waits out a busy server instead of failing.
        @Test func fiftyConcurrentPushesAllSucceed() throws {
            let knit = try LiveKnit.instance()
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            let key = uniqueKey("conc")
            var pushes: [BackgroundProcess] = []
            for index in 0..<50 {
                let dir = try makeScratchDirectory(knit, "conc")
                try writeRandomFile(dir + "/payload", bytes: 200 << 10)
                pushes.append(
                    try backgroundKnit(knit, ["data", "push", "-t", "\(key):\(index)", "-t", "batch:\(key)", dir])
                )
            }
            defer { for push in pushes { push.stop(signal: SIGKILL) } }
            var failures: [String] = []
            for push in pushes {
                let status = finished(push, timeout: 180)
                if status != 0 { failures.append("exit \(String(describing: status)): \(push.stderrText)") }
            }
            #expect(failures.isEmpty, "\(failures.count) of 50 pushes failed: \(failures.prefix(3))")
            let found = knit.runKnit(["data", "find", "-t", "batch:\(key)"])
            let details = try decodeDetails(found.stdout)
            #expect(details.count == 50)
            #expect(details.allSatisfy { $0.upstream.run.status == "done" })
        }

        /// F4: one PUT of 100,000 tags held the store's write lock for minutes. A 60,000-tag change now takes
        /// its moment, and another user's upload completes meanwhile.
        @Test func aSixtyThousandTagChangeDoesNotHoldOtherUsersUp() throws {
            let knit = try LiveKnit.instance()
            let dir = try makeScratchDirectory(knit, "many")
            try "x\n".write(toFile: dir + "/x", atomically: true, encoding: .utf8)
            let target = try push(knit, dir, tags: ["many:target"])
            let bodyPath = dir + ".json"
            let tags = (0..<60_000).map { "\"many2:v\(String(format: "%06d", $0))\"" }.joined(separator: ",")
            try #"{"add":[\#(tags)],"remove":[]}"#.write(toFile: bodyPath, atomically: true, encoding: .utf8)

            let change = try knit.background(
                "/usr/bin/curl",
                [
                    "-sS", "--cacert", knit.caPath, "-m", "120", "-o", "/dev/null", "-w", "%{http_code}",
                    "-X", "PUT", "-H", "Authorization: Bearer \(knit.token(for: "alice"))",
                    "-H", "Content-Type: application/json", "--data-binary", "@" + bodyPath,
                    knit.apiRoot + "/data/\(target.knitId)/",
                ],
                name: "tag-change"
            )
            defer { change.stop(signal: SIGKILL) }
            let other = try makeScratchDirectory(knit, "carol")
            try "mine\n".write(toFile: other + "/c", atomically: true, encoding: .utf8)
            let started = Date()
            let carol = knit.runKnit(["data", "push", "-t", "by:carol", other], user: "carol")
            let carolTook = Date().timeIntervalSince(started)
            #expect(carol.status == 0, "\(carol.stderr)")
            #expect(carolTook < 15, "carol's push took \(carolTook) s beside the tag change")
            #expect(finished(change, timeout: 60) == 0)
            #expect(change.stdoutText == "200", "tag change answered \(change.stdoutText) \(change.stderrText)")
            let found = knit.runKnit(["data", "find", "-t", "many2:v059999"])
            #expect(try decodeDetails(found.stdout).map(\.knitId) == [target.knitId])

            // Beyond the limits: clear 400/413, nothing changed.
            let tooMany = (0..<100_001).map { "\"k:\($0)\"" }.joined(separator: ",")
            let refused = knit.request(
                "PUT",
                "/api/data/\(target.knitId)/",
                headers: ["Content-Type: application/json"],
                body: Data(#"{"add":[\#(tooMany)]}"#.utf8)
            )
            #expect(refused.status == 400 || refused.status == 413, "\(refused.status) \(refused.text)")
            #expect(errorMessage(refused) != nil, "\(refused.text)")
            let control = knit.request(
                "PUT",
                "/api/data/\(target.knitId)/",
                headers: ["Content-Type: application/json"],
                body: Data(#"{"add":[{"key":"a:b","value":"c"},"c1:a\u0001b"]}"#.utf8)
            )
            #expect(control.status == 400, "\(control.text)")
        }

        /// F15: a tag of 10 KB was stored but nginx answered a query for it with 414. The longest tag knitd
        /// now stores, in multi-byte characters (three bytes a byte once percent-encoded), is findable.
        @Test func theLongestStorableTagCanBeQueried() throws {
            let knit = try LiveKnit.instance()
            let key = String(repeating: "k", count: Tag.maximumKeyLength - 8) + uniqueKey("")
            let value = String(repeating: "é", count: Tag.maximumValueLength / 2)
            let tag = try Tag(parsing: key + ":" + value)
            let pushed = try pushValue(knit, "long", tags: [tag.description])
            let query =
                "/api/data/?tag=" + (tag.description.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")
            #expect(query.utf8.count > 12_000)
            let found = knit.request("GET", query)
            #expect(found.status == 200, "\(found.status) \(found.text.prefix(300))")
            #expect(try decodeDetails(found.body).map(\.knitId) == [pushed.knitId])
            // One byte more is refused at the door with a clear 400.
            let tooLong = knit.runKnit([
                "data", "push", "-t", key + ":" + value + "x", try makeScratchDirectory(knit, "x"),
            ])
            #expect(tooLong.status != 0)
            #expect(tooLong.stderr.contains("longer than"), "\(tooLong.stderr)")
        }
    }

    /// Long requests of one user, or of readers following logs, never keep others from uploading (F5, F12).
    @Suite(
        .enabled(if: podmanAvailable),
        .knitInstance(.init(threads: 16, transferSlots: 4, followSlots: 4, users: trustUsers))
    )
    struct FairShares {
        /// F12: 55 followers of a running Run's log took every transfer slot, so uploads got 503 for
        /// everyone, and the slots stayed taken after the followers left, until the Run ended.
        @Test func logFollowersNeitherBlockUploadsNorKeepSlotsAfterTheyLeave() throws {
            let knit = try LiveKnit.instance()
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            let key = uniqueKey("follow")
            let plan = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "echo started; sleep 120",
                    inputs: [(path: "/in", tags: ["\(key):in"])],
                    log: ["\(key):log"]
                )
            )
            _ = try pushValue(knit, "x", tags: ["\(key):in"])
            let runs = try awaitRuns(knit, plan: plan.planId, count: 1, in: ["running"], timeout: 60)
            let runId = runs[0].runId
            defer { _ = knit.runKnit(["run", "stop", "--fail", runId]) }

            func follow(_ user: String) throws -> BackgroundProcess {
                try knit.background(
                    "/usr/bin/curl",
                    [
                        "-sS", "-N", "--cacert", knit.caPath, "-m", "100", "-w", "\n%{http_code}\n",
                        "-H", "Authorization: Bearer \(knit.token(for: user))",
                        knit.apiRoot + "/runs/\(runId)/log?follow",
                    ],
                    name: "follow-\(user)"
                )
            }
            // Two readers and two admins fill the log-stream pool (two each: half the pool per user).
            var followers = try ["rita", "rita", "admin", "admin"].map(follow)
            defer { for follower in followers { follower.stop(signal: SIGKILL) } }
            #expect(eventually(timeout: 15) { followers.allSatisfy { $0.stdoutText.contains("started") } })
            let refused = knit.request("GET", "/api/runs/\(runId)/log?follow", user: "carol", timeout: 10)
            #expect(refused.status == 503, "a fifth follower: \(refused.status)")

            // Every transfer slot is still free for uploads and downloads.
            for user in ["alice", "carol"] {
                let dir = try makeScratchDirectory(knit, "up")
                try "\(user)\n".write(toFile: dir + "/f", atomically: true, encoding: .utf8)
                let pushed = knit.runKnit(["data", "push", "-t", "\(key):\(user)", dir], user: user)
                #expect(pushed.status == 0, "\(pushed.stderr)")
            }

            // The followers leave while the Run still runs: their slots come back within moments.
            for follower in followers { follower.stop(signal: SIGKILL) }
            followers.removeAll()
            let reopened = eventually(timeout: 10) {
                let probe = knit.request("GET", "/api/runs/\(runId)/log?follow", user: "rita", timeout: 2)
                return probe.status == 200 || probe.curlStatus == 28  // 28: still streaming at the timeout
            }
            #expect(reopened, "slots of followers that left were not released")
            #expect(try showRun(knit, runId).status == "running")
        }

        /// F5 (knitd side): one user's slow uploads hold at most their share of the transfer slots; another
        /// user's upload, whoami and find still answer at once.
        @Test func oneUsersSlowUploadsLeaveOthersTheirShare() throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "slow")
            let body = scratch + "/body.tar.gz"
            try makeValidArchive(knit, body, bytes: 256 << 10)
            // Four trickling uploads of alice: the old single pool gave her all four slots.
            var uploads: [BackgroundProcess] = []
            for _ in 0..<4 {
                uploads.append(try startSlowUpload(knit, bodyPath: body, chunk: 512, interval: 1, burst: 4096))
            }
            defer { for upload in uploads { upload.stop(signal: SIGKILL) } }
            #expect(eventually(timeout: 20) { uploads.allSatisfy { $0.stdoutText.contains("started") } })
            usleep(2_000_000)
            // alice's share (half the pool) is taken: her next upload is refused at once, naming her share.
            let hers = knit.request(
                "POST",
                "/api/data/",
                headers: ["Content-Type: application/tar+gzip"],
                bodyFile: body,
                timeout: 10
            )
            #expect(hers.status == 503, "\(hers.text)")
            #expect(errorMessage(hers)?.contains("of yours") == true, "\(hers.text)")

            for (method, path) in [("GET", "/api/whoami"), ("GET", "/api/data/?tag=nothing:here")] {
                let start = Date()
                let response = knit.request(method, path, user: "carol", timeout: 5)
                #expect(response.status == 200)
                #expect(Date().timeIntervalSince(start) < 1, "\(path) took \(Date().timeIntervalSince(start)) s")
            }
            let dir = try makeScratchDirectory(knit, "carol")
            try "carol\n".write(toFile: dir + "/c", atomically: true, encoding: .utf8)
            let start = Date()
            let pushed = knit.runKnit(["data", "push", dir], user: "carol")
            #expect(pushed.status == 0, "\(pushed.stderr)")
            #expect(Date().timeIntervalSince(start) < 5, "carol's push took \(Date().timeIntervalSince(start)) s")
        }

        /// F7 through the real stack: carol cannot delete alice's Data; the refusal is in knitd's log with
        /// her name.
        @Test func anotherUsersDataCannotBeDeletedAndTheAttemptIsAudited() throws {
            let knit = try LiveKnit.instance()
            let pushed = try pushValue(knit, "alice's", tags: ["owner:alice"])
            let runId = pushed.upstream.run.runId
            let refused = knit.request("DELETE", "/api/runs/\(runId)", user: "carol")
            #expect(refused.status == 403, "\(refused.text)")
            #expect(errorMessage(refused)?.contains("alice") == true, "\(refused.text)")
            #expect(try detail(knit, pushed.knitId).knitId == pushed.knitId)
            let log = (try? String(contentsOfFile: knit.knitdLogPath, encoding: .utf8)) ?? ""
            let auditLines = log.split(separator: "\n").filter {
                $0.contains("audit") && $0.contains("audit.user=carol") && $0.contains(runId)
            }
            #expect(auditLines.count == 1, "audit lines: \(auditLines)")
            #expect(auditLines.first?.contains("audit.outcome=denied") == true)
            let deleted = knit.runKnit(["run", "rm", runId], user: "admin")
            #expect(deleted.status == 0, "\(deleted.stderr)")
            #expect(
                knit.runKnit(["data", "find", "-t", "owner:alice"]).stdoutText.trimmingCharacters(
                    in: .whitespacesAndNewlines
                ) == "[]"
            )
        }
    }
}
