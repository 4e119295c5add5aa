import ArgumentParser
import KnitClient
import KnitCore

struct RunRetry: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Run a finished Run again.",
        discussion: """
            Only a done or failed Run of a plan with an image whose outputs no other Run uses. Its outputs and \
            log are replaced by new Data (new knitIds; the old ones are deleted) and it waits to run again. \
            Prints the Run Detail as JSON.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The Run to retry.", valueName: "RUN_ID"))
    var runId: String

    func run() throws {
        try reportingErrors { () throws(KnitClientError) in
            let reply = try global.apiClient().retryRun(runId: runId)
            Console.output(reply.json.rendered(indent: 4) + "\n")
        }
    }
}
