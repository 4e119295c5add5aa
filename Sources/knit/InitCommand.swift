import ArgumentParser
import KnitClient

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Store a knitprofile handout and make the current directory use it.",
        discussion: """
            Reads KNIT_PROFILE_FILE (apiRoot, cert.ca, token), checks it, saves it in the profile store \
            under --profile (default: the current directory's absolute path) and writes ./.knitprofile \
            naming that profile.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The knitprofile handout from your administrator.", valueName: "KNIT_PROFILE_FILE"))
    var handout: String

    func run() throws {
        try reportingErrors { () throws(KnitClientError) in
            let profile = try KnitProfile.loadHandout(path: handout)
            let name = global.profile != nil ? global.profile! : try ProfileResolution.currentDirectory()
            try global.store.save(profile, as: name)
            try ProfileResolution.writeProjectFile(profileName: name, in: ".")
            Console.error("[knit init] profile '\(name)' saved in \(global.store.path); ./.knitprofile uses it")
        }
    }
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version of knit.")

    @OptionGroup var global: GlobalOptions

    func run() { Console.output("knit \(knitClientVersion)\n") }
}
