import ArgumentParser
import KnitClient
import KnitCore

struct DataTag: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tag",
        abstract: "Add and remove tags of a Data.",
        discussion: """
            One request: removals (--remove-key, then --remove) are applied before additions. Removing an \
            absent tag or adding a present one is not an error. The Data Detail after the change is printed \
            as JSON on stdout.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Tag to add (repeatable).", valueName: "KEY:VALUE"))
    var add: [String] = []

    @Option(help: ArgumentHelp("Tag to remove (repeatable).", valueName: "KEY:VALUE"))
    var remove: [String] = []

    @Option(
        name: .customLong("remove-key"),
        help: ArgumentHelp("Remove every tag with this key (repeatable).", valueName: "KEY")
    )
    var removeKey: [String] = []

    @Argument(help: ArgumentHelp("The Data to change.", valueName: "KNIT_ID"))
    var knitId: String

    func validate() throws {
        _ = try parseTags(add, flag: "--add")
        _ = try parseTags(remove, flag: "--remove")
        for key in removeKey where key.hasPrefix(SystemTag.prefix) || key.isEmpty {
            throw ValidationError("--remove-key: '\(key)' is not a key you may remove")
        }
    }

    func run() throws {
        let change = TagChangeJSON(
            add: try parseTags(add, flag: "--add"),
            remove: try parseTags(remove, flag: "--remove"),
            removeKey: removeKey
        )
        try reportingErrors { () throws(KnitClientError) in
            let reply = try global.apiClient().updateTags(knitId: knitId, change: change)
            Console.output(reply.json.rendered(indent: 4) + "\n")
        }
    }
}
