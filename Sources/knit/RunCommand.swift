import ArgumentParser

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Find, show, stop, retry and delete Runs.",
        subcommands: [RunFind.self, RunShow.self, RunStop.self, RunRetry.self, RunRemove.self]
    )
}
