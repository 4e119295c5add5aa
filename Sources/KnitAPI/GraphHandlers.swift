import KnitCore
import KnitStore
import KnitSystem

#if canImport(Glibc)
    import Glibc
#endif

// Graph endpoints (a Knit extension; Knitfab's CLI builds these graphs itself from find/show calls):
//   GET /api/data/{knitId}/lineage?upstream&downstream&depth=N|all
//   GET /api/plans/{planId}/graph?upstream&downstream&depth=N|all
// Neither direction given means both; depth defaults to 3. The answer is the JSON graph (KnitGraph), dot text
// (`text/vnd.graphviz`) or SVG (`image/svg+xml`, by running graphviz `dot`), chosen by `format=json|dot|svg`
// or else by `Accept`. Times in dot and SVG are UTC: the server does not know the reader's time zone.

/// The representations a graph endpoint can answer.
enum GraphFormat: String {
    case json, dot, svg

    var contentType: String {
        switch self {
        case .json: return "application/json"
        case .dot: return "text/vnd.graphviz; charset=utf-8"
        case .svg: return "image/svg+xml"
        }
    }
}

extension KnitAPI {
    /// Where the SVG renderer lives; absent means SVG is answered with 406.
    static let graphvizDot = "/usr/bin/dot"
    /// Largest graph rendered to SVG here; layout time grows much faster than the node count, and a request
    /// thread should not spend minutes on one picture.
    static let svgNodeLimit = 5_000

    /// `GET /api/data/{knitId}/lineage`.
    func dataLineage(_ request: APIRequest, knitId: String) throws -> APIResponse {
        let options = try graphOptions(request)
        let graph = try storeCall { () throws(StoreError) in
            try store.lineage(
                knitId: knitId,
                upstream: options.upstream,
                downstream: options.downstream,
                depth: options.depth
            )
        }
        return try graphResponse(graph, format: options.format)
    }

    /// `GET /api/plans/{planId}/graph`.
    func planGraph(_ request: APIRequest, planId: String) throws -> APIResponse {
        let options = try graphOptions(request)
        let graph = try storeCall { () throws(StoreError) in
            try store.planGraph(
                planId: planId,
                upstream: options.upstream,
                downstream: options.downstream,
                depth: options.depth
            )
        }
        return try graphResponse(graph, format: options.format)
    }

    private func graphOptions(_ request: APIRequest) throws -> (
        upstream: Bool, downstream: Bool, depth: GraphDepth, format: GraphFormat
    ) {
        func flag(_ name: String) throws -> Bool {
            guard let value = request.queryValue(name) else { return false }
            switch value.lowercased() {
            case "", "true", "1", "yes": return true
            case "false", "0", "no": return false
            default: throw KnitAPIError.badRequest("\(name) must be true or false, not '\(value)'")
            }
        }
        var upstream = try flag("upstream")
        var downstream = try flag("downstream")
        if !upstream && !downstream {
            upstream = true
            downstream = true
        }
        var depth = GraphDepth.default
        if let text = request.queryValue("depth") {
            guard let parsed = GraphDepth(parsing: text) else {
                throw KnitAPIError.badRequest("depth must be a positive integer or 'all', not '\(text)'")
            }
            depth = parsed
        }
        let format: GraphFormat
        if let text = request.queryValue("format") {
            guard let parsed = GraphFormat(rawValue: text) else {
                throw KnitAPIError.badRequest("format must be json, dot or svg, not '\(text)'")
            }
            format = parsed
        } else {
            format = Self.graphFormat(accept: request.header("accept"))
        }
        return (upstream, downstream, depth, format)
    }

    /// The first of SVG, dot or JSON that `Accept` names; JSON when it names none of them.
    static func graphFormat(accept: String?) -> GraphFormat {
        guard let accept else { return .json }
        var best: (format: GraphFormat, position: Int)?
        for (position, item) in accept.split(separator: ",").enumerated() {
            let type = item.split(separator: ";").first.map { $0.trimmed() } ?? ""
            let format: GraphFormat?
            switch type.lowercased() {
            case "image/svg+xml": format = .svg
            case "text/vnd.graphviz": format = .dot
            case "application/json": format = .json
            default: format = nil
            }
            if let format, best == nil || position < best!.position { best = (format, position) }
        }
        return best?.format ?? .json
    }

    private func graphResponse(_ graph: KnitGraph, format: GraphFormat) throws -> APIResponse {
        switch format {
        case .json:
            return .json(graph)
        case .dot:
            return APIResponse(
                status: 200,
                headers: [("Content-Type", format.contentType)],
                body: .bytes(Array(graph.dot().utf8))
            )
        case .svg:
            guard access(Self.graphvizDot, X_OK) == 0 else {
                throw KnitAPIError(
                    status: 406,
                    reason: "this server cannot render SVG: graphviz is not installed",
                    advice: "ask for format=dot (or Accept: text/vnd.graphviz) and render it with graphviz locally"
                )
            }
            guard graph.nodes.count <= Self.svgNodeLimit else {
                throw KnitAPIError(
                    status: 406,
                    reason:
                        "the graph has \(graph.nodes.count) nodes; SVG is rendered for at most \(Self.svgNodeLimit)",
                    advice: "ask for a smaller depth, or for format=dot and render it locally"
                )
            }
            let rendered = try? runFilter([Self.graphvizDot, "-Tsvg"], input: Array(graph.dot().utf8))
            guard let rendered, rendered.status.isSuccess else {
                throw KnitAPIError(status: 500, reason: "rendering the graph with graphviz failed")
            }
            return APIResponse(
                status: 200,
                headers: [("Content-Type", format.contentType)],
                body: .bytes(rendered.output)
            )
        }
    }
}
