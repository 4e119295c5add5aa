import ArgumentParser
import KnitClient

struct RunRemove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Delete a finished Run and its outputs.",
        discussion: """
            Only a done or failed Run whose outputs no other Run uses. Its outputs and log are deleted and the \
            Run is no longer shown; its combination of inputs never runs again. Deleting the Run of an upload \
            deletes the uploaded Data. Irreversible. Prints nothing on success.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The Run to delete.", valueName: "RUN_ID"))
    var runId: String

    func run() throws {
        try reportingErrors { () throws(KnitClientError) in
            try global.apiClient().removeRun(runId: runId)
        }
    }
}
