import Foundation
import KnitCore
import KnitTesting
import Testing

extension Live {
    /// The whole pipeline with real parts: knit CLI → nginx + TLS → knitd → LMDB projection → knit-scheduler →
    /// podman container → output Data pulled back. Needs podman and the quickstart image (built here).
    @Suite(.knitInstance(), .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/podman")))
    struct PipelineLive {
        @Test func pushedDataIsProcessedByARealContainerAndTheOutputPullsBack() throws {
            let knit = try LiveKnit.instance()
            let build = Process()
            build.executableURL = URL(fileURLWithPath: knit.packageRoot + "/examples/quickstart/build-image.sh")
            try build.run()
            build.waitUntilExit()
            try #require(build.terminationStatus == 0, "examples/quickstart/build-image.sh failed")

            let instanceLabel = "knit-live-\(UUID().uuidString.prefix(8).lowercased())"
            defer { removeContainers(label: instanceLabel) }
            let schedulerPath = String(knit.knitdPath.dropLast("knitd".count)) + "knit-scheduler"
            _ = try knit.background(
                schedulerPath,
                [
                    "--home", knit.home, "--containers-conf", knit.packageRoot + "/containers/containers.conf",
                    "--instance", instanceLabel, "--log-level", "debug",
                ],
                name: "knit-scheduler"
            )

            let dir = try makeScratchDirectory(knit, "words")
            try "one two three four\n".write(toFile: dir + "/a.txt", atomically: true, encoding: .utf8)
            try "five six\n".write(toFile: dir + "/b.txt", atomically: true, encoding: .utf8)
            let data = try push(knit, dir, tags: ["kind:words"])

            let applied = knit.runKnit(["plan", "apply", knit.packageRoot + "/examples/quickstart/plan.yaml"])
            try #require(applied.status == 0, "knit plan apply: \(applied.stderr)")
            let plan = try jsonDecoder.decode(PlanDetailJSON.self, from: applied.stdout)

            var run: RunDetailJSON?
            let finished = eventually(timeout: 60) {
                let found = knit.runKnit(["run", "find", "-p", plan.planId])
                guard found.status == 0, let runs = try? jsonDecoder.decode([RunDetailJSON].self, from: found.stdout),
                    runs.count == 1
                else { return false }
                run = runs[0]
                return runs[0].status == "done" || runs[0].status == "failed"
            }
            try #require(finished, "the run did not finish within 60 s: \(String(describing: run))\n\(knit.logTails())")
            let done = try #require(run)
            #expect(done.status == "done", "exit: \(String(describing: done.exit))")
            #expect(done.exit?.code == 0)
            #expect(done.inputs.map(\.knitId) == [data.knitId])

            // The output is an ordinary done Data now: timestamped, tagged, not transient, pullable.
            let output = try detail(knit, done.outputs[0].knitId)
            #expect(output.tags.contains(try Tag(parsing: "kind:count")))
            #expect(output.tags.contains { $0.key == "knit#timestamp" })
            #expect(!output.tags.contains { $0.key == "knit#transient" })
            let destination = try makeScratchDirectory(knit, "pulled")
            let pulled = knit.runKnit(["data", "pull", "-x", output.knitId, destination])
            try #require(pulled.status == 0, "knit data pull: \(pulled.stderr)")
            let words = try String(contentsOfFile: destination + "/\(output.knitId)/words", encoding: .utf8)
            #expect(words.trimmingCharacters(in: .whitespacesAndNewlines) == "6")

            // The log Data holds what the container printed.
            let logId = try #require(done.log?.knitId)
            let logDestination = try makeScratchDirectory(knit, "log")
            let logPull = knit.runKnit(["data", "pull", "-x", logId, logDestination])
            try #require(logPull.status == 0, "knit data pull (log): \(logPull.stderr)")
            let log = try String(contentsOfFile: logDestination + "/\(logId)/log", encoding: .utf8)
            #expect(log.contains("counted 6 words"), "log: \(log)")
            let shownLog = knit.runKnit(["run", "show", "--log", done.runId])
            #expect(shownLog.status == 0, "knit run show --log: \(shownLog.stderr)")
            #expect(shownLog.stdoutText.contains("counted 6 words"))

            // Following a running Run's log prints what it writes later and ends when the Run ends.
            let slowPlan = knit.home + "/slow-plan.yaml"
            try """
            image: "localhost/knit-quickstart:1"
            args: ["echo first line; sleep 2; echo last line"]
            inputs:
              - path: "/in/data"
                tags: ["kind:words"]
            log:
              tags: ["kind:slow-log"]
            """.write(toFile: slowPlan, atomically: true, encoding: .utf8)
            let slowApplied = knit.runKnit(["plan", "apply", slowPlan])
            try #require(slowApplied.status == 0, "knit plan apply: \(slowApplied.stderr)")
            let slow = try jsonDecoder.decode(PlanDetailJSON.self, from: slowApplied.stdout)
            var slowRun: RunDetailJSON?
            let running = eventually(timeout: 30) {
                let found = knit.runKnit(["run", "find", "-p", slow.planId])
                slowRun = (try? jsonDecoder.decode([RunDetailJSON].self, from: found.stdout))?.first
                return slowRun?.status == "running"
            }
            try #require(running, "the slow run never ran: \(String(describing: slowRun))")
            let followed = knit.runKnit(["run", "show", "--log", "-f", try #require(slowRun).runId])
            #expect(followed.status == 0, "knit run show --log -f: \(followed.stderr)")
            #expect(followed.stdoutText.contains("first line"))
            #expect(followed.stdoutText.contains("last line"), "follow ended before the run: \(followed.stdoutText)")
        }
    }
}

private func removeContainers(label: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = [
        "-c", "podman ps -aq --filter label=knit.executor=\(label) | xargs -r podman rm -f >/dev/null 2>&1",
    ]
    try? process.run()
    process.waitUntilExit()
}
