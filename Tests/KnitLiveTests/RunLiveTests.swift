import Foundation
import KnitCore
import KnitTesting
import Testing

extension Live {
    /// Runs created by projection and read with the real `knit` CLI through nginx, TLS and knitd. No
    /// scheduler runs here, so the Run stays `waiting`.
    @Suite(.knitInstance())
    struct RunLive {
        @Test func pushThenApplyGivesAWaitingRunThatFindAndShowPrint() throws {
            let knit = try LiveKnit.instance()
            let dir = try makeScratchDirectory(knit, "words")
            try "one two three\n".write(toFile: dir + "/text.txt", atomically: true, encoding: .utf8)
            let data = try push(knit, dir, tags: ["kind:words"])

            let applied = knit.runKnit(["plan", "apply", knit.packageRoot + "/examples/quickstart/plan.yaml"])
            try #require(applied.status == 0, "knit plan apply: \(applied.stderr)")
            let plan = try jsonDecoder.decode(PlanDetailJSON.self, from: applied.stdout)

            let found = knit.runKnit(["run", "find", "-p", plan.planId])
            try #require(found.status == 0, "knit run find: \(found.stderr)")
            #expect(found.stdoutText.contains("\n        \"runId\""), "Run Detail is printed with 4-space indent")
            let runs = try jsonDecoder.decode([RunDetailJSON].self, from: found.stdout)
            try #require(runs.count == 1)
            let run = runs[0]
            #expect(run.status == "waiting")
            #expect(run.plan.planId == plan.planId)
            #expect(
                run.inputs == [
                    RunAssignmentJSON(path: "/in/data", tags: [try Tag(parsing: "kind:words")], knitId: data.knitId)
                ]
            )
            #expect(run.outputs.map(\.path) == ["/out/count"])
            #expect(run.log?.tags == TagSet([try Tag(parsing: "kind:count-log")]))

            let shown = knit.runKnit(["run", "show", run.runId])
            try #require(shown.status == 0, "knit run show: \(shown.stderr)")
            #expect(try jsonDecoder.decode(RunDetailJSON.self, from: shown.stdout) == run)
            #expect(shown.stdoutText.hasPrefix("{\n    \"runId\""))

            // Filters: by input, output, status; none of them matches something else.
            let byInput = knit.runKnit(["run", "find", "-i", data.knitId, "-s", "waiting"])
            #expect(try jsonDecoder.decode([RunDetailJSON].self, from: byInput.stdout).map(\.runId) == [run.runId])
            let byOutput = knit.runKnit(["run", "find", "--out-knitid", run.outputs[0].knitId])
            #expect(try jsonDecoder.decode([RunDetailJSON].self, from: byOutput.stdout).map(\.runId) == [run.runId])
            let running = knit.runKnit(["run", "find", "-p", plan.planId, "-s", "running"])
            #expect(try jsonDecoder.decode([RunDetailJSON].self, from: running.stdout).isEmpty)

            // The output exists already, processing; the input lists the Run downstream.
            let output = try detail(knit, run.outputs[0].knitId)
            #expect(output.tags.contains(try Tag(parsing: "knit#transient:processing")))
            #expect(output.tags.contains(try Tag(parsing: "kind:count")))
            let input = try detail(knit, data.knitId)
            #expect(input.downstreams.map(\.run.runId) == [run.runId])
            #expect(input.nomination.map(\.plan.planId) == [plan.planId])

            let missing = knit.runKnit(["run", "show", "no-such-run"])
            #expect(missing.status != 0)
            #expect(missing.stderr.contains("404"), "\(missing.stderr)")
            let invalid = knit.runKnit(["run", "find", "-s", "invalidated"])
            #expect(invalid.status != 0)
            #expect(invalid.stderr.contains("--status"), "\(invalid.stderr)")
        }
    }
}
