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
        abstract: "Administer a Knit store: create it; users, tokens, quotas; backup, restore, fsck; status.",
        subcommands: [
            Init.self, User.self, TokenCommand.self, Handout.self, QuotaCommand.self, UsageCommand.self, Backup.self,
            Restore.self, Fsck.self, StatusCommand.self,
        ]
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
        if let apiRoot { try validateAPIRoot(apiRoot) }
    }

    /// Prints the token, or writes the handouts and prints their paths on stderr.
    func deliver(token: String, user: String) throws {
        guard let handout, let apiRoot else {
            print(token)
            return
        }
        try writeHandouts(handout, token: token, user: user, apiRoot: apiRoot, cert: try certSection(ca))
    }
}

/// `--expires` of a new token.
struct ExpiryOption: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            """
            When the token stops working: a duration from now (30d, 12h, 90m, 1h30m) or a time \
            (2027-01-31, 2027-01-31T18:00, 2027-01-31T18:00:00+09:00; UTC without an offset). \
            Default: never (until revoked).
            """,
            valueName: "DURATION|TIME"
        )
    )
    var expires: String?

    func validate() throws {
        if let expires, parseExpiry(expires) == nil {
            throw ValidationError(
                "--expires: '\(expires)' is neither a duration (30d, 12h, 90m) nor a time (2027-01-31T18:00)"
            )
        }
    }

    var expiry: TokenExpiry { expires.flatMap(parseExpiry) ?? .never }
}

/// `30d` (days, which Go's syntax lacks) or a Go duration (`12h`, `1h30m`) from the moment the token is issued,
/// or a loose RFC 3339 time (UTC without an offset). Nil for anything else or a duration of zero.
func parseExpiry(_ text: String) -> TokenExpiry? {
    if text.hasSuffix("d"), let days = Int64(text.dropLast()), days > 0, days < 100_000 {
        return .after(days * 86_400_000)
    }
    if let duration = parseGoDuration(text) {
        return duration > 0 ? .after(duration) : nil
    }
    return KnitTime.parseLoose(text, defaultOffsetMinutes: 0).map { .at($0.milliseconds) }
}

/// Checks an API root for a handout: an absolute URL without user-info (the Knitfab handout adds NAME:TOKEN@).
func validateAPIRoot(_ apiRoot: String) throws {
    guard let schemeEnd = apiRoot.firstRange(of: "://") else {
        throw ValidationError("--api-root must be an absolute URL such as https://host:30803/api")
    }
    if apiRoot[schemeEnd.upperBound...].contains("@") {
        throw ValidationError("--api-root must not contain user-info (NAME@): \(apiRoot)")
    }
}

/// The handout's `cert:` section: the CA file's PEM in base64, or none.
func certSection(_ ca: String?) throws -> String {
    guard let ca else { return "cert: {}\n" }
    let pem = try fail { () throws(StoreError) -> Data in
        do { return try Data(contentsOf: URL(fileURLWithPath: ca)) } catch {
            throw StoreError(.io, "cannot read CA file \(ca)")
        }
    }
    return "cert:\n  ca: \(pem.base64EncodedString())\n"
}

/// Writes the two handouts of `token`, FILE and FILE-knitfab (both 0600), and prints their paths on stderr.
///
/// Ours (`token:` beside `apiRoot`) is for Knit's `knit`; FILE-knitfab is for Knitfab's own CLI, whose `knit
/// init` keeps only `apiRoot` and `cert` (a `token:` line would be dropped and every call would get 401).
/// There the token travels as the password of the apiRoot's user-info, `https://NAME:TOKEN@host:port/api`,
/// which Go's HTTP client sends as Basic credentials and knitd accepts.
func writeHandouts(_ handout: String, token: String, user: String, apiRoot: String, cert: String) throws {
    // validateAPIRoot made sure there is a scheme and no user-info yet.
    let schemeEnd = apiRoot.firstRange(of: "://")!.upperBound
    let knitfabRoot = String(apiRoot[..<schemeEnd]) + "\(user):\(token)@" + apiRoot[schemeEnd...]
    let knitfabHandout = handout + "-knitfab"
    try fail { () throws(StoreError) in
        try writePrivateFile(handout, "apiRoot: \(apiRoot)\n" + cert + "token: \(token)\n")
        try writePrivateFile(knitfabHandout, "apiRoot: \(knitfabRoot)\n" + cert)
    }
    printError(handout)
    printError(knitfabHandout)
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
        discussion: """
            A disabled user's tokens are refused (401) from the next request on, until `enable`. A deleted \
            user's tokens are revoked; what they own (Data, Plans, Runs, image repositories) stays, under their \
            name, and only admins may change it; the name is never given to a new user, so nobody inherits it.
            """,
        subcommands: [Add.self, List.self, Disable.self, Enable.self, Delete.self, Token.self]
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
            let token = try audited("user add \(name) --role \(role)") { () throws(StoreError) in
                try store.addUser(name: name, role: Role(rawValue: role)!)
            }
            try handout.deliver(token: token, user: name)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print every user as JSON: name, role, state (enabled, disabled, deleted), created, tokens."
        )
        @ParentCommand var root: Knitadm
        var home: HomeOption { root.home }

        func run() throws {
            let store = try home.openStore()
            defer { store.close() }
            let users = try fail { () throws(StoreError) in try store.userSummaries() }
            printJSON(users)
        }
    }

    struct Disable: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Refuse every token of a user from the next request on (kept for `enable`)."
        )
        @ParentCommand var root: Knitadm
        var home: HomeOption { root.home }
        @Argument(help: "User name.")
        var name: String

        func run() throws {
            let store = try home.openStore()
            defer { store.close() }
            let changed = try audited("user disable \(name)") { () throws(StoreError) in
                try store.setUserEnabled(name: name, enabled: false)
            }
            if !changed { printError("knitadm: user \(name) was disabled already") }
        }
    }

    struct Enable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Accept a disabled user's tokens again.")
        @ParentCommand var root: Knitadm
        var home: HomeOption { root.home }
        @Argument(help: "User name.")
        var name: String

        func run() throws {
            let store = try home.openStore()
            defer { store.close() }
            let changed = try audited("user enable \(name)") { () throws(StoreError) in
                try store.setUserEnabled(name: name, enabled: true)
            }
            if !changed { printError("knitadm: user \(name) was enabled already") }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a user: revoke their tokens, keep what they own, reserve the name.",
            discussion: """
                Data, Plans and Runs of the user stay (Knit never loses Data), still showing the name as \
                their creator; admins may change or delete them. The name cannot be given to a new user.
                """
        )
        @ParentCommand var root: Knitadm
        var home: HomeOption { root.home }
        @Argument(help: "User name.")
        var name: String

        func run() throws {
            let store = try home.openStore()
            defer { store.close() }
            let revoked = try audited("user delete \(name)") { () throws(StoreError) in
                try store.deleteUser(name: name)
            }
            printError("knitadm: user \(name) deleted, \(revoked) token(s) revoked")
        }
    }

    struct Token: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue another token for a user.",
            discussion: """
                Older tokens stay valid (rotation: hand out the new one, then `knitadm token revoke ID` the \
                old), unless --rotate revokes them at once.
                """
        )
        @ParentCommand var root: Knitadm
        var home: HomeOption { root.home }
        @Argument(help: "User name.")
        var name: String
        @OptionGroup var expiry: ExpiryOption
        @Flag(help: "Revoke the user's other tokens in the same step.")
        var rotate = false
        @OptionGroup var handout: HandoutOptions

        func run() throws {
            let store = try home.openStore()
            defer { store.close() }
            let expiry = self.expiry.expiry
            let issued = try audited("user token \(name)" + (rotate ? " --rotate" : "")) { () throws(StoreError) in
                try store.issueToken(for: name, expiry: expiry, revokingOthers: rotate)
            }
            if !issued.revokedIds.isEmpty {
                printError("knitadm: revoked \(issued.revokedIds.joined(separator: " "))")
            }
            try handout.deliver(token: issued.token, user: name)
        }
    }
}

struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "List and revoke tokens (`knitadm user token NAME` issues one).",
        subcommands: [List.self, Revoke.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print tokens as JSON: id, user, created, expires (never the token itself)."
        )
        @ParentCommand var root: Knitadm
        var home: HomeOption { root.home }
        @Argument(help: "Only this user's tokens.")
        var user: String?

        func run() throws {
            let store = try home.openStore()
            defer { store.close() }
            let tokens = try fail { () throws(StoreError) in try store.tokens(of: user) }
            printJSON(tokens)
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a token by its id (from `token list`); it is refused from the next request on."
        )
        @ParentCommand var root: Knitadm
        var home: HomeOption { root.home }
        @Argument(help: "Token id.")
        var id: String

        func run() throws {
            let store = try home.openStore()
            defer { store.close() }
            let user = try audited("token revoke \(id)") { () throws(StoreError) in try store.revokeToken(id: id) }
            printError("knitadm: revoked token \(id) of user \(user)")
        }
    }
}

struct Handout: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Issue a new token for a user and write both handouts for it.",
        discussion: """
            Writes FILE (for Knit's `knit init`) and FILE-knitfab (for Knitfab's own CLI), both 0600. \
            The API root and the CA default to this instance's: the apiRoot of HOME/handout/knitprofile and \
            HOME/tls/ca.crt, as installer/knit-up wrote them; none when knit-up serves the administrator's own \
            certificate (HOME/tls/own.env): clients then use their system trust store. The user's other tokens \
            stay valid.
            """
    )
    @ParentCommand var root: Knitadm
    var home: HomeOption { root.home }
    @Argument(help: "User name.")
    var name: String
    @Option(name: [.customShort("o"), .customLong("output")], help: "Handout file (default: NAME.knitprofile).")
    var output: String?
    @Option(name: .customLong("api-root"), help: "API root, e.g. https://host:30803/api.")
    var apiRoot: String?
    @Option(help: "CA certificate (PEM) clients must trust; embedded in the handout.")
    var ca: String?
    @OptionGroup var expiry: ExpiryOption

    func validate() throws {
        if let apiRoot { try validateAPIRoot(apiRoot) }
    }

    func run() throws {
        let apiRoot = try self.apiRoot ?? installedAPIRoot()
        // Under the administrator's own certificate (knit-up --tls-cert wrote tls/own.env) clients use their
        // system trust store: the handout carries no CA.
        let ownCertificate = access(home.resolved + "/tls/own.env", F_OK) == 0
        let instanceCA = home.resolved + "/tls/ca.crt"
        let ca = self.ca ?? (!ownCertificate && access(instanceCA, R_OK) == 0 ? instanceCA : nil)
        // Everything that can fail without changing the store is done before the token exists.
        let cert = try certSection(ca)
        let store = try home.openStore()
        defer { store.close() }
        let expiry = self.expiry.expiry
        let issued = try audited("handout \(name)") { () throws(StoreError) in
            try store.issueToken(for: name, expiry: expiry, revokingOthers: false)
        }
        try writeHandouts(
            output ?? "\(name).knitprofile",
            token: issued.token,
            user: name,
            apiRoot: apiRoot,
            cert: cert
        )
    }

    /// The apiRoot of the admin's handout that installer/knit-up wrote for this home.
    private func installedAPIRoot() throws -> String {
        let path = home.resolved + "/handout/knitprofile"
        guard access(path, R_OK) == 0, let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            // The installer's handout is root's (0600), and knitadm often runs as the knit user.
            let why = access(path, F_OK) == 0 ? "cannot be read by this account" : "does not exist"
            printError("knitadm: give --api-root: \(path), where it would be taken from, \(why)")
            throw ExitCode(1)
        }
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("apiRoot:") }) else {
            printError("knitadm: no --api-root given, and \(path) has no apiRoot to take it from")
            throw ExitCode(1)
        }
        let apiRoot = String(line.dropFirst("apiRoot:".count).drop { $0 == " " })
        try validateAPIRoot(apiRoot)
        return apiRoot
    }
}

/// Runs a change of the store and writes its audit line, as knitd does for a change through the API: the
/// same `audit.*` fields, on stderr and to syslog's authpriv facility (as useradd does), so a journal keeps
/// it on a systemd host. `audit.user` is the operating-system account that ran knitadm.
func audited<R>(_ action: String, _ body: () throws(StoreError) -> R) throws(ExitCode) -> R {
    do {
        let result = try body()
        audit(action, outcome: "done")
        return result
    } catch {
        audit(action, outcome: "failed", reason: error.message)
        printError("knitadm: \(error.message)")
        throw ExitCode(1)
    }
}

func audit(_ action: String, outcome: String, reason: String? = nil) {
    let account = getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid \(geteuid())"
    var metadata: Logger.Metadata = [
        "audit.user": "\(account)",
        "audit.role": "admin",
        "audit.action": "knitadm \(action)",
        "audit.outcome": "\(outcome)",
    ]
    if let reason { metadata["audit.reason"] = "\(reason)" }
    let logger = Logger(label: "knitadm", factory: { StreamLogHandler.standardError(label: $0) })
    logger.notice("audit", metadata: metadata)
    let line = "audit " + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    line.withCString { text in
        openlog("knitadm", LOG_PID, LOG_AUTHPRIV)
        withVaList([text]) { vsyslog(LOG_NOTICE, "%s", $0) }
        closelog()
    }
}

func printJSON<T: Encodable>(_ value: T) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    do {
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    } catch {
        printError("knitadm: cannot encode the answer: \(error)")
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
