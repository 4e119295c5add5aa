import ArgumentParser
import KnitClient

struct PlanServiceAccount: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serviceaccount",
        abstract: "Set or unset the service account a Plan's Runs use.",
        discussion: "Exactly one of --set and --unset. Prints the Plan Detail as JSON."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Service account name (at most 63 characters).", valueName: "NAME"))
    var set: String?

    @Flag(help: "Remove the service account.")
    var unset = false

    @Argument(help: ArgumentHelp("The Plan to change.", valueName: "PLAN_ID"))
    var planId: String

    func validate() throws {
        guard (set != nil) != unset else { throw ValidationError("give exactly one of --set NAME and --unset") }
        if let set, set.isEmpty { throw ValidationError("--set: the name must not be empty") }
    }

    func run() throws {
        try reportingErrors { () throws(KnitClientError) in
            printPlan(try global.apiClient().setPlanServiceAccount(planId: planId, name: unset ? nil : set))
        }
    }
}
