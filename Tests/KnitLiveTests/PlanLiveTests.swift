import Foundation
import KnitCore
import KnitTesting
import Testing

extension Live {
    /// Plans registered, found and changed with the real `knit` CLI through nginx, TLS and knitd.
    @Suite(.knitInstance())
    struct PlanLive {
        static func decodePlan(_ data: Data, sourceLocation: SourceLocation = #_sourceLocation) throws -> PlanDetailJSON
        {
            do { return try jsonDecoder.decode(PlanDetailJSON.self, from: data) } catch {
                Issue.record(
                    "not a Plan Detail: \(String(decoding: data.prefix(500), as: UTF8.self))",
                    sourceLocation: sourceLocation
                )
                throw error
            }
        }

        @Test func applyShowFindAndChange() throws {
            let knit = try LiveKnit.instance()
            let planFile = knit.packageRoot + "/examples/quickstart/plan.yaml"

            let applied = knit.runKnit(["plan", "apply", planFile])
            try #require(applied.status == 0, "knit plan apply: \(applied.stderr)")
            #expect(applied.stdoutText.contains("\n    \"planId\""), "Plan Detail is printed with 4-space indent")
            let plan = try Self.decodePlan(applied.stdout)
            #expect(plan.image == "localhost/knit-quickstart:1")
            #expect(plan.inputs.map(\.path) == ["/in/data"])
            #expect(plan.resources == ["cpu": "500m", "memory": "64Mi"])
            #expect(plan.active)

            // Applying it again names the existing plan.
            let again = knit.runKnit(["plan", "apply", planFile])
            #expect(again.status != 0)
            #expect(again.stderr.contains("409"), "\(again.stderr)")
            #expect(again.stderr.contains("see: \(plan.planId)"), "\(again.stderr)")

            let found = knit.runKnit(["plan", "find", "--in-tag", "kind:words"])
            try #require(found.status == 0, "knit plan find: \(found.stderr)")
            let plans = try jsonDecoder.decode([PlanDetailJSON].self, from: found.stdout)
            #expect(plans.map(\.planId) == [plan.planId])
            let none = knit.runKnit(["plan", "find", "-i", "kind:count"])
            #expect(none.status == 0)
            #expect(try jsonDecoder.decode([PlanDetailJSON].self, from: none.stdout).isEmpty)
            let byImage = knit.runKnit(["plan", "find", "--image", "localhost/knit-quickstart", "--active", "yes"])
            #expect(try jsonDecoder.decode([PlanDetailJSON].self, from: byImage.stdout).map(\.planId) == [plan.planId])

            let shown = knit.runKnit(["plan", "show", plan.planId])
            try #require(shown.status == 0, "knit plan show: \(shown.stderr)")
            #expect(try Self.decodePlan(shown.stdout) == plan)
            let missing = knit.runKnit(["plan", "show", "no-such-plan"])
            #expect(missing.status != 0)
            #expect(missing.stderr.contains("404"))

            let inactive = knit.runKnit(["plan", "active", "no", plan.planId])
            try #require(inactive.status == 0, "knit plan active no: \(inactive.stderr)")
            #expect(try Self.decodePlan(inactive.stdout).active == false)
            let onlyInactive = knit.runKnit(["plan", "find", "--active", "false"])
            #expect(
                try jsonDecoder.decode([PlanDetailJSON].self, from: onlyInactive.stdout).map(\.planId) == [plan.planId]
            )

            let resource = knit.runKnit(["plan", "resource", "--set", "cpu=2", plan.planId])
            try #require(resource.status == 0, "knit plan resource: \(resource.stderr)")
            #expect(try Self.decodePlan(resource.stdout).resources == ["cpu": "2", "memory": "64Mi"])
            let nothing = knit.runKnit(["plan", "resource", plan.planId])
            #expect(nothing.status == 0)
            #expect(nothing.stderr.contains("Nothing to do."))
            #expect(nothing.stdout.isEmpty)

            let annotated = knit.runKnit(["plan", "annotate", "--add", "owner=alice", plan.planId])
            try #require(annotated.status == 0, "knit plan annotate: \(annotated.stderr)")
            #expect(try Self.decodePlan(annotated.stdout).annotations == ["owner=alice"])

            let account = knit.runKnit(["plan", "serviceaccount", "--set", "trainer", plan.planId])
            try #require(account.status == 0, "knit plan serviceaccount: \(account.stderr)")
            #expect(try Self.decodePlan(account.stdout).serviceAccount == "trainer")
            #expect(knit.runKnit(["plan", "serviceaccount", plan.planId]).status != 0)

            // A reader sees plans but may not change them.
            let readerShow = knit.runKnit(["plan", "show", plan.planId], user: "rita")
            #expect(readerShow.status == 0, "\(readerShow.stderr)")
            let readerChange = knit.runKnit(["plan", "active", "yes", plan.planId], user: "rita")
            #expect(readerChange.status != 0)
            #expect(readerChange.stderr.contains("403"), "\(readerChange.stderr)")
        }

        @Test func badPlanFileIsReportedAtLineAndColumn() throws {
            let knit = try LiveKnit.instance()
            let dir = try makeScratchDirectory(knit, "badplan")
            let path = dir + "/bad.yaml"
            try """
            image: "repo/train:v1"
            inputs:
              - path: "in/data"
                tags: ["kind:words"]
            outputs:
              - path: "/out"
                tags: ["knit#id:x"]
            """.write(toFile: path, atomically: true, encoding: .utf8)
            let result = knit.runKnit(["plan", "apply", path])
            #expect(result.status != 0)
            #expect(result.stdout.isEmpty)
            #expect(result.stderr.contains(path + ":3:"), "\(result.stderr)")
            #expect(result.stderr.contains("error: inputs[0].path"), "\(result.stderr)")
            #expect(result.stderr.contains(path + ":7:"), "\(result.stderr)")

            try "image: [unclosed\n".write(toFile: path, atomically: true, encoding: .utf8)
            let syntax = knit.runKnit(["plan", "apply", path])
            #expect(syntax.status != 0)
            #expect(syntax.stderr.contains(path + ":"), "\(syntax.stderr)")
            #expect(syntax.stderr.contains("error:"), "\(syntax.stderr)")
        }
    }
}
