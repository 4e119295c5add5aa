import ArgumentParser
import KnitClient
import KnitCore

struct DataLineage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lineage",
        abstract: "Print the lineage of a Data (Graphviz dot by default).",
        discussion: """
            Traces the Runs that made KNIT_ID and its inputs (-u), the Runs that used it and what they made \
            (-d), or both (neither flag), up to -n steps (default 3, 'all' for no limit). Times are local. \
            --format svg or png renders the graph with graphviz 'dot' (which must be installed); json prints \
            the graph as the server sends it; openlineage prints one OpenLineage RunEvent per Run (a JSON \
            array) and prov a W3C PROV-JSON document.

              knit data lineage KNIT_ID > lineage.dot
              knit data lineage -u -n all --format svg KNIT_ID > lineage.svg
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(name: [.customShort("u"), .customLong("upstream")], help: "Trace the Runs and Data it came from.")
    var upstream = false

    @Flag(name: [.customShort("d"), .customLong("downstream")], help: "Trace the Runs and Data made from it.")
    var downstream = false

    @Option(
        name: [.customShort("n"), .customLong("numbers")],
        help: ArgumentHelp(
            "Steps to trace: a positive number, or all.",
            valueName: "N|all"
        )
    )
    var numbers = "3"

    @Option(
        help: ArgumentHelp(
            "dot, svg, png, json, openlineage or prov.",
            valueName: "FORMAT"
        )
    )
    var format = "dot"

    @Argument(help: ArgumentHelp("The Data to trace.", valueName: "KNIT_ID"))
    var knitId: String

    func validate() throws {
        if GraphDepth(parsing: numbers) == nil {
            throw ValidationError("-n must be a positive number or 'all' (not '\(numbers)')")
        }
        if GraphOutput(rawValue: format) == nil {
            throw ValidationError("--format must be one of dot, svg, png, json, openlineage, prov (not '\(format)')")
        }
    }

    func run() throws {
        let depth = GraphDepth(parsing: numbers) ?? .default
        let output = GraphOutput(rawValue: format) ?? .dot
        let both = !upstream && !downstream
        try reportingErrors { () throws(KnitClientError) in
            let graph = try global.apiClient().lineageGraph(
                knitId: knitId,
                upstream: upstream || both,
                downstream: downstream || both,
                depth: depth
            )
            try printGraph(graph, as: output)
        }
    }
}
