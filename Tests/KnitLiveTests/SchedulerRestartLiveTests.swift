import Foundation
import KnitCore
import KnitTesting
import Testing

extension Live {
    /// knit-scheduler killed with SIGKILL while containers run, then started again: every Run ends, each
    /// exactly once, and the chain goes on.
    ///
    /// "Never twice" is checked three independent ways: podman's event log has exactly one `start` per
    /// Run's container (`knit-run-<runId>`, filtered by this scheduler's label; the log outlives removed
    /// containers, so a container that was started, removed and started again counts twice); each
    /// container prints `begin <its hostname>` first, and a Run's log file is appended to, never
    /// truncated, so a second container would add a second `begin` line; and a second container would
    /// find the output directory non-empty and fail the Run (255), so every Run must be done.
    @Suite(.knitInstance(), .enabled(if: podmanAvailable))
    struct SchedulerRestartLive {
        @Test func runsSurviveASchedulerKilledMidRunAndNoneRunsTwice() throws {
            let knit = try LiveKnit.instance()
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            let key = uniqueKey("crash")
            let first = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "echo \"begin $(cat /etc/hostname)\"; sleep 2; cat /in/x/v > /out/y/v; echo end",
                    inputs: [("/in/x", ["\(key):in"])],
                    outputs: [("/out/y", ["\(key):mid"])],
                    log: ["\(key):log1"]
                )
            )
            let second = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "echo \"begin $(cat /etc/hostname)\"; echo \"$(cat /in/x/v)+b\" > /out/y/v",
                    inputs: [("/in/x", ["\(key):mid"])],
                    outputs: [("/out/y", ["\(key):final"])],
                    log: ["\(key):log2"]
                )
            )
            // Runs that are still running when the scheduler is gone; the user stops them meanwhile.
            let slow = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script:
                        "trap 'exit 143' TERM; echo \"begin $(cat /etc/hostname)\"; echo kept > /out/y/v; "
                        + "sleep 60 & wait",
                    inputs: [("/in/x", ["\(key):slow"])],
                    outputs: [("/out/y", ["\(key):slow-out"])],
                    log: ["\(key):log3"]
                )
            )
            let slowData = try ["s1", "s2"].map { try pushValue(knit, $0, tags: ["\(key):slow"]) }
            var values = ["v1", "v2", "v3"]
            var pushed = try values.map { try pushValue(knit, $0, tags: ["\(key):in"]) }
            _ = try awaitRuns(knit, plan: first.planId, count: 3, in: ["running"], context: scheduler.logTail())
            let slowRuns = try awaitRuns(
                knit,
                plan: slow.planId,
                count: 2,
                in: ["running"],
                context: scheduler.logTail()
            )
            let toAbort = try #require(slowRuns.first { $0.inputs[0].knitId == slowData[0].knitId })
            let toTearOff = try #require(slowRuns.first { $0.inputs[0].knitId == slowData[1].knitId })
            let slowLogsReady = eventually(timeout: 15) {
                runLog(knit, toAbort.runId).hasPrefix("begin ") && runLog(knit, toTearOff.runId).hasPrefix("begin ")
            }
            try #require(slowLogsReady, "the slow runs never wrote their output")

            try scheduler.kill()
            // Stop requests while no scheduler runs: recorded now, carried out by the next scheduler.
            let abort = knit.runKnit(["run", "stop", "--fail", toAbort.runId])
            try #require(abort.status == 0, "knit run stop --fail: \(abort.stderr)")
            let tearOff = knit.runKnit(["run", "stop", toTearOff.runId])
            try #require(tearOff.status == 0, "knit run stop: \(tearOff.stderr)")
            #expect(try showRun(knit, toAbort.runId).status == "aborting")
            #expect(try showRun(knit, toTearOff.runId).status == "completing")
            // Made while no scheduler runs: its ring is lost, the restarted scheduler must find it anyway.
            pushed.append(try pushValue(knit, "v4", tags: ["\(key):in"]))
            values.append("v4")
            // Let the containers finish with nobody watching, so the new scheduler has to adopt exited ones.
            let exitedUnwatched = eventually(timeout: 20) { scheduler.containers(status: "exited").count == 3 }
            try #require(exitedUnwatched, "containers: \(scheduler.containers(status: "exited"))")
            let beforeRestart = findRuns(knit, plans: [first.planId])
            #expect(beforeRestart.filter { $0.status == "running" }.count == 3, "nobody finished them")
            #expect(beforeRestart.filter { $0.status == "waiting" }.count == 1)

            try scheduler.restart()
            let firstRuns = try awaitRuns(knit, plan: first.planId, count: 4, timeout: 30, context: scheduler.logTail())
            let secondRuns = try awaitRuns(
                knit,
                plan: second.planId,
                count: 4,
                timeout: 30,
                context: scheduler.logTail()
            )

            for (value, data) in zip(values, pushed) {
                let a = try #require(firstRuns.first { $0.inputs.map(\.knitId) == [data.knitId] })
                let b = try #require(secondRuns.first { $0.inputs.map(\.knitId) == a.outputs.map(\.knitId) })
                for run in [a, b] {
                    #expect(run.status == "done", "\(run.runId): \(String(describing: run.exit))")
                    #expect(run.exit == RunExitJSON(code: 0, message: ""))
                    let log = runLog(knit, run.runId)
                    #expect(log.split(separator: "\n").filter { $0.hasPrefix("begin ") }.count == 1, "log: \(log)")
                }
                #expect(try pullText(knit, b.outputs[0].knitId) == "\(value)+b\n")
            }
            let slowEnded = try awaitRuns(knit, plan: slow.planId, count: 2, context: scheduler.logTail())
            let aborted = try #require(slowEnded.first { $0.runId == toAbort.runId })
            let tornOff = try #require(slowEnded.first { $0.runId == toTearOff.runId })
            #expect(aborted.status == "failed")
            #expect(aborted.exit == RunExitJSON(code: 253, message: "aborted by user"))
            #expect(tornOff.status == "done")
            #expect(tornOff.exit == RunExitJSON(code: 0, message: "stopped by user"))
            #expect(try pullText(knit, tornOff.outputs[0].knitId) == "kept\n")

            let expected = (firstRuns + secondRuns + slowEnded).map { "knit-run-\($0.runId)" }.sorted()
            #expect(scheduler.containerStarts().sorted() == expected)
            #expect(eventually(timeout: 10) { scheduler.containers().isEmpty }, "\(scheduler.containers())")
        }

        /// knit-scheduler takes its stop signals the way knitd does (blocked in every thread, taken by the main
        /// thread with sigwait): SIGTERM, SIGINT and SIGHUP each end the tick in progress and exit 0, removing
        /// the wake-up socket. A signal delivered to any other thread would kill it on the spot (status
        /// 128 + signal) and leave the socket behind, as SIGHUP did before.
        @Test func stopSignalsEndTheSchedulerCleanly() throws {
            let knit = try LiveKnit.instance()
            let socket = InstanceLayout(home: knit.home).schedulerSocket
            for stopSignal in [SIGTERM, SIGINT, SIGHUP] {
                let scheduler = try LiveScheduler(knit)
                defer { scheduler.stop() }
                let process = scheduler.process
                #expect(
                    eventually(timeout: 15) { process.stderrText.contains("knit-scheduler running") },
                    "\(process.stderrText)"
                )
                #expect(FileManager.default.fileExists(atPath: socket))
                // Let the driver's thread get into its wait, where most signals find it.
                usleep(300_000)
                process.signal(stopSignal)
                #expect(process.wait(timeout: 5), "signal \(stopSignal): still running")
                #expect(process.exitStatus == 0, "signal \(stopSignal): \(process.stderrText)")
                #expect(process.stderrText.contains("knit-scheduler stopped"), "signal \(stopSignal)")
                #expect(!FileManager.default.fileExists(atPath: socket), "signal \(stopSignal): socket left behind")
            }
        }
    }
}
