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
