import KnitCore
import KnitStore
import KnitSystem

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

// `/api/plans…` (routes in Routes.swift): every endpoint answers Plan Detail (an array of them for the query).

extension KnitAPI {
    // MARK: GET /api/plans/{planId}

    func showPlan(planId: String) throws -> APIResponse {
        .json(try storeCall { () throws(StoreError) in try store.planDetail(planId: planId) })
    }

    // MARK: PUT, DELETE /api/plans/{planId}/active

    func setPlanActive(planId: String, active: Bool) throws -> APIResponse {
        .json(try storeCall { () throws(StoreError) in try store.setPlanActive(planId: planId, active: active) })
    }

    // MARK: PUT /api/plans/{planId}/resources, /annotations

    func changePlanResources(planId: String, readBody: BodyReader) throws -> APIResponse {
        let change = try decodeBody(
            PlanResourceChangeJSON.self,
            readBody,
            shape: #"{"set":{"cpu":"2"},"unset":["nvidia.com/gpu"]}"#
        )
        return .json(
            try storeCall { () throws(StoreError) in try store.changePlanResources(planId: planId, change: change) }
        )
    }

    func changePlanAnnotations(planId: String, readBody: BodyReader) throws -> APIResponse {
        let change = try decodeBody(
            PlanAnnotationChangeJSON.self,
            readBody,
            shape: #"{"add":["k=v"],"remove":["k=v"],"remove_key":["k"]}"#
        )
        return .json(
            try storeCall { () throws(StoreError) in try store.changePlanAnnotations(planId: planId, change: change) }
        )
    }

    // MARK: PUT, DELETE /api/plans/{planId}/serviceaccount

    func setPlanServiceAccount(planId: String, readBody: BodyReader) throws -> APIResponse {
        let change = try decodeBody(PlanServiceAccountJSON.self, readBody, shape: #"{"service_account":"NAME"}"#)
        return .json(
            try storeCall { () throws(StoreError) in
                try store.setPlanServiceAccount(planId: planId, name: change.serviceAccount)
            }
        )
    }

    func unsetPlanServiceAccount(planId: String) throws -> APIResponse {
        .json(try storeCall { () throws(StoreError) in try store.setPlanServiceAccount(planId: planId, name: nil) })
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
        let creator = request.creatorFilter
        let found = try storeCall { () throws(StoreError) in
            try store.findPlans(active: active, image: image, inTags: inTags, outTags: outTags, creator: creator)
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
        let detail = try storeCall { () throws(StoreError) in try store.registerPlan(spec, creator: caller.name) }
        var response = APIResponse.json(detail)
        response.createdIds = [detail.planId]
        return response
    }

    // MARK: helpers

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
