import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

@testable import KnitAPI

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

// The graph endpoints in-process: JSON, dot and SVG by format or Accept, depth and direction parameters,
// 404 for unknown ids and 400 for bad parameters, through the whole API (route table and authentication).

private func uploadData(_ harness: APIHarness, tags: [String]) throws -> DataDetailJSON {
    let ticket = try harness.store.beginUpload(creator: "alice")
    let fd = open(ticket.stagingPath + "/file.txt", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    close(fd)
    return try harness.store.finishUpload(ticket, tags: tags.map { try! Tag(parsing: $0) }, sizeBytes: 0)
}

private func lineage(_ harness: APIHarness, _ uri: String, accept: String? = nil) throws -> APIResponse {
    var headers: [String: String] = [:]
    if let accept { headers["accept"] = accept }
    return harness.request("GET", uri, headers: headers)
}

private func header(_ response: APIResponse, _ name: String) -> String? {
    response.headers.first { $0.0.lowercased() == name.lowercased() }?.1
}

private func decodeGraph(_ response: APIResponse) throws -> KnitGraph {
    try JSONDecoder().decode(KnitGraph.self, from: Data(try response.collectBody()))
}

@Suite struct GraphAPITests {
    @Test func lineageAsJSONDotAndSVG() throws {
        let harness = try APIHarness()
        let data = try uploadData(harness, tags: ["project:p"])
        let json = try lineage(harness, "/api/data/\(data.knitId)/lineage")
        #expect(json.status == 200)
        #expect(header(json, "content-type") == "application/json")
        let graph = try decodeGraph(json)
        #expect(graph.kind == .lineage)
        #expect(graph.start == "d" + data.knitId)
        #expect(graph.upstream && graph.downstream)
        #expect(graph.depth == 3)
        #expect(graph.nodes.map(\.type) == [.data, .run, .root])

        let dot = try lineage(harness, "/api/data/\(data.knitId)/lineage?format=dot")
        #expect(dot.status == 200)
        #expect(header(dot, "content-type")?.hasPrefix("text/vnd.graphviz") == true)
        #expect(String(decoding: try dot.collectBody(), as: UTF8.self) == graph.dot())
        let byAccept = try lineage(harness, "/api/data/\(data.knitId)/lineage", accept: "text/vnd.graphviz")
        #expect(header(byAccept, "content-type")?.hasPrefix("text/vnd.graphviz") == true)

        let svg = try lineage(harness, "/api/data/\(data.knitId)/lineage", accept: "image/svg+xml, */*")
        if access(KnitAPI.graphvizDot, X_OK) == 0 {
            #expect(svg.status == 200)
            #expect(header(svg, "content-type") == "image/svg+xml")
            #expect(String(decoding: try svg.collectBody(), as: UTF8.self).contains("<svg"))
        } else {
            #expect(svg.status == 406)
        }
    }

    @Test func directionsAndDepth() throws {
        let harness = try APIHarness()
        _ = try harness.store.registerPlan(
            PlanSpecJSON(
                image: "repo/train:v1",
                inputs: [MountpointJSON(path: "/in", tags: [try Tag(parsing: "x:1")])],
                outputs: [MountpointJSON(path: "/out", tags: [try Tag(parsing: "y:1")])]
            ),
            creator: "alice"
        )
        let data = try uploadData(harness, tags: ["x:1"])
        let up = try decodeGraph(try lineage(harness, "/api/data/\(data.knitId)/lineage?upstream"))
        #expect(up.upstream && !up.downstream)
        #expect(up.nodes.filter { $0.type == .run }.count == 1)
        let down = try decodeGraph(try lineage(harness, "/api/data/\(data.knitId)/lineage?downstream=true&depth=all"))
        #expect(!down.upstream && down.downstream && down.depth == nil)
        // The waiting Run of the plan consumes the upload and has made its (processing) output.
        #expect(down.nodes.filter { $0.type == .run }.map(\.status) == ["waiting"])
        #expect(down.nodes.filter { $0.type == .data }.count == 2)
    }

    @Test func badParametersAndUnknownIds() throws {
        let harness = try APIHarness()
        let data = try uploadData(harness, tags: ["project:p"])
        for query in ["depth=0", "depth=-2", "depth=many", "format=png", "upstream=maybe"] {
            let response = try lineage(harness, "/api/data/\(data.knitId)/lineage?\(query)")
            #expect(response.status == 400, "\(query)")
        }
        let missing = try lineage(harness, "/api/data/nope/lineage")
        #expect(missing.status == 404)
        #expect(try json(missing)["reason"]?.stringValue == "data nope not found")
        #expect(try lineage(harness, "/api/data/\(data.knitId)/other").status == 404)
        let planMissing = harness.request("GET", "/api/plans/nope/graph")
        #expect(planMissing.status == 404)
        #expect(harness.request("GET", "/api/plans/x/graph?depth=0").status == 400)
        #expect(harness.request("POST", "/api/plans/x/graph").status == 405)
    }

    @Test func planGraphEndpoint() throws {
        let harness = try APIHarness()
        let first = try harness.store.registerPlan(
            PlanSpecJSON(
                image: "repo/a:v1",
                inputs: [MountpointJSON(path: "/in", tags: [try Tag(parsing: "s:0")])],
                outputs: [MountpointJSON(path: "/out", tags: [try Tag(parsing: "s:1")])]
            ),
            creator: "alice"
        )
        let second = try harness.store.registerPlan(
            PlanSpecJSON(
                image: "repo/b:v1",
                inputs: [MountpointJSON(path: "/in", tags: [try Tag(parsing: "s:1")])],
                outputs: []
            ),
            creator: "alice"
        )
        let response = harness.request("GET", "/api/plans/\(first.planId)/graph/")
        #expect(response.status == 200)
        let graph = try decodeGraph(response)
        #expect(graph.kind == .plan)
        #expect(graph.nodes.filter { $0.type == .plan }.map(\.planId) == [first.planId, second.planId])
        #expect(
            graph.edges.contains(GraphEdge(from: "p\(first.planId)@/out", to: "p\(second.planId)@/in", type: .feeds))
        )
        let dot = harness.request("GET", "/api/plans/\(first.planId)/graph?format=dot&downstream")
        #expect(
            String(decoding: try dot.collectBody(), as: UTF8.self).contains(
                "\"p\(first.planId)@/out\" -> \"p\(second.planId)@/in\";"
            )
        )
        // A reader may look at graphs.
        #expect(harness.request("GET", "/api/plans/\(first.planId)/graph", as: "rita").status == 200)
        #expect(harness.request("GET", "/api/plans/\(first.planId)/graph", as: nil).status == 401)
    }

    @Test func acceptNegotiation() {
        #expect(KnitAPI.graphFormat(accept: nil) == .json)
        #expect(KnitAPI.graphFormat(accept: "*/*") == .json)
        #expect(KnitAPI.graphFormat(accept: "text/vnd.graphviz;q=0.9, application/json") == .dot)
        #expect(KnitAPI.graphFormat(accept: "image/svg+xml") == .svg)
    }
}
