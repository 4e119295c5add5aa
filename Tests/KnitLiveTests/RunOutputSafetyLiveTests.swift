import Foundation
import KnitCore
import KnitTesting
import Testing

extension Live {
    /// What a Run leaves in the store, through the real knitd, scheduler and podman: nothing dangerous (F6),
    /// and nothing knitd cannot delete or forgets to delete (F10).
    @Suite(.knitInstance(), .enabled(if: podmanAvailable && getuid() == 0))
    struct RunOutputSafetyLive {
        private static func info(_ path: String) -> stat? {
            var found = stat()
            return lstat(path, &found) == 0 ? found : nil
        }

        @Test func F6RunOutputsKeepNoSetuidBitsDevicesFifosOrEscapingSymlinks() throws {
            let knit = try LiveKnit.instance()
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            let key = uniqueKey("sanitize")
            // One line: YAML folds the newlines of a quoted scalar into spaces.
            let script = [
                "cd /out/o && cp /bin/busybox pwn && chmod 4755 pwn && mkfifo fifo && ln -s /etc/shadow shadow "
                    + "&& cat /in/x/v > plain || exit 9",
                "mknod -m 666 mem c 1 1 2>/dev/null && echo mknod-succeeded || echo mknod-refused",
                "grep '^CapEff' /proc/self/status",
            ].joined(separator: "; ")
            let plan = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: script,
                    inputs: [("/in/x", ["\(key):in"])],
                    outputs: [("/out/o", ["\(key):out"])],
                    log: ["\(key):log"]
                )
            )
            _ = try pushValue(knit, "payload", tags: ["\(key):in"])
            let run = try awaitRuns(knit, plan: plan.planId, count: 1, context: scheduler.logTail())[0]
            let log = runLog(knit, run.runId)
            #expect(run.status == "done", "exit: \(String(describing: run.exit))\n\(log)")

            let output = knit.home + "/data/" + run.outputs[0].knitId
            let pwn = try #require(Self.info(output + "/pwn"))
            #expect(pwn.st_mode & 0o7777 == 0o755, "mode \(String(pwn.st_mode, radix: 8))")
            for gone in ["fifo", "shadow", "mem"] {
                #expect(Self.info(output + "/" + gone) == nil, "\(gone) is in the store")
            }
            #expect(try pullText(knit, run.outputs[0].knitId, file: "plain") == "payload\n")
            #expect(log.contains("mknod-refused"), "\(log)")
            #expect(log.contains("knit: removed fifo /out/o/fifo from the output"), "\(log)")
            #expect(log.contains("knit: removed symlink /out/o/shadow -> /etc/shadow from the output"), "\(log)")
            #expect(log.contains("knit: cleared the setuid/setgid bits of /out/o/pwn (mode 4755 -> 0755)"), "\(log)")
            let capLine = try #require(log.split(separator: "\n").first { $0.hasPrefix("CapEff:") }, "\(log)")
            let capText = capLine.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces)
            let caps = try #require(UInt64(capText, radix: 16))
            #expect(caps & (1 << 27) == 0, "CAP_MKNOD in \(capLine)")
        }

        /// knitd runs as root in this harness, so the test hands the store's data directory to `nobody` (uid
        /// 65534), as the installer hands it to `knit`: everything a Run made must then belong to `nobody`, i.e.
        /// a non-root knitd could delete it; and after retry and delete no directory is left without a record.
        @Test func F10RetriedAndDeletedRunsLeaveNoDirectoryAndBelongToTheStoreOwner() throws {
            let knit = try LiveKnit.instance()
            let data = knit.home + "/data"
            let original = try #require(Self.info(data))
            try #require(chown(data, 65534, 65534) == 0)
            defer { chown(data, original.st_uid, original.st_gid) }
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            let key = uniqueKey("owned")
            let plan = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "mkdir -p /out/o/deep/er && cat /in/x/v > /out/o/deep/er/v && echo made",
                    inputs: [("/in/x", ["\(key):in"])],
                    outputs: [("/out/o", ["\(key):out"])],
                    log: ["\(key):log"]
                )
            )
            _ = try pushValue(knit, "owned", tags: ["\(key):in"])
            let first = try awaitRuns(knit, plan: plan.planId, count: 1, context: scheduler.logTail())[0]
            #expect(first.status == "done", "exit: \(String(describing: first.exit))")
            let firstDirectories = [first.outputs[0].knitId, try #require(first.log).knitId].map { data + "/" + $0 }
            for path in firstDirectories + [firstDirectories[0] + "/deep", firstDirectories[0] + "/deep/er/v"] {
                let found = try #require(Self.info(path), "\(path) is missing")
                #expect(found.st_uid == 65534 && found.st_gid == 65534, "\(path) belongs to \(found.st_uid)")
            }
            #expect(Self.info(firstDirectories[1] + "/log")?.st_uid == 65534)

            let retried = knit.runKnit(["run", "retry", first.runId])
            try #require(retried.status == 0, "knit run retry: \(retried.stderr)")
            for path in firstDirectories { #expect(Self.info(path) == nil, "\(path) was left behind by retry") }
            let again = try awaitRuns(knit, plan: plan.planId, count: 1, context: scheduler.logTail())[0]
            #expect(again.status == "done")
            let removed = knit.runKnit(["run", "rm", again.runId])
            try #require(removed.status == 0, "knit run rm: \(removed.stderr)")
            let againDirectories = [again.outputs[0].knitId, try #require(again.log).knitId].map { data + "/" + $0 }
            for path in againDirectories { #expect(Self.info(path) == nil, "\(path) was left behind by rm") }

            // Every directory under data/ has its Data record, and no record lacks its directory.
            let all = knit.runKnit(["data", "find", "--transient", "both"])
            try #require(all.status == 0, "knit data find: \(all.stderr)")
            let records = Set(try jsonDecoder.decode([DataDetailJSON].self, from: all.stdout).map(\.knitId))
            let directories = Set(try FileManager.default.contentsOfDirectory(atPath: data))
            #expect(directories == records, "directories without records: \(directories.subtracting(records))")
        }

        /// F8, F17 end to end: `knit plan apply` refuses before sending, knitd refuses what a client sends anyway,
        /// and nothing is registered.
        @Test func F8F17PlansNoContainerCanRunAreRefusedAtApply() throws {
            let knit = try LiveKnit.instance()
            let key = uniqueKey("refused")
            let path = try makeScratchDirectory(knit, "plan") + "/plan.yaml"
            try quickstartPlanYAML(script: "true", inputs: [("/in/x", ["\(key):in"])], memory: "100Ei")
                .write(toFile: path, atomically: true, encoding: .utf8)
            let applied = knit.runKnit(["plan", "apply", path])
            #expect(applied.status == 1)
            #expect(applied.stderr.contains("resources.memory"), "\(applied.stderr)")

            for (field, json) in [
                ("resources.memory", #""resources":{"memory":"100Ei"}"#),
                ("resources.memory", #""resources":{"memory":"0"}"#),
                ("resources.cpu", #""resources":{"cpu":"0"}"#),
                ("inputs[0].path", #""resources":{"cpu":"1"},"inputs":[{"path":"/in:rw","tags":["\#(key):in"]}]"#),
            ] {
                var body = #"{"image":"\#(quickstartImage)","args":["true"],"#
                if !json.contains("\"inputs\"") { body += #""inputs":[{"path":"/in/x","tags":["\#(key):in"]}],"# }
                body += json + "}"
                let response = knit.request(
                    "POST",
                    "/api/plans/",
                    headers: ["Content-Type: application/json"],
                    body: Data(body.utf8)
                )
                #expect(response.status == 400, "\(body): \(response.text)")
                #expect(errorMessage(response)?.contains("invalid plan spec") == true, "\(response.text)")
                #expect(response.text.contains(field), "\(body): \(response.text)")
            }
            let found = knit.runKnit(["plan", "find", "-i", "\(key):in"])
            let listed = found.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(found.status == 0 && listed == "[]", "\(found.stdoutText)")
        }
    }
}
