import ArgumentParser
import KnitClient
import KnitCore

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Register, find and change Plans.",
        subcommands: [
            PlanApply.self, PlanShow.self, PlanFind.self, PlanActive.self, PlanResource.self, PlanAnnotate.self,
            PlanServiceAccount.self, PlanTemplateCommand.self, PlanGraph.self,
        ]
    )
}

/// Prints one Plan Detail as 4-space JSON on stdout.
func printPlan(_ record: PlanRecord) {
    Console.output(record.json.rendered(indent: 4) + "\n")
}
