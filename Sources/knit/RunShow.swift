import ArgumentParser
import KnitClient
import KnitCore

struct RunShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print a Run's detail as JSON, or with --log its log.",
        discussion:
            "With --log the Run's stdout and stderr are printed as they were written; add -f to follow a running Run until it finishes."
    )

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Print the Run's log instead of its detail.")
    var log = false

    @Flag(name: [.short, .long], help: "With --log: keep printing while the Run runs.")
    var follow = false

    @Argument(help: ArgumentHelp("The Run to show.", valueName: "RUN_ID"))
    var runId: String

    func validate() throws {
        if follow && !log { throw ValidationError("--follow needs --log") }
    }

    func run() throws {
        if log {
            try reportingErrors { () throws(KnitClientError) in
                try global.apiClient().runLog(runId: runId, follow: follow) { bytes in try Console.writeAll(1, bytes) }
            }
            return
        }
        try reportingErrors { () throws(KnitClientError) in
            let reply = try global.apiClient().showRun(runId: runId)
            Console.output(reply.json.rendered(indent: 4) + "\n")
        }
    }
}
