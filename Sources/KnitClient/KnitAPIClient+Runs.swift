public import KnitCore
internal import KnitHTTP

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// A Run Detail as decoded, plus the JSON it came from (to re-print it with the server's field order).
public struct RunReply: Sendable {
    public let detail: RunDetailJSON
    public let json: JSONValue
}

extension KnitAPIClient {
    /// `GET {apiRoot}/runs/{runId}/`.
    /// - Throws: `.server` with status 404 when there is no such Run.
    public func showRun(runId: String) throws(KnitClientError) -> RunReply {
        let what = "GET /runs/\(runId)"
        let response = try send(
            HTTPRequest(
                url: url("runs/\(PercentEncoding.encode(runId))/"),
                headers: authorized(["Accept": "application/json"])
            )
        )
        guard let json = JSONValue.parse(response.body) else {
            throw KnitClientError(.response, "\(what): the server did not answer JSON")
        }
        return try Self.decodeRun(json, what: what)
    }

    /// `GET {apiRoot}/runs/{runId}/log`: the Run's stdout and stderr, streamed to `sink`; with `follow`, until
    /// the Run finishes.
    /// - Throws: `.server` with 404 when its plan has no log, 503 before the Run starts.
    public func runLog(
        runId: String,
        follow: Bool,
        to sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws(KnitClientError) {
        try withoutActuallyEscaping(sink) { (sink) throws(KnitClientError) in
            _ = try send(
                HTTPRequest(
                    url: url("runs/\(PercentEncoding.encode(runId))/log") + (follow ? "?follow" : ""),
                    headers: authorized(["Accept": "text/plain"])
                ),
                sink: sink
            )
        }
    }

    /// `PUT {apiRoot}/runs/{runId}/abort`: the Run goes to aborting (exit 253) and ends failed.
    /// - Throws: `.server` with status 404 for an unknown Run, 409 when its status does not allow it.
    public func abortRun(runId: String) throws(KnitClientError) -> RunReply {
        try stopRun(runId: runId, action: "abort")
    }

    /// `PUT {apiRoot}/runs/{runId}/tearoff`: the Run goes to completing (exit 0 "stopped by user") and ends
    /// done with what its outputs hold so far.
    /// - Throws: `.server` with status 404 for an unknown Run, 409 when its status does not allow it.
    public func tearOffRun(runId: String) throws(KnitClientError) -> RunReply {
        try stopRun(runId: runId, action: "tearoff")
    }

    private func stopRun(runId: String, action: String) throws(KnitClientError) -> RunReply {
        let what = "PUT /runs/\(runId)/\(action)"
        let response = try send(
            HTTPRequest(
                method: "PUT",
                url: url("runs/\(PercentEncoding.encode(runId))/\(action)"),
                headers: authorized(["Accept": "application/json"])
            )
        )
        guard let json = JSONValue.parse(response.body) else {
            throw KnitClientError(.response, "\(what): the server did not answer JSON")
        }
        return try Self.decodeRun(json, what: what)
    }

    /// `GET {apiRoot}/runs/?plan=…&knitIdInput=…&knitIdOutput=…&status=…&since=…&duration=…`: each list is
    /// sent comma-separated (OR within a list, AND across lists); `duration` needs `since`. `creator` is
    /// checked here too, so a server that ignores the parameter does not widen the answer.
    public func findRuns(
        planIds: [String] = [],
        inputKnitIds: [String] = [],
        outputKnitIds: [String] = [],
        statuses: [String] = [],
        since: KnitTime? = nil,
        duration: String? = nil,
        creator: String? = nil
    ) throws(KnitClientError) -> [RunReply] {
        guard duration == nil || since != nil else { throw KnitClientError(.usage, "duration requires since") }
        var query: [String] = []
        for (name, values) in [
            ("plan", planIds), ("knitIdInput", inputKnitIds), ("knitIdOutput", outputKnitIds), ("status", statuses),
        ] where !values.isEmpty {
            query.append(name + "=" + values.map(PercentEncoding.encode).joined(separator: ","))
        }
        if let since { query.append("since=" + PercentEncoding.encode(since.description)) }
        if let duration { query.append("duration=" + PercentEncoding.encode(duration)) }
        if let creator { query.append("creator=" + PercentEncoding.encode(creator)) }
        let response = try send(
            HTTPRequest(
                url: url("runs/") + Self.queryString(query),
                headers: authorized(["Accept": "application/json"])
            )
        )
        var replies: [RunReply] = []
        for item in try Self.jsonArray(response, what: "GET /runs") {
            let reply = try Self.decodeRun(item, what: "GET /runs")
            if let creator, reply.detail.creator != creator { continue }
            replies.append(reply)
        }
        return replies
    }

    static func decodeRun(_ json: JSONValue, what: String) throws(KnitClientError) -> RunReply {
        do {
            let detail = try JSONDecoder().decode(RunDetailJSON.self, from: Data(json.rendered(indent: 0).utf8))
            return RunReply(detail: detail, json: json)
        } catch {
            throw KnitClientError(.response, "\(what): unexpected Run Detail: \(error)", underlying: error)
        }
    }
}

extension KnitAPIClient {
    /// `PUT {apiRoot}/runs/{runId}/retry`: a done or failed Run runs again with new output Data. Knit
    /// answers the Run Detail; Knitfab answers an empty body, in which case the detail is read afterwards.
    /// - Throws: `.server` with status 404 for an unknown or deleted Run, 409 when it has not finished, is an
    ///   upload, or its outputs are in use.
    public func retryRun(runId: String) throws(KnitClientError) -> RunReply {
        let what = "PUT /runs/\(runId)/retry"
        let response = try send(
            HTTPRequest(
                method: "PUT",
                url: url("runs/\(PercentEncoding.encode(runId))/retry"),
                headers: authorized(["Accept": "application/json"])
            )
        )
        if response.body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            return try showRun(runId: runId)
        }
        guard let json = JSONValue.parse(response.body) else {
            throw KnitClientError(.response, "\(what): the server did not answer JSON")
        }
        return try Self.decodeRun(json, what: what)
    }

    /// `DELETE {apiRoot}/runs/{runId}/`: deletes a done or failed Run's outputs and log; the Run disappears
    /// (its combination never runs again). Deleting an upload's Run deletes the uploaded Data.
    /// - Throws: `.server` with status 404 for an unknown or deleted Run, 409 "output of the run is in use"
    ///   while other Runs consume its outputs, or when it has not finished.
    public func removeRun(runId: String) throws(KnitClientError) {
        _ = try send(
            HTTPRequest(
                method: "DELETE",
                url: url("runs/\(PercentEncoding.encode(runId))/"),
                headers: authorized(["Accept": "application/json"])
            )
        )
    }
}
