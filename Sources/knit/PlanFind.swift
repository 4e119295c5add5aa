import ArgumentParser
import KnitClient
import KnitCore

struct PlanFind: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "find",
        abstract: "Find Plans by state, image and tags.",
        discussion: """
            Prints a JSON array of Plan Detail ordered by Plan Id. All filters must hold. --image NAME matches \
            every tag of the image, NAME:TAG only that one (a registry's host:port is not a tag). --in-tag: some \
            input asks for all the given tags (knit#id / knit#timestamp find plans pinned to a Data). \
            --out-tag: some output, or the log, carries all the given tags. Without filters the pseudo plan \
            knit#uploaded is listed too.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(
        help: ArgumentHelp(
            "both: any Plan; yes/true: only active Plans; no/false: only inactive ones.",
            valueName: "both|yes|true|no|false"
        )
    )
    var active: String = "both"

    @Option(help: ArgumentHelp("Image the Plan runs.", valueName: "IMAGE[:TAG]"))
    var image: String?

    @Option(
        name: [.customShort("i"), .customLong("in-tag")],
        help: ArgumentHelp(
            "Tag an input of the Plan asks for (repeatable).",
            valueName: "KEY:VALUE"
        )
    )
    var inTags: [String] = []

    @Option(
        name: [.customShort("o"), .customLong("out-tag")],
        help: ArgumentHelp(
            "Tag an output (or the log) of the Plan carries (repeatable).",
            valueName: "KEY:VALUE"
        )
    )
    var outTags: [String] = []

    @Option(help: ArgumentHelp("Only those created by this user (Knit's addition).", valueName: "NAME"))
    var creator: String?

    /// nil for both.
    static func activeFilter(_ flag: String) -> Bool?? {
        switch flag {
        case "both": return .some(nil)
        case "yes", "true": return .some(true)
        case "no", "false": return .some(false)
        default: return nil
        }
    }

    func validate() throws {
        if Self.activeFilter(active) == nil {
            throw ValidationError("--active must be one of both, yes, true, no, false (not '\(active)')")
        }
        _ = try parseTags(inTags, flag: "--in-tag", allowSystem: true)
        _ = try parseTags(outTags, flag: "--out-tag")
        if let image, image.isEmpty { throw ValidationError("--image must not be empty") }
        if let creator, creator.isEmpty { throw ValidationError("--creator must not be empty") }
    }

    func run() throws {
        let inTags = try parseTags(inTags, flag: "--in-tag", allowSystem: true)
        let outTags = try parseTags(outTags, flag: "--out-tag")
        let active = Self.activeFilter(active) ?? nil
        try reportingErrors { () throws(KnitClientError) in
            let replies = try global.apiClient().findPlans(
                active: active,
                image: image,
                inTags: inTags,
                outTags: outTags,
                creator: creator
            )
            Console.output(JSONValue.array(replies.map(\.json)).rendered(indent: 4) + "\n")
        }
    }
}
