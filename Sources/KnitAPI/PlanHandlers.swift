import KnitCore
import KnitStore
import KnitSystem

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

// `/api/plans…`: every endpoint answers Plan Detail (an array of them for the query).

extension KnitAPI {
    /// Routes `segments` (after `api`, starting with `plans`).
    func routePlans(
        _ request: APIRequest,
        segments: [String],
        caller: Caller,
        readBody: BodyReader
    ) throws -> APIResponse {
        let method = request.method
        switch segments.count {
        case 1:
            switch method {
            case "GET": return try findPlans(request)
            case "POST":
                try requirePlanWrite(caller)
                return try registerPlan(request, caller: caller, readBody: readBody)
            default: throw planMethodNotAllowed(request)
            }
        case 2:
            guard method == "GET" else { throw planMethodNotAllowed(request) }
            let planId = segments[1]
            return .json(try planStoreCall { () throws(StoreError) in try store.planDetail(planId: planId) })
        case 3:
            let planId = segments[1]
            if segments[2] == "graph" {
                guard method == "GET" || method == "HEAD" else { throw planMethodNotAllowed(request) }
                return try planGraph(request, planId: planId)
            }
            let detail: PlanDetailJSON
            switch (method, segments[2]) {
            case ("PUT", "active"), ("DELETE", "active"):
                try requireOwner(caller, of: .plan(planId: planId), toDo: "change")
                detail = try planStoreCall { () throws(StoreError) in
                    try store.setPlanActive(planId: planId, active: method == "PUT")
                }
            case ("PUT", "resources"):
                try requireOwner(caller, of: .plan(planId: planId), toDo: "change")
                let change = try decodeBody(
                    PlanResourceChangeJSON.self,
                    readBody,
                    shape: #"{"set":{"cpu":"2"},"unset":["nvidia.com/gpu"]}"#
                )
                detail = try planStoreCall { () throws(StoreError) in
                    try store.changePlanResources(planId: planId, change: change)
                }
            case ("PUT", "annotations"):
                try requireOwner(caller, of: .plan(planId: planId), toDo: "change")
                let change = try decodeBody(
                    PlanAnnotationChangeJSON.self,
                    readBody,
                    shape: #"{"add":["k=v"],"remove":["k=v"],"remove_key":["k"]}"#
                )
                detail = try planStoreCall { () throws(StoreError) in
                    try store.changePlanAnnotations(planId: planId, change: change)
                }
            case ("PUT", "serviceaccount"):
                try requireOwner(caller, of: .plan(planId: planId), toDo: "change")
                let change = try decodeBody(
                    PlanServiceAccountJSON.self,
                    readBody,
                    shape: #"{"service_account":"NAME"}"#
                )
                detail = try planStoreCall { () throws(StoreError) in
                    try store.setPlanServiceAccount(planId: planId, name: change.serviceAccount)
                }
            case ("DELETE", "serviceaccount"):
                try requireOwner(caller, of: .plan(planId: planId), toDo: "change")
                detail = try planStoreCall { () throws(StoreError) in
                    try store.setPlanServiceAccount(planId: planId, name: nil)
                }
            case (_, "active"), (_, "resources"), (_, "annotations"), (_, "serviceaccount"):
                throw planMethodNotAllowed(request)
            default:
                throw KnitAPIError.notFound("no such endpoint: \(method) \(request.path)")
            }
            return .json(detail)
        default:
            throw KnitAPIError.notFound("no such endpoint: \(method) \(request.path)")
        }
    }

    // MARK: GET /api/plans

    func findPlans(_ request: APIRequest) throws -> APIResponse {
        var active: Bool?
        if let text = request.queryValue("active"), !text.isEmpty {
            switch text {
            case "true": active = true
            case "false": active = false
            default:
                throw KnitAPIError.badRequest(
                    "query specification is incorrect",
                    advice: "active must be true or false (not '\(text)')"
                )
            }
        }
        let image = request.queryValue("image").flatMap { $0.isEmpty ? nil : $0 }
        func tags(_ name: String) throws -> [Tag] {
            try request.queryValues(name).map { text in
                do { return try Tag(parsing: text) } catch {
                    throw KnitAPIError.badRequest(
                        "query specification is incorrect",
                        advice: "\(name): \(error)"
                    )
                }
            }
        }
        let inTags = try tags("in_tag")
        let outTags = try tags("out_tag")
        let found = try planStoreCall { () throws(StoreError) in
            try store.findPlans(active: active, image: image, inTags: inTags, outTags: outTags)
        }
        return .json(found)
    }

    // MARK: POST /api/plans

    func registerPlan(_ request: APIRequest, caller: Caller, readBody: BodyReader) throws -> APIResponse {
        let contentType = request.header("content-type") ?? ""
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmed() } ?? ""
        guard mediaType.lowercased() == "application/json" else {
            throw KnitAPIError.badRequest(
                "unexpected Content-Type: '\(contentType)'",
                advice: "send the plan spec as Content-Type: application/json"
            )
        }
        let spec = try decodeBody(PlanSpecJSON.self, readBody, shape: "a plan spec object")
        let detail = try planStoreCall { () throws(StoreError) in try store.registerPlan(spec, creator: caller.name) }
        var response = APIResponse.json(detail)
        response.createdIds = [detail.planId]
        return response
    }

    // MARK: helpers

    /// Like `storeCall`, keeping what plan errors carry: a first line that is the reason and further lines
    /// that are the advice (validation problems, the cycle), and the conflicting plan as `see`.
    func planStoreCall<T>(_ body: () throws(StoreError) -> T) throws -> T {
        do { return try body() } catch {
            switch error.code {
            case .invalid, .conflict:
                let lines = error.message.split(separator: "\n", maxSplits: 1).map(String.init)
                let advice = lines.count > 1 ? lines[1] : nil
                if error.code == .invalid { throw KnitAPIError.badRequest(lines.first ?? "", advice: advice) }
                throw KnitAPIError.conflict(lines.first ?? "", advice: advice, see: error.see)
            default:
                throw apiError(for: error)
            }
        }
    }

    private func decodeBody<T: Decodable>(_ type: T.Type, _ readBody: BodyReader, shape: String) throws -> T {
        let body = try readSmallBody(readBody, limit: RequestLimits.jsonBodyBytes)
        do { return try JSONDecoder().decode(type, from: Data(body)) } catch {
            // Well-formed JSON whose values do not fit (a tag without ':', a number for a path) is a spec
            // problem like any other, so it gets the same reason as the validation rules.
            let reason =
                JSONValue.parse(body) == nil ? "format error: body must be JSON: \(shape)" : "invalid plan spec"
            throw KnitAPIError.badRequest(reason, advice: planDecodingAdvice(error))
        }
    }

    private func requirePlanWrite(_ caller: Caller) throws {
        guard caller.role.canWrite else { throw KnitAPIError.forbidden }
    }

    private func planMethodNotAllowed(_ request: APIRequest) -> KnitAPIError {
        KnitAPIError(status: 405, reason: "method \(request.method) is not allowed on \(request.path)")
    }
}

private func planDecodingAdvice(_ error: any Error) -> String {
    guard let decoding = error as? DecodingError else { return "invalid JSON" }
    let context: DecodingError.Context
    switch decoding {
    case .dataCorrupted(let found), .typeMismatch(_, let found), .valueNotFound(_, let found),
        .keyNotFound(_, let found):
        context = found
    @unknown default: return "invalid JSON"
    }
    // The field as the validation rules name it: inputs[0].tags[1].
    var path = ""
    for key in context.codingPath {
        if let index = key.intValue {
            path += "[\(index)]"
        } else {
            path += (path.isEmpty ? "" : ".") + key.stringValue
        }
    }
    return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
}
