import ArgumentParser
import KnitClient
import KnitCore

struct RunShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print a Run's detail as JSON."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The Run to show.", valueName: "RUN_ID"))
    var runId: String

    func run() throws {
        try reportingErrors { () throws(KnitClientError) in
            let record = try global.apiClient().showRun(runId: runId)
            Console.output(record.json.rendered(indent: 4) + "\n")
        }
    }
}
