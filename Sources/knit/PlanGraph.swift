import ArgumentParser
import KnitClient
import KnitCore

struct PlanGraph: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graph",
        abstract: "Print the pipeline around a Plan (Graphviz dot by default).",
        discussion: """
            Follows the Plans whose outputs feed PLAN_ID's inputs (-u), the Plans its outputs and log feed \
            (-d), or both (neither flag), up to -n steps (default 3, 'all' for no limit). --format svg or png \
            renders with graphviz 'dot' (which must be installed); json prints the graph as the server sends it.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(name: [.customShort("u"), .customLong("upstream")], help: "Follow the Plans feeding it.")
    var upstream = false

    @Flag(name: [.customShort("d"), .customLong("downstream")], help: "Follow the Plans it feeds.")
    var downstream = false

    @Option(
        name: [.customShort("n"), .customLong("numbers")],
        help: ArgumentHelp(
            "Steps to follow: a positive number, or all.",
            valueName: "N|all"
        )
    )
    var numbers = "3"

    @Option(help: ArgumentHelp("dot, svg, png or json.", valueName: "FORMAT"))
    var format = "dot"

    @Argument(help: ArgumentHelp("The Plan to start from.", valueName: "PLAN_ID"))
    var planId: String

    func validate() throws {
        if GraphDepth(parsing: numbers) == nil {
            throw ValidationError("-n must be a positive number or 'all' (not '\(numbers)')")
        }
        guard let output = GraphOutput(rawValue: format), output != .openlineage, output != .prov else {
            throw ValidationError("--format must be one of dot, svg, png, json (not '\(format)')")
        }
    }

    func run() throws {
        let depth = GraphDepth(parsing: numbers) ?? .default
        let output = GraphOutput(rawValue: format) ?? .dot
        let both = !upstream && !downstream
        try reportingErrors { () throws(KnitClientError) in
            let graph = try global.apiClient().planGraph(
                planId: planId,
                upstream: upstream || both,
                downstream: downstream || both,
                depth: depth
            )
            try printGraph(graph, as: output)
        }
    }
}
