import ArgumentParser
import KnitClient
import KnitCore

struct DataFind: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "find",
        abstract: "Find Data having all the given tags.",
        discussion: """
            Prints a JSON array of Data Detail. -t knit#id:ID finds one Data by its Knit Id. --since takes \
            2024-01-02, 2024-01-02 15, 2024-01-02T15:04, 2024-01-02T15:04:05.999+09:00, …; without an offset \
            it is local time. --duration (Go syntax: 90m, 1h30m, 2.5h) needs --since.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(
        name: [.customShort("t"), .customLong("tag")],
        help: ArgumentHelp(
            "Tag the Data must have (repeatable).",
            valueName: "KEY:VALUE"
        )
    )
    var tags: [String] = []

    @Option(
        help: ArgumentHelp(
            "both: any Data; yes/true: only Data being made or failed (knit#transient); no/false: only the rest.",
            valueName: "both|yes|true|no|false"
        )
    )
    var transient: String = "both"

    @Option(help: ArgumentHelp("Only those created by this user (Knit's addition).", valueName: "NAME"))
    var creator: String?

    @Option(help: ArgumentHelp("Only Data updated at or after this time.", valueName: "TIME"))
    var since: String?

    @Option(help: ArgumentHelp("With --since: only Data updated before since + duration.", valueName: "DURATION"))
    var duration: String?

    func validate() throws {
        if let creator, creator.isEmpty { throw ValidationError("--creator must not be empty") }
        _ = try parseTags(tags, flag: "-t", allowSystem: true)
        if TransientFilter(flag: transient) == nil {
            throw ValidationError("--transient must be one of both, yes, true, no, false (not '\(transient)')")
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
        let tags = try parseTags(tags, flag: "-t", allowSystem: true)
        let start = since.flatMap { KnitTime.parseLoose($0, defaultOffsetMinutes: Console.localOffsetMinutes()) }
        let filter = TransientFilter(flag: transient) ?? .both
        try reportingErrors { () throws(KnitClientError) in
            let client = try global.apiClient()
            let replies = try client.findData(
                tags: tags,
                since: start,
                duration: duration,
                transient: filter,
                creator: creator
            )
            Console.output(JSONValue.array(replies.map(\.json)).rendered(indent: 4) + "\n")
        }
    }
}
