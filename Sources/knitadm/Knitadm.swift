import ArgumentParser
import KnitCore
import KnitStore
import KnitSystem
import Logging

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

@main
struct Knitadm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "knitadm",
        abstract: "Administer a Knit store: create it, manage users and their tokens.",
        subcommands: [Init.self, User.self]
    )
    @OptionGroup var home: HomeOption
}

/// `--home`, given before the subcommand (`knitadm --home DIR user list`).
struct HomeOption: ParsableArguments {
    @Option(name: .long, help: "Store directory (default: $KNIT_HOME or /var/lib/knit).")
    var home: String?

    var resolved: String {
        home ?? KnitStore.defaultHome()
    }

    func openStore() throws -> KnitStore {
        var logger = Logger(label: "knitadm", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .warning
        return try fail { () throws(StoreError) -> KnitStore in try KnitStore(home: resolved, logger: logger) }
    }
}

/// Where to write a knitprofile handout for a token.
struct HandoutOptions: ParsableArguments {
    @Option(
        help: """
            Write a knitprofile (mode 0600) to this file instead of printing the token, and a second one \
            for Knitfab's own CLI to FILE-knitfab (token in the apiRoot as Basic user-info).
            """
    )
    var handout: String?
    @Option(name: .customLong("api-root"), help: "API root for the handout, e.g. https://host:8443/api.")
    var apiRoot: String?
    @Option(help: "CA certificate (PEM) clients must trust; embedded in the handout.")
    var ca: String?

    func validate() throws {
        if handout != nil && apiRoot == nil { throw ValidationError("--handout needs --api-root") }
        if handout == nil && (apiRoot != nil || ca != nil) {
            throw ValidationError("--api-root and --ca need --handout")
        }
        // Checked before the user is created: the Knitfab handout puts NAME:TOKEN@ after the scheme.
        if let apiRoot, let schemeEnd = apiRoot.firstRange(of: "://") {
            if apiRoot[schemeEnd.upperBound...].contains("@") {
                throw ValidationError("--api-root must not contain user-info (NAME@): \(apiRoot)")
            }
        } else if apiRoot != nil {
            throw ValidationError("--api-root must be an absolute URL such as https://host:30803/api")
        }
    }

    /// Prints the token, or writes the handouts and prints their paths on stderr.
    ///
    /// Two handouts: ours (`token:` beside `apiRoot`) for Knit's `knit`, and FILE-knitfab for Knitfab's own
    /// CLI, whose `knit init` keeps only `apiRoot` and `cert` (a `token:` line would be dropped and every call
    /// would get 401). There the token travels as the password of the apiRoot's user-info,
    /// `https://NAME:TOKEN@host:port/api`, which Go's HTTP client sends as Basic credentials and knitd accepts.
    func deliver(token: String, user: String) throws {
        guard let handout, let apiRoot else {
            print(token)
            return
        }
        // validate() made sure there is a scheme and no user-info yet.
        let schemeEnd = apiRoot.firstRange(of: "://")!.upperBound
        let knitfabRoot = String(apiRoot[..<schemeEnd]) + "\(user):\(token)@" + apiRoot[schemeEnd...]
        var cert = "cert: {}\n"
        if let ca {
            let pem = try fail { () throws(StoreError) -> Data in
                do { return try Data(contentsOf: URL(fileURLWithPath: ca)) } catch {
                    throw StoreError(.io, "cannot read CA file \(ca)")
                }
            }
            cert = "cert:\n  ca: \(pem.base64EncodedString())\n"
        }
        let knitfabHandout = handout + "-knitfab"
        try fail { () throws(StoreError) in
            try writePrivateFile(handout, "apiRoot: \(apiRoot)\n" + cert + "token: \(token)\n")
            try writePrivateFile(knitfabHandout, "apiRoot: \(knitfabRoot)\n" + cert)
        }
        printError(handout)
        printError(knitfabHandout)
    }
}

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the store (or open an existing one) and print its directory."
    )
    @ParentCommand var root: Knitadm
    var home: HomeOption { root.home }

    func run() throws {
        let store = try home.openStore()
        store.close()
        print(store.home)
    }
}

struct User: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage users.",
        subcommands: [Add.self, List.self, Token.self]
    )

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a user and issue their first token.")
        @ParentCommand var root: Knitadm
        var home: HomeOption { root.home }
        @Argument(help: "User name: 1-63 of a-z 0-9 . _ -, starting with a letter or digit.")
        var name: String
        @Option(help: "admin, user or reader.")
        var role: String = Role.user.rawValue
        @OptionGroup var handout: HandoutOptions

        func validate() throws {
            guard Role(rawValue: role) != nil else { throw ValidationError("--role must be admin, user or reader") }
        }

        func run() throws {
            let store = try home.openStore()
            defer { store.close() }
            let token = try fail { () throws(StoreError) in try store.addUser(name: name, role: Role(rawValue: role)!) }
            try handout.deliver(token: token, user: name)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print users as a JSON array of {name, role}.")
        @ParentCommand var root: Knitadm
        var home: HomeOption { root.home }

        func run() throws {
            let store = try home.openStore()
            defer { store.close() }
            let users = try fail { () throws(StoreError) in try store.users() }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(users), as: UTF8.self))
        }
    }

    struct Token: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue another token for a user (older tokens stay valid)."
        )
        @ParentCommand var root: Knitadm
        var home: HomeOption { root.home }
        @Argument(help: "User name.")
        var name: String
        @OptionGroup var handout: HandoutOptions

        func run() throws {
            let store = try home.openStore()
            defer { store.close() }
            let token = try fail { () throws(StoreError) in try store.issueToken(name: name) }
            try handout.deliver(token: token, user: name)
        }
    }
}

/// Runs `body`; a store error becomes one line on stderr and exit status 1.
func fail<R>(_ body: () throws(StoreError) -> R) throws(ExitCode) -> R {
    do { return try body() } catch {
        printError("knitadm: \(error.message)")
        throw ExitCode(1)
    }
}

func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// Writes `text` to `path` with mode 0600, also when the file existed with wider permissions.
func writePrivateFile(_ path: String, _ text: String) throws(StoreError) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw StoreError(.io, "cannot write \(path): \(Errno.current)") }
    defer { close(fd) }
    guard fchmod(fd, 0o600) == 0 else {
        throw StoreError(.io, "cannot chmod \(path): \(Errno.current)")
    }
    let bytes = Array(text.utf8)
    var written = 0
    while written < bytes.count {
        let result = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if result < 0 {
            if errno == EINTR { continue }
            throw StoreError(.io, "cannot write \(path): \(Errno.current)")
        }
        written += result
    }
}
