import KnitClient
import KnitCore

// What several commands print the same way: Plan Details and graphs.

/// Prints one Plan Detail as 4-space JSON on stdout.
func printPlan(_ reply: PlanReply) {
    Console.output(reply.json.rendered(indent: 4) + "\n")
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
