import Foundation
import KnitCore
import KnitTesting
import Testing

extension Live {
    /// Pipelines of several plans on real containers: the knit CLI → knitd → projection → knit-scheduler →
    /// podman, and back through `knit data pull`. Every test uses its own tag key, so their plans never see
    /// each other's Data, and its own scheduler (with its own container label).
    @Suite(.knitInstance(), .enabled(if: podmanAvailable))
    struct ChainLive {
        /// push 3 → 3 Runs of stage 1 → 3 of stage 2 → 3 of stage 3; every value went through every stage,
        /// and the lineage (Run inputs/outputs, Data upstream/downstreams) links them one to one.
        @Test func threeStageChainProcessesEveryDataAndRecordsLineage() throws {
            let knit = try LiveKnit.instance()
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            let key = uniqueKey("chain")

            var plans: [PlanDetailJSON] = []
            for stage in 1...3 {
                let from = stage == 1 ? "raw" : "s\(stage - 1)"
                plans.append(
                    try applyPlan(
                        knit,
                        quickstartPlanYAML(
                            script: "echo \"$(cat /in/x/v)-s\(stage)\" > /out/y/v",
                            inputs: [("/in/x", ["\(key):\(from)"])],
                            outputs: [("/out/y", ["\(key):s\(stage)"])]
                        )
                    )
                )
            }
            let values = ["a", "b", "c"]
            let pushed = try values.map { try pushValue(knit, $0, tags: ["\(key):raw"]) }

            let last = try awaitRuns(knit, plan: plans[2].planId, count: 3, timeout: 60, context: scheduler.logTail())
            let first = try awaitRuns(knit, plan: plans[0].planId, count: 3)
            let middle = try awaitRuns(knit, plan: plans[1].planId, count: 3)
            for run in first + middle + last {
                #expect(run.status == "done", "\(run.runId): \(String(describing: run.exit))")
                #expect(run.exit == RunExitJSON(code: 0, message: ""))
                #expect(run.inputs.count == 1 && run.outputs.count == 1)
            }

            for (value, data) in zip(values, pushed) {
                // Follow the value through the Runs: each Run's input is the previous Run's output.
                let r1 = try #require(first.first { $0.inputs.map(\.knitId) == [data.knitId] })
                let r2 = try #require(middle.first { $0.inputs.map(\.knitId) == r1.outputs.map(\.knitId) })
                let r3 = try #require(last.first { $0.inputs.map(\.knitId) == r2.outputs.map(\.knitId) })
                #expect(try pullText(knit, r1.outputs[0].knitId) == "\(value)-s1\n")
                #expect(try pullText(knit, r3.outputs[0].knitId) == "\(value)-s1-s2-s3\n")

                // The same links seen from the Data side (`knit data find -t knit#id:…`).
                #expect(try detail(knit, data.knitId).downstreams.map(\.run.runId) == [r1.runId])
                for (stage, run, next) in [(1, r1, Optional(r2)), (2, r2, Optional(r3)), (3, r3, nil)] {
                    let output = try detail(knit, run.outputs[0].knitId)
                    #expect(output.upstream.run.runId == run.runId)
                    #expect(output.upstream.run.status == "done")
                    #expect(output.upstream.mountpoint?.path == "/out/y")
                    #expect(output.upstream.log == nil)
                    #expect(output.downstreams.map(\.run.runId) == (next.map { [$0.runId] } ?? []))
                    #expect(output.tags.contains(try Tag(parsing: "\(key):s\(stage)")))
                    #expect(output.tags.contains { $0.key == "knit#timestamp" })
                    #expect(!output.tags.contains { $0.key == "knit#transient" })
                }
            }

            // Found by its tag, the last stage's Data are exactly the three outputs of its Runs.
            let found = knit.runKnit(["data", "find", "-t", "\(key):s3"])
            try #require(found.status == 0, "knit data find: \(found.stderr)")
            let finals = try decodeDetails(found.stdout)
            #expect(Set(finals.map(\.knitId)) == Set(last.map { $0.outputs[0].knitId }))
            #expect(Set(finals.map(\.upstream.run.runId)) == Set(last.map(\.runId)))

            // The same chain drawn by `knit data lineage` and `knit plan graph` (the server's graph endpoints).
            let r1 = try #require(first.first { $0.inputs.map(\.knitId) == [pushed[0].knitId] })
            let r2 = try #require(middle.first { $0.inputs.map(\.knitId) == r1.outputs.map(\.knitId) })
            let r3 = try #require(last.first { $0.inputs.map(\.knitId) == r2.outputs.map(\.knitId) })
            let final = r3.outputs[0].knitId
            let whole = knit.runKnit(["data", "lineage", "-n", "all", final])
            try #require(whole.status == 0, "knit data lineage: \(whole.stderr)")
            let dot = whole.stdoutText
            #expect(dot.hasPrefix("digraph"))
            for id in [pushed[0].knitId, r1.runId, r2.runId, r3.runId, final] {
                #expect(dot.contains(id), "the whole upstream lineage names \(id)")
            }
            #expect(!dot.contains(pushed[1].knitId), "another value's Data is not in this lineage")
            let rendered = knit.run("/usr/bin/dot", ["-Tsvg", "-o", "/dev/null"], stdin: Data(dot.utf8))
            #expect(rendered.status == 0, "graphviz rejects the dot text: \(rendered.stderr)")
            let oneStep = knit.runKnit(["data", "lineage", "-u", "-n", "1", final])
            #expect(oneStep.stdoutText.contains(r3.runId) && !oneStep.stdoutText.contains(r1.runId))
            let svg = knit.runKnit(["data", "lineage", "--format", "svg", final])
            #expect(svg.status == 0 && svg.stdoutText.contains("<svg"), "\(svg.stderr)")
            let prov = knit.runKnit(["data", "lineage", "--format", "prov", "-n", "all", final])
            let document = try JSONSerialization.jsonObject(with: prov.stdout) as? [String: Any]
            #expect((document?["activity"] as? [String: Any])?.count == 4, "three stage Runs and the upload")
            let graph = knit.runKnit(["plan", "graph", plans[1].planId])
            #expect(graph.status == 0, "knit plan graph: \(graph.stderr)")
            for plan in plans { #expect(graph.stdoutText.contains(plan.planId)) }
            let unknown = knit.runKnit(["data", "lineage", "no-such-data"])
            #expect(unknown.status != 0 && unknown.stderr.contains("not found"), "\(unknown.stderr)")
        }

        /// A plan with two inputs gets one Run per (a, b) pair, never two: not when a tag is added again,
        /// not when it is removed and re-added (Knitfab bug #64), and new Data make only the new pairs.
        @Test func twoInputPlanRunsEveryCombinationExactlyOnce() throws {
            let knit = try LiveKnit.instance()
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            let key = uniqueKey("pair")
            let plan = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "cat /in/a/v /in/b/v > /out/o/v",
                    inputs: [("/in/a", ["\(key):a"]), ("/in/b", ["\(key):b"])],
                    outputs: [("/out/o", ["\(key):ab"])]
                )
            )
            var a = try ["a1", "a2"].map { try pushValue(knit, $0, tags: ["\(key):a"]) }
            let b = try ["b1", "b2", "b3"].map { try pushValue(knit, $0, tags: ["\(key):b"]) }
            var names: [String: String] = [:]
            for (data, name) in zip(a + b, ["a1", "a2", "b1", "b2", "b3"]) { names[data.knitId] = name }

            /// The (a, b) names of the plan's Runs, with duplicates kept.
            func pairs(_ runs: [RunDetailJSON]) -> [String] {
                runs.map { run in run.inputs.map { names[$0.knitId] ?? "?" }.joined(separator: "×") }.sorted()
            }
            let firstRuns = try awaitRuns(knit, plan: plan.planId, count: 6, context: scheduler.logTail())
            #expect(pairs(firstRuns) == ["a1×b1", "a1×b2", "a1×b3", "a2×b1", "a2×b2", "a2×b3"])
            for run in firstRuns {
                #expect(run.status == "done", "\(String(describing: run.exit))")
                let (x, y) = (names[run.inputs[0].knitId] ?? "?", names[run.inputs[1].knitId] ?? "?")
                #expect(try pullText(knit, run.outputs[0].knitId) == "\(x)\n\(y)\n")
            }

            // Projection happens in the transaction that changes the tags, so a Run that a change would
            // create exists when the CLI returns: counting right after each change is the whole check.
            func tag(_ knitId: String, _ args: [String]) throws {
                let result = knit.runKnit(["data", "tag"] + args + [knitId])
                try #require(result.status == 0, "knit data tag \(args): \(result.stderr)")
            }
            try tag(a[0].knitId, ["--add", "\(key):a"])
            #expect(pairs(findRuns(knit, plans: [plan.planId])).count == 6, "adding a tag it has already")
            try tag(a[0].knitId, ["--remove", "\(key):a"])
            try tag(a[0].knitId, ["--add", "\(key):a"])
            #expect(pairs(findRuns(knit, plans: [plan.planId])).count == 6, "removing and re-adding a tag")
            try tag(b[0].knitId, ["--remove", "\(key):b", "--add", "\(key):b"])
            #expect(pairs(findRuns(knit, plans: [plan.planId])).count == 6, "remove and add in one change")

            // b1 loses its tag: a new a3 pairs with b2 and b3 only; b1 regaining it adds just a3×b1.
            try tag(b[0].knitId, ["--remove", "\(key):b"])
            let a3 = try pushValue(knit, "a3", tags: ["\(key):a"])
            names[a3.knitId] = "a3"
            a.append(a3)
            #expect(pairs(findRuns(knit, plans: [plan.planId])).filter { $0.hasPrefix("a3") } == ["a3×b2", "a3×b3"])
            try tag(b[0].knitId, ["--add", "\(key):b"])
            let allRuns = try awaitRuns(knit, plan: plan.planId, count: 9, context: scheduler.logTail())
            let expected = ["a1", "a2", "a3"].flatMap { x in ["b1", "b2", "b3"].map { "\(x)×\($0)" } }
            #expect(pairs(allRuns) == expected)
            #expect(allRuns.allSatisfy { $0.status == "done" })
            // Every Run was started once: one container start per Run, none for a Run twice.
            #expect(scheduler.containerStarts().sorted() == allRuns.map { "knit-run-\($0.runId)" }.sorted())
        }

        /// Stopping and parking Runs with a running scheduler: abort (failed, 253), tear-off (done, what was
        /// written is the output and flows downstream), a followed log that streams and ends with the Run,
        /// and a deactivated plan whose waiting Runs stay put until it is activated.
        @Test func abortTearOffDeactivateAndFollow() throws {
            let knit = try LiveKnit.instance()
            let key = uniqueKey("ctl")

            // No scheduler yet, so the gate plan's Runs are waiting; deactivating parks them.
            let gate = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "cat /in/x/v > /out/y/v",
                    inputs: [("/in/x", ["\(key):gate"])],
                    outputs: [("/out/y", ["\(key):gated"])]
                )
            )
            let gateData = try ["g1", "g2", "g3"].map { try pushValue(knit, $0, tags: ["\(key):gate"]) }
            #expect(findRuns(knit, plans: [gate.planId]).map(\.status) == ["waiting", "waiting", "waiting"])
            let off = knit.runKnit(["plan", "active", "no", gate.planId])
            try #require(off.status == 0, "knit plan active no: \(off.stderr)")
            #expect(
                findRuns(knit, plans: [gate.planId]).map(\.status) == ["deactivated", "deactivated", "deactivated"]
            )
            // Aborting a parked Run ends it at once: it never had a container to stop.
            let parked = try #require(
                findRuns(knit, plans: [gate.planId]).first { $0.inputs[0].knitId == gateData[2].knitId }
            )
            let abortParked = knit.runKnit(["run", "stop", "--fail", parked.runId])
            try #require(abortParked.status == 0, "knit run stop --fail (deactivated): \(abortParked.stderr)")
            let parkedEnd = try showRun(knit, parked.runId)
            #expect(parkedEnd.status == "failed")
            #expect(parkedEnd.exit == RunExitJSON(code: 253, message: "aborted by user"))

            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            // The trap makes the shell (pid 1, which ignores an untrapped SIGTERM) end at once on stop.
            let long = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script:
                        "trap 'exit 143' TERM; echo partial > /out/y/v; echo started; "
                        + "sleep 30 & wait; echo late > /out/y/late",
                    inputs: [("/in/x", ["\(key):in"])],
                    outputs: [("/out/y", ["\(key):mid"])],
                    log: ["\(key):log"]
                )
            )
            let down = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "echo \"down:$(cat /in/x/v)\" > /out/y/v",
                    inputs: [("/in/x", ["\(key):mid"])],
                    outputs: [("/out/y", ["\(key):down"])]
                )
            )
            let inputs = try ["x1", "x2"].map { try pushValue(knit, $0, tags: ["\(key):in"]) }
            let running = try awaitRuns(
                knit,
                plan: long.planId,
                count: 2,
                in: ["running"],
                context: scheduler.logTail()
            )
            let aborted = try #require(running.first { $0.inputs[0].knitId == inputs[0].knitId })
            let tornOff = try #require(running.first { $0.inputs[0].knitId == inputs[1].knitId })
            // Both have written their partial output once their log says so.
            let bothStarted = eventually(timeout: 15) {
                runLog(knit, aborted.runId).contains("started") && runLog(knit, tornOff.runId).contains("started")
            }
            try #require(bothStarted, "logs: \(runLog(knit, aborted.runId)) / \(runLog(knit, tornOff.runId))")

            // Follow the torn-off Run's log: it prints what is there while the Run runs, and ends with it.
            let follower = try knit.background(
                knit.knitPath,
                ["run", "show", "--log", "-f", tornOff.runId],
                cwd: knit.projectDirectory("alice"),
                env: ["HOME": knit.userHome("alice")],
                name: "follow"
            )
            let streaming = eventually(timeout: 15) { follower.stdoutText.contains("started") }
            #expect(streaming, "follower printed: \(follower.stdoutText) \(follower.stderrText)")
            #expect(follower.isRunning, "the follower ended while the Run still runs")

            let abort = knit.runKnit(["run", "stop", "--fail", aborted.runId])
            try #require(abort.status == 0, "knit run stop --fail: \(abort.stderr)")
            let tearOff = knit.runKnit(["run", "stop", tornOff.runId])
            try #require(tearOff.status == 0, "knit run stop: \(tearOff.stderr)")
            let stopped = try awaitRuns(knit, plan: long.planId, count: 2, context: scheduler.logTail())
            let abortedEnd = try #require(stopped.first { $0.runId == aborted.runId })
            let tornOffEnd = try #require(stopped.first { $0.runId == tornOff.runId })
            #expect(abortedEnd.status == "failed")
            #expect(abortedEnd.exit == RunExitJSON(code: 253, message: "aborted by user"))
            #expect(tornOffEnd.status == "done")
            #expect(tornOffEnd.exit == RunExitJSON(code: 0, message: "stopped by user"))

            #expect(follower.wait(timeout: 15), "knit run show --log -f did not end with the Run")
            #expect(follower.exitStatus == 0, "\(follower.stderrText)")
            #expect(follower.stdoutText.contains("started") && !follower.stdoutText.contains("late"))

            // The aborted Run's output is failed and goes nowhere; the torn-off one's is what it wrote so far.
            let abortedOutput = try detail(knit, abortedEnd.outputs[0].knitId)
            #expect(abortedOutput.tags.contains(try Tag(parsing: "knit#transient:failed")))
            #expect(abortedOutput.nomination.isEmpty)
            #expect(try pulledFiles(knit, tornOffEnd.outputs[0].knitId) == ["v"])
            #expect(try pullText(knit, tornOffEnd.outputs[0].knitId) == "partial\n")
            let downRuns = try awaitRuns(knit, plan: down.planId, count: 1, context: scheduler.logTail())
            #expect(downRuns[0].inputs.map(\.knitId) == tornOffEnd.outputs.map(\.knitId))
            #expect(downRuns[0].status == "done")
            #expect(try pullText(knit, downRuns[0].outputs[0].knitId) == "down:partial\n")

            // Meanwhile the scheduler started, stopped and finished Runs created after the gate's, and it
            // considers every startable Run on each tick: the deactivated ones were passed over, not missed.
            #expect(
                findRuns(knit, plans: [gate.planId]).map(\.status).sorted() == ["deactivated", "deactivated", "failed"]
            )
            let started = Set(scheduler.containerStarts())
            #expect(findRuns(knit, plans: [gate.planId]).allSatisfy { !started.contains("knit-run-\($0.runId)") })
            let on = knit.runKnit(["plan", "active", "yes", gate.planId])
            try #require(on.status == 0, "knit plan active yes: \(on.stderr)")
            let gateRuns = try awaitRuns(knit, plan: gate.planId, count: 3, context: scheduler.logTail())
            #expect(gateRuns.first { $0.runId == parked.runId }?.status == "failed", "an aborted Run stays failed")
            #expect(!scheduler.containerStarts().contains("knit-run-\(parked.runId)"))
            for (data, value) in zip(gateData.prefix(2), ["g1", "g2"]) {
                let run = try #require(gateRuns.first { $0.inputs[0].knitId == data.knitId })
                #expect(run.status == "done")
                #expect(try pullText(knit, run.outputs[0].knitId) == "\(value)\n")
            }
        }
    }
}
