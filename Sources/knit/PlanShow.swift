import ArgumentParser
import KnitClient

struct PlanShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print a Plan's detail as JSON."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The Plan to show.", valueName: "PLAN_ID"))
    var planId: String

    func run() throws {
        try reportingErrors { () throws(KnitClientError) in
            printPlan(try global.apiClient().showPlan(planId: planId))
        }
    }
}
