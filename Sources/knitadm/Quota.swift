import ArgumentParser
import KnitCore
import KnitStore

#if canImport(Glibc)
    import Glibc
#endif

/// `knitadm quota set|unset|show`.
struct QuotaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quota",
        abstract: "Limit what a user may hold: stored bytes, Data and Runs at once.",
        discussion: """
            Unset limits are unlimited. A user without limits of their own has the default's \
            (`quota set --default`). Uploads beyond a limit are refused with 507; Runs beyond the Runs \
            limit wait until one of the user's Runs ends.
            """,
        subcommands: [Set.self, Unset.self, Show.self]
    )

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set limits of a user (or the default); limits not given keep their current value."
        )
        @ParentCommand var root: Knitadm
        var home: HomeOption { root.home }
        @Argument(help: "User name (omit with --default).")
        var name: String?
        @Flag(help: "Set the default: the limits of every user without limits of their own.")
        var `default` = false
        @Option(
            help: ArgumentHelp(
                "Stored bytes of all their Data: a number with an optional K, M, G or T (powers of 1024), or none.",
                valueName: "SIZE|none"
            )
        )
        var bytes: String?
        @Option(help: ArgumentHelp("How many Data they may hold, or none.", valueName: "N|none"))
        var data: String?
        @Option(
            help: ArgumentHelp("How many Runs of their plans may be in flight at once, or none.", valueName: "N|none")
        )
        var runs: String?

        func validate() throws {
            if (name == nil) == !`default` { throw ValidationError("give a user name or --default (not both)") }
            if bytes == nil && data == nil && runs == nil {
                throw ValidationError("give at least one of --bytes, --data, --runs")
            }
            _ = try changes()
        }

        func changes() throws -> (bytes: QuotaChange, data: QuotaChange, runs: QuotaChange) {
            (
                try parseQuotaChange(bytes, option: "--bytes", sizes: true),
                try parseQuotaChange(data, option: "--data", sizes: false),
                try parseQuotaChange(runs, option: "--runs", sizes: false)
            )
        }

        func run() throws {
            let change = try changes()
            let store = try home.openStore()
            defer { store.close() }
            let quota = try audited("quota set \(name ?? "--default")") { () throws(StoreError) in
                try store.setQuota(user: name, bytes: change.bytes, data: change.data, runs: change.runs)
            }
            printJSON(QuotaLine(user: name, quota: quota))
        }
    }

    struct Unset: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drop a user's own limits (the default applies again), or with --default the default."
        )
        @ParentCommand var root: Knitadm
        var home: HomeOption { root.home }
        @Argument(help: "User name (omit with --default).")
        var name: String?
        @Flag(help: "Drop the default: users without limits of their own get none.")
        var `default` = false

        func validate() throws {
            if (name == nil) == !`default` { throw ValidationError("give a user name or --default (not both)") }
        }

        func run() throws {
            let store = try home.openStore()
            defer { store.close() }
            let dropped = try audited("quota unset \(name ?? "--default")") { () throws(StoreError) in
                try store.unsetQuota(user: name)
            }
            if !dropped { printError("knitadm: \(name.map { "user \($0)" } ?? "the default") had no limits set") }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the limits in force as JSON: of one user, or of every user and the default.",
            discussion: "A missing field is unlimited."
        )
        @ParentCommand var root: Knitadm
        var home: HomeOption { root.home }
        @Argument(help: "User name.")
        var name: String?

        func run() throws {
            let store = try home.openStore()
            defer { store.close() }
            if let name {
                let quota = try fail { () throws(StoreError) in
                    guard try store.userSummaries().contains(where: { $0.name == name }) else {
                        throw StoreError(.notFound, "user \(name) not found")
                    }
                    return try store.quota(user: name)
                }
                printJSON(QuotaLine(user: name, quota: quota))
                return
            }
            let lines = try fail { () throws(StoreError) in
                var lines = [QuotaLine(user: nil, quota: try store.quota(user: nil))]
                for user in try store.userSummaries() {
                    lines.append(QuotaLine(user: user.name, quota: try store.quota(user: user.name)))
                }
                return lines
            }
            printJSON(lines)
        }
    }
}

/// One line of `quota show`: `user` absent for the default.
struct QuotaLine: Encodable {
    var user: String?
    var quota: Quota
}

/// `knitadm usage`.
struct UsageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage",
        abstract: "Show who holds what: per user stored bytes, Data, Plans, Runs by state, and their limits.",
        discussion: """
            JSON on stdout (an array, one object per user, ordered by name); a table when stdout is a \
            terminal, unless --json. Deleted users are listed: what they own still counts.
            """
    )
    @ParentCommand var root: Knitadm
    var home: HomeOption { root.home }
    @Flag(help: "JSON even on a terminal.")
    var json = false

    func run() throws {
        let store = try home.openStore()
        defer { store.close() }
        let rows = try fail { () throws(StoreError) in try store.usageReport() }
        if json || isatty(1) == 0 {
            printJSON(rows)
        } else {
            print(usageTable(rows))
        }
    }
}

/// The terminal form of `knitadm usage`: one row per user, limits after a slash.
func usageTable(_ rows: [UserUsage]) -> String {
    func limited(_ value: String, _ limit: Int64?, _ shown: (Int64) -> String) -> String {
        limit.map { "\(value)/\(shown($0))" } ?? value
    }
    let header = ["USER", "BYTES", "DATA", "PLANS", "RUNS", "IN FLIGHT"]
    var lines = [header]
    for row in rows {
        let inFlight = ["starting", "running", "completing", "aborting"].reduce(Int64(0)) {
            $0 + row.runs[$1, default: 0]
        }
        let runs = row.runs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        lines.append([
            row.user,
            limited(formatSize(row.bytes), row.quota.bytes, formatSize),
            limited(String(row.data), row.quota.data, String.init),
            String(row.plans),
            runs.isEmpty ? "-" : runs,
            limited(String(inFlight), row.quota.runs, String.init),
        ])
    }
    let widths = header.indices.map { column in lines.map { $0[column].count }.max() ?? 0 }
    return lines.map { line in
        line.enumerated().map { $1 + String(repeating: " ", count: widths[$0] - $1.count) }
            .joined(separator: "  ").trimmingTrailingSpaces()
    }.joined(separator: "\n")
}

extension String {
    fileprivate func trimmingTrailingSpaces() -> String {
        var copy = self
        while copy.last == " " { copy.removeLast() }
        return copy
    }
}

/// `10G` → 10 GiB; the largest unit that divides it, so limits set as `10G` read back the same.
func formatSize(_ bytes: Int64) -> String {
    for (suffix, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] where bytes >= Int64(1) << shift {
        if bytes % (Int64(1) << shift) == 0 { return "\(bytes >> shift)\(suffix)" }
    }
    return String(bytes)
}

/// `none` (unlimited), a count, or with `sizes` a number with K, M, G or T (powers of 1024).
func parseQuotaChange(_ text: String?, option: String, sizes: Bool) throws -> QuotaChange {
    guard let text else { return .keep }
    if text == "none" { return .unlimited }
    var digits = Substring(text)
    var shift: Int64 = 0
    if sizes, let last = digits.last, let unit = ["K": 10, "M": 20, "G": 30, "T": 40][String(last).uppercased()] {
        shift = Int64(unit)
        digits = digits.dropLast()
    }
    guard let value = Int64(digits), value >= 0, value <= Int64.max >> shift else {
        let form = sizes ? "a size such as 500M or 10G" : "a count"
        throw ValidationError("\(option): '\(text)' is neither \(form) nor none")
    }
    return .limit(value << shift)
}
