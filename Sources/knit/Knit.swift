import ArgumentParser

@main
struct Knit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "knit",
        abstract: "Push, find and pull Data on a Knit (or Knitfab) server.",
        subcommands: [
            InitCommand.self, VersionCommand.self, DataCommand.self, PlanCommand.self, RunCommand.self,
            ImageCommand.self,
        ]
    )
}

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Upload, download, find and tag Data.",
        subcommands: [DataPush.self, DataPull.self, DataFind.self, DataTag.self, DataLineage.self]
    )
}
