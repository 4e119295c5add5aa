import ArgumentParser
import KnitClient

struct PlanActive: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "active",
        abstract: "Activate or deactivate a Plan.",
        discussion: """
            An inactive Plan still gets Runs for new Data, but they wait as deactivated until the Plan is \
            active again. Prints the Plan Detail as JSON.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("yes (or true) to activate, no (or false) to deactivate.", valueName: "yes|no"))
    var mode: String

    @Argument(help: ArgumentHelp("The Plan to change.", valueName: "PLAN_ID"))
    var planId: String

    static func isActive(_ mode: String) -> Bool? {
        switch mode {
        case "yes", "true": return true
        case "no", "false": return false
        default: return nil
        }
    }

    func validate() throws {
        if Self.isActive(mode) == nil { throw ValidationError("expected yes or no, not '\(mode)'") }
    }

    func run() throws {
        let active = Self.isActive(mode) ?? true
        try reportingErrors { () throws(KnitClientError) in
            printPlan(try global.apiClient().setPlanActive(planId: planId, active: active))
        }
    }
}
