import ArgumentParser

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Find and show Runs.",
        subcommands: [RunFind.self, RunShow.self]
    )
}
