import Foundation
import KnitCore
import KnitTesting
import Testing

extension Live {
    /// Runs that fail for real reasons — a non-zero exit, the kernel's OOM killer, an image that is not
    /// there — end failed with Knitfab's exit code and a message that says why, and their outputs feed
    /// nothing downstream.
    @Suite(.knitInstance(), .enabled(if: podmanAvailable))
    struct FailureLive {
        @Test func failedRunsExplainWhyAndFeedNothingDownstream() throws {
            let knit = try LiveKnit.instance()
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            let key = uniqueKey("fail")
            let missingImage = "localhost/knit-no-such-image-\(key):404"

            // Four producers of `key:out` from the same input, three of which fail; one consumer.
            func producer(_ script: String, image: String = quickstartImage, memory: String = "32Mi") throws
                -> PlanDetailJSON
            {
                try applyPlan(
                    knit,
                    quickstartPlanYAML(
                        script: script,
                        inputs: [("/in/x", ["\(key):in"])],
                        outputs: [("/out/y", ["\(key):out"])],
                        log: ["\(key):log"],
                        image: image,
                        memory: memory
                    )
                )
            }
            let exits3 = try producer("echo partial > /out/y/v; echo about to fail; exit 3")
            // tail keeps a line in memory until its end: 64 MiB without a newline, in a 16 MiB container.
            // The subshell's oom_score_adj makes the kernel pick tail, not the shell (pid 1), which then goes
            // on and exits 0: still an OOM failure, with 137 as its code.
            let oom = try producer(
                "echo allocating; (echo 1000 > /proc/self/oom_score_adj; head -c 64m /dev/zero | tail > /dev/null); "
                    + "echo \"tail ended with $?\"",
                memory: "16Mi"
            )
            let noImage = try producer("echo never", image: missingImage)
            let healthy = try producer("cat /in/x/v > /out/y/v")
            let consumer = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "cat /in/x/v > /out/y/v",
                    inputs: [("/in/x", ["\(key):out"])],
                    outputs: [("/out/y", ["\(key):consumed"])]
                )
            )
            _ = try pushValue(knit, "payload", tags: ["\(key):in"])

            let plans = [exits3, oom, noImage, healthy]
            var runs: [String: RunDetailJSON] = [:]
            for plan in plans {
                runs[plan.planId] = try awaitRuns(knit, plan: plan.planId, count: 1, context: scheduler.logTail())[0]
            }
            let exit3Run = try #require(runs[exits3.planId])
            let oomRun = try #require(runs[oom.planId])
            let noImageRun = try #require(runs[noImage.planId])
            let healthyRun = try #require(runs[healthy.planId])

            #expect(exit3Run.status == "failed")
            #expect(exit3Run.exit?.code == 3)
            #expect(
                exit3Run.exit?.message.contains("exited with code 3") == true,
                "\(String(describing: exit3Run.exit))"
            )
            #expect(runLog(knit, exit3Run.runId).contains("about to fail"))

            #expect(oomRun.status == "failed")
            #expect(oomRun.exit?.code == 137, "\(String(describing: oomRun.exit))")
            #expect(oomRun.exit?.message.contains("OOMKilled") == true, "\(String(describing: oomRun.exit))")
            #expect(oomRun.exit?.message.contains("16 MiB") == true, "\(String(describing: oomRun.exit))")
            let oomLog = runLog(knit, oomRun.runId)
            #expect(oomLog.contains("allocating") && oomLog.contains("tail ended with 137"), "log: \(oomLog)")

            #expect(noImageRun.status == "failed")
            #expect(noImageRun.exit?.code == 255, "\(String(describing: noImageRun.exit))")
            let noImageMessage = noImageRun.exit?.message ?? ""
            #expect(noImageMessage.contains("[ImageNotFound]"), "\(noImageMessage)")
            #expect(noImageMessage.contains(missingImage), "\(noImageMessage)")

            #expect(healthyRun.status == "done")

            // Failed outputs (and logs) are marked failed, nominated nowhere, used by no Run: the consumer's
            // only Run is over the healthy output. The consumer's Runs are created in the transaction that
            // finishes a producer, so after all four finished, there is nothing more to wait for.
            for run in [exit3Run, oomRun, noImageRun] {
                for knitId in run.outputs.map(\.knitId) + [try #require(run.log?.knitId)] {
                    let data = try detail(knit, knitId)
                    #expect(data.tags.contains(try Tag(parsing: "knit#transient:failed")), "\(data.tags)")
                    #expect(data.tags.contains { $0.key == "knit#timestamp" })
                    #expect(data.nomination.isEmpty)
                    #expect(data.downstreams.isEmpty)
                }
            }
            #expect(
                try pullText(knit, exit3Run.outputs[0].knitId) == "partial\n",
                "a failed output keeps what it wrote"
            )
            let consumed = try awaitRuns(knit, plan: consumer.planId, count: 1, context: scheduler.logTail())
            #expect(consumed[0].inputs.map(\.knitId) == healthyRun.outputs.map(\.knitId))
            #expect(consumed[0].status == "done")
            #expect(try pullText(knit, consumed[0].outputs[0].knitId) == "payload\n")
            // Nothing was started for the Run whose image is missing; every container is gone.
            #expect(!scheduler.containerStarts().contains("knit-run-\(noImageRun.runId)"))
            #expect(eventually(timeout: 10) { scheduler.containers().isEmpty }, "\(scheduler.containers())")
        }
    }
}
