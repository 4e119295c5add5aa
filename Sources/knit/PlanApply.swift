import ArgumentParser
import KnitClient
import KnitCore

struct PlanApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Register the Plan a plan file describes.",
        discussion: """
            The file is checked here first with the server's rules; every problem is reported as \
            FILE:LINE:COL: error: … and nothing is sent. The registered Plan Detail is printed as JSON on \
            stdout. An equivalent Plan that exists already is a 409 naming it (see: PLAN_ID).
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The plan file (YAML).", valueName: "PLAN_FILE"))
    var planFile: String

    func run() throws {
        let spec: PlanSpecJSON
        do { spec = try PlanFile.load(path: planFile) } catch {
            Console.error(error.description)
            throw ExitCode.failure
        }
        try reportingErrors { () throws(KnitClientError) in
            printPlan(try global.apiClient().applyPlan(spec))
        }
    }
}
