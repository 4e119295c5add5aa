import ArgumentParser

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Find, show and stop Runs.",
        subcommands: [RunFind.self, RunShow.self, RunStop.self]
    )
}
