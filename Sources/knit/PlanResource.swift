import ArgumentParser
import KnitClient
import KnitCore

struct PlanResource: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resource",
        abstract: "Set or unset the resource limits of a Plan.",
        discussion: """
            One request: --set is applied first, then --unset, so --unset wins for the same type. Unsetting \
            cpu or memory removes that limit. Prints the Plan Detail as JSON.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(
        name: [.customShort("s"), .customLong("set")],
        help: ArgumentHelp(
            "Resource limit to set, e.g. cpu=2, memory=4Gi, nvidia.com/gpu=1 (repeatable).",
            valueName: "TYPE=QTY"
        )
    )
    var set: [String] = []

    @Option(
        name: [.customShort("u"), .customLong("unset")],
        help: ArgumentHelp(
            "Resource limit to remove (repeatable).",
            valueName: "TYPE"
        )
    )
    var unset: [String] = []

    @Argument(help: ArgumentHelp("The Plan to change.", valueName: "PLAN_ID"))
    var planId: String

    static func parseSet(_ texts: [String]) throws -> [String: String] {
        var values: [String: String] = [:]
        for text in texts {
            guard let equal = text.firstIndex(of: "=") else {
                throw ValidationError("--set: '\(text)' is not TYPE=QUANTITY")
            }
            let key = String(text[..<equal])
            let value = String(text[text.index(after: equal)...])
            guard !key.isEmpty, !value.isEmpty else { throw ValidationError("--set: '\(text)' is not TYPE=QUANTITY") }
            do { _ = try ResourceQuantity(parsing: value) } catch { throw ValidationError("--set: \(error)") }
            values[key] = value
        }
        return values
    }

    func validate() throws {
        _ = try Self.parseSet(set)
        if let empty = unset.first(where: \.isEmpty) { throw ValidationError("--unset: '\(empty)' is empty") }
    }

    func run() throws {
        guard !set.isEmpty || !unset.isEmpty else {
            Console.error("Nothing to do.")
            return
        }
        let change = PlanResourceChangeJSON(set: try Self.parseSet(set), unset: unset)
        try reportingErrors { () throws(KnitClientError) in
            printPlan(try global.apiClient().changePlanResources(planId: planId, change: change))
        }
    }
}
