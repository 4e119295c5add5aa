import Foundation
import KnitCore
import KnitTesting
import Testing

extension Live {
    /// `knit run retry` and `knit run rm` against the real scheduler and podman containers.
    @Suite(.knitInstance(), .enabled(if: podmanAvailable))
    struct RunRetryRemoveLive {
        @Test func retryRunsAFinishedRunAgainWithNewOutputs() throws {
            let knit = try LiveKnit.instance()
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            let key = uniqueKey("retry")
            let plan = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "cat /in/data/v > /out/v && echo copied",
                    inputs: [("/in/data", ["\(key):in"])],
                    outputs: [("/out", ["\(key):out"])],
                    log: ["\(key):log"]
                )
            )
            _ = try pushValue(knit, "first", tags: ["\(key):in"])
            let first = try awaitRuns(knit, plan: plan.planId, count: 1, context: scheduler.logTail())[0]
            #expect(first.status == "done", "exit: \(String(describing: first.exit))")
            let oldOutput = first.outputs[0].knitId
            let oldLog = try #require(first.log).knitId
            #expect(try pullText(knit, oldOutput) == "first\n")

            let retried = knit.runKnit(["run", "retry", first.runId])
            try #require(retried.status == 0, "knit run retry: \(retried.stderr)")
            let detail = try jsonDecoder.decode(RunDetailJSON.self, from: retried.stdout)
            #expect(detail.runId == first.runId)
            #expect(detail.exit == nil)
            let newOutput = detail.outputs[0].knitId
            #expect(newOutput != oldOutput)
            #expect(try #require(detail.log).knitId != oldLog)

            // The old output and log are gone for good.
            for knitId in [oldOutput, oldLog] {
                let destination = try makeScratchDirectory(knit, "gone")
                let pulled = knit.runKnit(["data", "pull", "-x", knitId, destination])
                #expect(pulled.status == 1, "pull of a deleted Data succeeded")
                #expect(pulled.stderr.contains("not found"), "\(pulled.stderr)")
                #expect(knit.request("GET", "/api/data/\(knitId)/").status == 404)
            }

            // The scheduler runs it again: same Run, new output, done.
            let again = try awaitRuns(knit, plan: plan.planId, count: 1, context: scheduler.logTail())[0]
            #expect(again.runId == first.runId)
            #expect(again.status == "done", "exit: \(String(describing: again.exit))")
            #expect(again.outputs.map(\.knitId) == [newOutput])
            #expect(try pullText(knit, newOutput) == "first\n")
            #expect(runLog(knit, again.runId).contains("copied"))
            #expect(scheduler.containerStarts().count == 2, "the Run's container started once per run")

            // Retrying something unknown: one line on stderr, exit 1.
            let unknown = knit.runKnit(["run", "retry", "no-such-run"])
            #expect(unknown.status == 1)
            #expect(unknown.stderr.hasPrefix("knit: ") && unknown.stderr.contains("not found"))
        }

        @Test func removeHidesTheRunBlocksItsCombinationAndRefusesRunsInUse() throws {
            let knit = try LiveKnit.instance()
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            let key = uniqueKey("rm")
            let first = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "cat /in/data/v > /out/v",
                    inputs: [("/in/data", ["\(key):in"])],
                    outputs: [("/out", ["\(key):mid"])]
                )
            )
            let second = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "cat /in/data/v /in/data/v > /out/v",
                    inputs: [("/in/data", ["\(key):mid"])],
                    outputs: [("/out", ["\(key):end"])]
                )
            )
            _ = try pushValue(knit, "hello", tags: ["\(key):in"])
            let upstream = try awaitRuns(knit, plan: first.planId, count: 1, context: scheduler.logTail())[0]
            let downstream = try awaitRuns(knit, plan: second.planId, count: 1, context: scheduler.logTail())[0]
            #expect(upstream.status == "done" && downstream.status == "done")
            let middle = upstream.outputs[0].knitId
            let end = downstream.outputs[0].knitId

            // The upstream's output feeds a live Run: refused.
            let inUse = knit.runKnit(["run", "rm", upstream.runId])
            #expect(inUse.status == 1)
            #expect(inUse.stderr.contains("in use"), "\(inUse.stderr)")
            #expect(inUse.stdout.isEmpty)
            #expect(try showRun(knit, upstream.runId).status == "done")

            // The downstream Run goes: nothing printed, 404 afterwards, its output gone.
            let removed = knit.runKnit(["run", "rm", downstream.runId])
            #expect(removed.status == 0, "knit run rm: \(removed.stderr)")
            #expect(removed.stdout.isEmpty && removed.stderr.isEmpty)
            let shown = knit.runKnit(["run", "show", downstream.runId])
            #expect(shown.status == 1)
            #expect(shown.stderr.contains("not found"), "\(shown.stderr)")
            #expect(knit.request("GET", "/api/runs/\(downstream.runId)/").status == 404)
            #expect(knit.request("GET", "/api/data/\(end)/").status == 404)
            #expect(findRuns(knit, plans: [second.planId]).isEmpty)
            let again = knit.runKnit(["run", "rm", downstream.runId])
            #expect(again.status == 1 && again.stderr.contains("not found"))

            // Retagging the middle Data does not run the deleted combination again.
            let untag = knit.runKnit(["data", "tag", "--remove", "\(key):mid", middle])
            #expect(untag.status == 0, "knit data tag --remove: \(untag.stderr)")
            let retag = knit.runKnit(["data", "tag", "--add", "\(key):mid", middle])
            #expect(retag.status == 0, "knit data tag --add: \(retag.stderr)")
            Thread.sleep(forTimeInterval: 3)
            #expect(findRuns(knit, plans: [second.planId]).isEmpty)
            #expect(scheduler.containerStarts().count == 2, "only the two original Runs ever started")

            // With the downstream gone, the upstream may go too, and its output with it.
            let upstreamRemoved = knit.runKnit(["run", "rm", upstream.runId])
            #expect(upstreamRemoved.status == 0, "knit run rm: \(upstreamRemoved.stderr)")
            #expect(knit.request("GET", "/api/data/\(middle)/").status == 404)
            #expect(findRuns(knit, plans: [first.planId]).isEmpty)
        }
    }
}
