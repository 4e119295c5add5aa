public import KnitCore
internal import KnitHTTP

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

// Lineage and plan graphs. A Knit server answers each with one request (`…/lineage`, `…/graph`); a Knitfab
// server has no such endpoint, so on a 404 for a Data or Plan that does exist the graph is walked here with
// KnitCore's builders over the find/show endpoints, one request per Data and Run, as Knitfab's own CLI does.

extension KnitAPIClient {
    /// The lineage graph of `knitId`: `GET {apiRoot}/data/{knitId}/lineage`, or the client-side walk against a
    /// server without it.
    /// - Throws: `.server` 404 "data … not found" for an unknown Data.
    public func lineageGraph(knitId: String, upstream: Bool, downstream: Bool, depth: GraphDepth)
        throws(KnitClientError) -> KnitGraph
    {
        let path = "data/\(PercentEncoding.encode(knitId))/lineage"
        do {
            return try fetchGraph(path, upstream: upstream, downstream: downstream, depth: depth, what: "GET /\(path)")
        } catch let error where error.status == 404 {
            let exists = try !findData(tags: [Tag(key: SystemTag.id, value: knitId)]).isEmpty
            guard exists else { throw KnitClientError(.server, "data \(knitId) not found", status: 404) }
        }
        return try walking { () throws -> KnitGraph in
            try LineageBuilder.build(
                knitId: knitId,
                upstream: upstream,
                downstream: downstream,
                depth: depth,
                data: { id in
                    try findData(tags: [Tag(key: SystemTag.id, value: id)]).first.map { LineageDataFacts($0.detail) }
                },
                run: { id in
                    do { return try showRun(runId: id).detail } catch let error as KnitClientError
                        where error.status == 404
                    { return nil }
                }
            )
        }
    }

    /// The plan graph of `planId`: `GET {apiRoot}/plans/{planId}/graph`, or the client-side walk over
    /// `GET /plans/{id}` against a server without it.
    /// - Throws: `.server` 404 for an unknown plan.
    public func planGraph(planId: String, upstream: Bool, downstream: Bool, depth: GraphDepth)
        throws(KnitClientError) -> KnitGraph
    {
        let path = "plans/\(PercentEncoding.encode(planId))/graph"
        let first: PlanDetailJSON
        do {
            return try fetchGraph(path, upstream: upstream, downstream: downstream, depth: depth, what: "GET /\(path)")
        } catch let error where error.status == 404 {
            first = try showPlan(planId: planId).detail
        }
        return try walking { () throws -> KnitGraph in
            try PlanGraphBuilder.build(planId: planId, upstream: upstream, downstream: downstream, depth: depth) {
                id in
                if id == planId { return first }
                do { return try showPlan(planId: id).detail } catch let error as KnitClientError
                    where error.status == 404
                { return nil }
            }
        }
    }

    private func fetchGraph(_ path: String, upstream: Bool, downstream: Bool, depth: GraphDepth, what: String)
        throws(KnitClientError) -> KnitGraph
    {
        var query: [String] = []
        if upstream { query.append("upstream") }
        if downstream { query.append("downstream") }
        query.append("depth=\(depth)")
        let response = try send(
            HTTPRequest(
                url: url(path) + Self.queryString(query),
                headers: authorized(["Accept": "application/json"])
            )
        )
        do { return try JSONDecoder().decode(KnitGraph.self, from: Data(response.body)) } catch {
            throw KnitClientError(.response, "\(what): unexpected graph JSON: \(error)", underlying: error)
        }
    }

    /// Runs a builder whose lookups throw ``KnitClientError``, reporting a ``GraphError`` as a client error.
    private func walking(_ body: () throws -> KnitGraph) throws(KnitClientError) -> KnitGraph {
        do { return try body() } catch let error as KnitClientError {
            throw error
        } catch let error as GraphError {
            throw KnitClientError(
                error.code == .notFound ? .server : .response,
                error.message,
                status: error.code == .notFound ? 404 : nil
            )
        } catch {
            throw KnitClientError(.response, "\(error)", underlying: error)
        }
    }
}
