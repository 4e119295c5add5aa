import ArgumentParser
import KnitClient
import KnitCore

struct RunStop: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop a Run.",
        discussion: """
            Without --fail the Run is torn off: it ends done (exit 0 "stopped by user") and what its outputs \
            hold so far flows downstream. With --fail it is aborted: it ends failed (exit 253). Prints the \
            Run Detail as JSON.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(name: [.customShort("x"), .customLong("fail")], help: "Abort the Run: it ends failed.")
    var fail = false

    @Argument(help: ArgumentHelp("The Run to stop.", valueName: "RUN_ID"))
    var runId: String

    func run() throws {
        try reportingErrors { () throws(KnitClientError) in
            let client = try global.apiClient()
            let reply = fail ? try client.abortRun(runId: runId) : try client.tearOffRun(runId: runId)
            Console.output(reply.json.rendered(indent: 4) + "\n")
        }
    }
}
