import ArgumentParser
import KnitClient
import KnitCore

struct RunFind: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "find",
        abstract: "Find Runs by plan, input, output, status and update time.",
        discussion: """
            Prints a JSON array of Run Detail ordered by update time. A repeated option matches any of its \
            values; different options must all hold. --since takes 2024-01-02, 2024-01-02 15, \
            2024-01-02T15:04, 2024-01-02T15:04:05.999+09:00, …; without an offset it is local time. --duration \
            (Go syntax: 90m, 1h30m, 2.5h) needs --since.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(
        name: [.customShort("p"), .customLong("planid")],
        help: ArgumentHelp("Plan the Run follows (repeatable).", valueName: "PLAN_ID")
    )
    var planIds: [String] = []

    @Option(
        name: [.customShort("i"), .customLong("in-knitid")],
        help: ArgumentHelp("Data assigned to an input of the Run (repeatable).", valueName: "KNIT_ID")
    )
    var inKnitIds: [String] = []

    @Option(
        name: [.customShort("o"), .customLong("out-knitid")],
        help: ArgumentHelp("Data the Run makes, as an output or its log (repeatable).", valueName: "KNIT_ID")
    )
    var outKnitIds: [String] = []

    @Option(
        name: [.customShort("s"), .customLong("status")],
        help: ArgumentHelp(
            "Status of the Run (repeatable): deactivated, waiting, ready, starting, running, completing, "
                + "aborting, done, failed.",
            valueName: "STATUS"
        )
    )
    var statuses: [String] = []

    @Option(help: ArgumentHelp("Only those created by this user (Knit's addition).", valueName: "NAME"))
    var creator: String?

    @Option(help: ArgumentHelp("Only Runs updated at or after this time.", valueName: "TIME"))
    var since: String?

    @Option(help: ArgumentHelp("With --since: only Runs updated before since + duration.", valueName: "DURATION"))
    var duration: String?

    func validate() throws {
        if let creator, creator.isEmpty { throw ValidationError("--creator must not be empty") }
        for status in statuses {
            guard let known = RunStatus(rawValue: status), known != .invalidated else {
                let names = RunStatus.allCases.filter { $0 != .invalidated }.map(\.rawValue)
                throw ValidationError("--status: '\(status)' is not one of \(names.joined(separator: ", "))")
            }
        }
        for (flag, values) in [("--planid", planIds), ("--in-knitid", inKnitIds), ("--out-knitid", outKnitIds)] {
            if values.contains(where: { $0.isEmpty || $0.contains(",") }) {
                throw ValidationError("\(flag) takes one id per option (no empty value, no comma)")
            }
        }
        if let since, KnitTime.parseLoose(since, defaultOffsetMinutes: 0) == nil {
            throw ValidationError("--since: '\(since)' is not a time (e.g. 2024-01-02, 2024-01-02T15:04:05+09:00)")
        }
        if let duration {
            guard since != nil else { throw ValidationError("--duration requires --since") }
            guard parseGoDuration(duration) != nil else {
                throw ValidationError("--duration: '\(duration)' is not a duration (e.g. 90m, 1h30m, 2.5h)")
            }
        }
    }

    func run() throws {
        let start = since.flatMap { KnitTime.parseLoose($0, defaultOffsetMinutes: Console.localOffsetMinutes()) }
        try reportingErrors { () throws(KnitClientError) in
            let replies = try global.apiClient().findRuns(
                planIds: planIds,
                inputKnitIds: inKnitIds,
                outputKnitIds: outKnitIds,
                statuses: statuses,
                since: start,
                duration: duration,
                creator: creator
            )
            Console.output(JSONValue.array(replies.map(\.json)).rendered(indent: 4) + "\n")
        }
    }
}
