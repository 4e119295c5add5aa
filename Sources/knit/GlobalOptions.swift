import ArgumentParser
import KnitClient
import KnitCore

/// Flags every command accepts, as Knitfab's CLI does.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .customLong("profile"),
        help: ArgumentHelp(
            "Profile to use (default: named by the nearest .knitprofile, else the current directory's path).",
            valueName: "NAME"
        )
    )
    var profile: String?

    @Option(
        name: .customLong("profile-store"),
        help: ArgumentHelp(
            "Profile store file (default: ~/.knit/profile).",
            valueName: "PATH"
        )
    )
    var profileStore: String?

    @Option(
        name: .customLong("env"),
        help: ArgumentHelp(
            "knitenv file (default: the nearest file named knitenv at or above the current directory).",
            valueName: "PATH"
        )
    )
    var env: String?

    var store: ProfileStore { ProfileStore(path: profileStore ?? ProfileStore.defaultPath) }

    func apiClient() throws(KnitClientError) -> KnitAPIClient {
        let name = try ProfileResolution.profileName(flag: profile)
        return KnitAPIClient(profile: try store.profile(named: name))
    }

    func knitenv() throws(KnitClientError) -> KnitEnv {
        try KnitEnv.load(path: try ProfileResolution.knitenvPath(flag: env))
    }
}

/// Runs a command body; a client error becomes one `knit: …` line on stderr and exit status 1.
func reportingErrors(_ body: () throws(KnitClientError) -> Void) throws {
    do { try body() } catch {
        Console.error("knit: \(error)")
        throw ExitCode.failure
    }
}

/// Parses `K:V` flags, refusing `knit#` keys unless `allowSystem`.
func parseTags(_ texts: [String], flag: String, allowSystem: Bool = false) throws -> [Tag] {
    var tags: [Tag] = []
    for text in texts {
        let tag: Tag
        do { tag = try Tag(parsing: text) } catch { throw ValidationError("\(flag): \(error)") }
        if tag.isSystem && !allowSystem {
            throw ValidationError("\(flag): \(TagError(text: text, problem: .systemKey))")
        }
        tags.append(tag)
    }
    return tags
}
