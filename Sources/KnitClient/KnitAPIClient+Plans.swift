public import KnitCore
internal import KnitHTTP

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// A Plan Detail as decoded, plus the JSON it came from (to re-print it with the server's field order).
public struct PlanReply: Sendable {
    public let detail: PlanDetailJSON
    public let json: JSONValue
}

extension KnitAPIClient {
    /// `POST {apiRoot}/plans/` with `spec`; returns the registered plan.
    /// - Throws: `.server` with status 400 (invalid spec: the message lists every problem) or 409 (an
    ///   equivalent plan exists: the message ends with `see: PLAN_ID`; or a tag cycle).
    public func applyPlan(_ spec: PlanSpecJSON) throws(KnitClientError) -> PlanReply {
        try planRequest("POST", "plans/", body: Self.encodeBody(spec), what: "POST /plans")
    }

    /// `GET {apiRoot}/plans/{planId}/`.
    public func showPlan(planId: String) throws(KnitClientError) -> PlanReply {
        try planRequest("GET", "plans/\(PercentEncoding.encode(planId))/", what: "GET /plans/\(planId)")
    }

    /// `GET {apiRoot}/plans/?active=…&image=…&in_tag=…&out_tag=…&creator=…`; nil `active` means both.
    /// `creator` is checked here too, so a server that ignores the parameter does not widen the answer.
    public func findPlans(
        active: Bool? = nil,
        image: String? = nil,
        inTags: [Tag] = [],
        outTags: [Tag] = [],
        creator: String? = nil
    ) throws(KnitClientError) -> [PlanReply] {
        var query: [String] = []
        if let active { query.append("active=\(active)") }
        if let image { query.append("image=" + PercentEncoding.encode(image)) }
        query += inTags.map { "in_tag=" + PercentEncoding.encode($0.description) }
        query += outTags.map { "out_tag=" + PercentEncoding.encode($0.description) }
        if let creator { query.append("creator=" + PercentEncoding.encode(creator)) }
        let response = try sendPlan(
            HTTPRequest(
                url: url("plans/") + Self.queryString(query),
                headers: authorized(["Accept": "application/json"])
            )
        )
        var replies: [PlanReply] = []
        for item in try Self.jsonArray(response, what: "GET /plans") {
            let reply = try Self.decodePlan(item, what: "GET /plans")
            if let creator, reply.detail.creator != creator { continue }
            replies.append(reply)
        }
        return replies
    }

    /// `PUT` (activate) or `DELETE` (deactivate) `{apiRoot}/plans/{planId}/active`.
    public func setPlanActive(planId: String, active: Bool) throws(KnitClientError) -> PlanReply {
        try planRequest(
            active ? "PUT" : "DELETE",
            "plans/\(PercentEncoding.encode(planId))/active",
            what: "\(active ? "PUT" : "DELETE") /plans/\(planId)/active"
        )
    }

    /// `PUT {apiRoot}/plans/{planId}/resources`: `set` first, then `unset` (unset wins).
    public func changePlanResources(planId: String, change: PlanResourceChangeJSON) throws(KnitClientError)
        -> PlanReply
    {
        try planRequest(
            "PUT",
            "plans/\(PercentEncoding.encode(planId))/resources",
            body: Self.encodeBody(change),
            what: "PUT /plans/\(planId)/resources"
        )
    }

    /// `PUT {apiRoot}/plans/{planId}/annotations`: `remove_key`, `remove`, then `add`.
    public func changePlanAnnotations(planId: String, change: PlanAnnotationChangeJSON) throws(KnitClientError)
        -> PlanReply
    {
        try planRequest(
            "PUT",
            "plans/\(PercentEncoding.encode(planId))/annotations",
            body: Self.encodeBody(change),
            what: "PUT /plans/\(planId)/annotations"
        )
    }

    /// `PUT {apiRoot}/plans/{planId}/serviceaccount` with `name`, or `DELETE` it when `name` is nil.
    public func setPlanServiceAccount(planId: String, name: String?) throws(KnitClientError) -> PlanReply {
        let path = "plans/\(PercentEncoding.encode(planId))/serviceaccount"
        if let name {
            return try planRequest(
                "PUT",
                path,
                body: Self.encodeBody(PlanServiceAccountJSON(serviceAccount: name)),
                what: "PUT /plans/\(planId)/serviceaccount"
            )
        }
        return try planRequest("DELETE", path, what: "DELETE /plans/\(planId)/serviceaccount")
    }

    // MARK: plumbing

    private func planRequest(_ method: String, _ path: String, body: [UInt8]? = nil, what: String)
        throws(KnitClientError) -> PlanReply
    {
        var headers: HTTPHeaders = ["Accept": "application/json"]
        if body != nil { headers.append("Content-Type", "application/json") }
        let response = try sendPlan(
            HTTPRequest(method: method, url: url(path), headers: authorized(headers), body: body.map { .bytes($0) })
        )
        guard let json = JSONValue.parse(response.body) else {
            throw KnitClientError(.response, "\(what): the server did not answer JSON")
        }
        return try Self.decodePlan(json, what: what)
    }

    /// ``send(_:sink:)`` that also keeps the `see` of an error body (the plan an equivalent spec matches),
    /// which the generic error line leaves out.
    private func sendPlan(_ request: HTTPRequest) throws(KnitClientError) -> HTTPResponse {
        let response: HTTPResponse
        do { response = try http.perform(request, sink: nil) } catch {
            if let underlying = error.underlying {
                if let clientError = underlying as? KnitClientError { throw clientError }
                throw KnitClientError(.transport, "\(underlying)", underlying: underlying)
            }
            throw KnitClientError(.transport, error.message, underlying: error)
        }
        guard response.isSuccess else {
            let failure = Self.serverError(response)
            if let see = JSONValue.parse(response.body)?["see"]?.stringValue, !see.isEmpty {
                throw KnitClientError(.server, failure.message + " (see: \(see))", status: failure.status)
            }
            throw failure
        }
        return response
    }

    static func encodeBody(_ value: some Encodable) -> [UInt8] {
        do { return Array(try JSONEncoder().encode(value)) } catch {
            fatalError("plan request bodies must encode: \(error)")
        }
    }

    static func decodePlan(_ json: JSONValue, what: String) throws(KnitClientError) -> PlanReply {
        do {
            let detail = try JSONDecoder().decode(PlanDetailJSON.self, from: Data(json.rendered(indent: 0).utf8))
            return PlanReply(detail: detail, json: json)
        } catch {
            throw KnitClientError(.response, "\(what): unexpected Plan Detail: \(error)", underlying: error)
        }
    }
}
