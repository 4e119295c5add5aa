import ArgumentParser
import KnitClient
import KnitCore
import KnitSystem

struct DataPush: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Upload directories as new Data.",
        discussion: """
            Each DIR becomes one Data, tagged with the -t tags, the knitenv tags and, with --name, \
            name:<basename of DIR>. Its Data Detail is printed as JSON on stdout. A DIR that does not exist \
            is skipped with a message on stderr. The archive goes in the server's first format (Knit's: \
            tar+zstd); --format chooses another.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(
        name: [.customShort("t"), .customLong("tag")],
        help: ArgumentHelp(
            "Tag for the new Data (repeatable). Keys starting with knit# are reserved.",
            valueName: "KEY:VALUE"
        )
    )
    var tags: [String] = []

    @Flag(name: [.customShort("n"), .customLong("name")], help: "Also tag each Data with name:<basename of DIR>.")
    var name = false

    @Flag(
        name: [.customShort("L"), .customLong("dereference")],
        help: "Follow symlinks and upload what they point to."
    )
    var dereference = false

    @Option(help: FormatOption.help("of the upload"))
    var format = "auto"

    @Argument(help: ArgumentHelp("Directories to upload.", valueName: "DIR"))
    var directories: [String]

    func validate() throws {
        _ = try parseTags(tags, flag: "-t")
        _ = try FormatOption.parse(format)
        if directories.isEmpty { throw ValidationError("give at least one DIR") }
    }

    func run() throws {
        let wire = try FormatOption.parse(format).format
        let userTags = try parseTags(tags, flag: "-t")
        try reportingErrors { () throws(KnitClientError) in
            let client = try global.apiClient()
            let envTags = try global.knitenv().tags
            for directory in directories {
                guard isDirectory(directory) else {
                    Console.error("[knit data push] skip \(directory): no such directory")
                    continue
                }
                var all = userTags + envTags
                if name { all.append(Tag(key: "name", value: baseName(directory))) }
                let bar = ProgressBar.make("[knit data push] \(directory)")
                let reply = try client.pushData(
                    directory: directory,
                    tags: all,
                    dereference: dereference,
                    format: wire,
                    progress: bar.map { $0.update }
                )
                bar?.finish()
                Console.output(reply.json.rendered(indent: 4) + "\n")
            }
        }
    }
}
