import ArgumentParser
import KnitClient
import KnitCore
import KnitSystem

#if canImport(Glibc)
    import Glibc
#endif

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

/// What `knit data lineage` and `knit plan graph` can print.
enum GraphOutput: String {
    case dot, svg, png, json, openlineage, prov
}

/// The producer URI in exported OpenLineage events.
let openLineageProducer = "urn:knit:knit:" + knitClientVersion

/// Writes `graph` to stdout as `output`; svg and png go through graphviz `dot`.
func printGraph(_ graph: KnitGraph, as output: GraphOutput) throws(KnitClientError) {
    switch output {
    case .dot:
        Console.output(graph.dot(offsetMinutes: Console.localOffsetMinutes()))
    case .json:
        Console.output(jsonText(graph) + "\n")
    case .openlineage:
        Console.output(LineageExport.openLineage(graph, producer: openLineageProducer).rendered(indent: 4) + "\n")
    case .prov:
        Console.output(LineageExport.prov(graph).rendered(indent: 4) + "\n")
    case .svg, .png:
        try renderWithGraphviz(graph.dot(offsetMinutes: Console.localOffsetMinutes()), format: output.rawValue)
    }
}

private func jsonText(_ graph: KnitGraph) -> String {
    guard let bytes = try? KnitJSON.encode(graph), let value = JSONValue.parse(bytes) else { return "{}" }
    return value.rendered(indent: 4)
}

/// Pipes `dot` text into `dot -T<format>`, whose output goes straight to our stdout.
func renderWithGraphviz(_ text: String, format: String) throws(KnitClientError) {
    guard let dot = findExecutable("dot") else {
        throw KnitClientError(
            .usage,
            "--format \(format) needs graphviz ('dot' is not on PATH; install the graphviz package, "
                + "or use --format dot and render it elsewhere)"
        )
    }
    // dot may stop reading early: its exit status tells why, a SIGPIPE would only kill us.
    signal(SIGPIPE, SIG_IGN)
    let result: FilterResult
    do {
        result = try runFilter([dot, "-T" + format], input: Array(text.utf8), captureOutput: false, stderr: .inherit)
    } catch {
        throw KnitClientError(.io, "\(error)")
    }
    guard result.status.isSuccess else {
        throw KnitClientError(.io, "graphviz dot -T\(format) failed (exit status \(result.status))")
    }
    if let failure = result.inputError { throw KnitClientError(.io, "\(failure)") }
}
