import KnitCore
import KnitStore
import Logging

// The REST API at a glance: every route once, with who may call it and the handler that answers it.
//
// The router matches the path first (trailing slash optional, `{…}` matches one segment), then the method:
// a path that exists for other methods answers 405 with `Allow`, HEAD is served wherever GET is (the body
// dropped), anything else is 404. Access is checked before the handler runs, so before any body is read.

extension KnitAPI {
    static let routes: RouteTable = {
        var routes = RouteTable()
        routes.get("/api/health", .open) { api, _ in api.health() }
        // Extension: who the token belongs to, so a client (the web console) can offer only what the role
        // allows. The API still checks every request itself.
        routes.get("/api/whoami") { _, call in
            .json(WhoAmIJSON(name: call.caller.name, role: call.caller.role.rawValue))
        }

        routes.get("/api/data") { api, call in try api.findData(call.request) }
        routes.post("/api/data", .writer) { api, call in
            try api.uploadData(call.request, caller: call.caller, readBody: call.readBody, logger: call.logger)
        }
        routes.get("/api/data/{knitId}") { api, call in
            try api.downloadData(call.request, knitId: call.id, caller: call.caller, logger: call.logger)
        }
        routes.put("/api/data/{knitId}", .owner(.data, toDo: "change the tags of")) { api, call in
            try api.updateTags(knitId: call.id, readBody: call.readBody)
        }
        routes.get("/api/data/{knitId}/lineage") { api, call in try api.dataLineage(call.request, knitId: call.id) }

        routes.get("/api/plans") { api, call in try api.findPlans(call.request) }
        routes.post("/api/plans", .writer) { api, call in
            try api.registerPlan(call.request, caller: call.caller, readBody: call.readBody)
        }
        routes.get("/api/plans/{planId}") { api, call in try api.showPlan(planId: call.id) }
        routes.get("/api/plans/{planId}/graph") { api, call in try api.planGraph(call.request, planId: call.id) }
        routes.put("/api/plans/{planId}/active", .owner(.plan, toDo: "change")) { api, call in
            try api.setPlanActive(planId: call.id, active: true)
        }
        routes.delete("/api/plans/{planId}/active", .owner(.plan, toDo: "change")) { api, call in
            try api.setPlanActive(planId: call.id, active: false)
        }
        routes.put("/api/plans/{planId}/resources", .owner(.plan, toDo: "change")) { api, call in
            try api.changePlanResources(planId: call.id, readBody: call.readBody)
        }
        routes.put("/api/plans/{planId}/annotations", .owner(.plan, toDo: "change")) { api, call in
            try api.changePlanAnnotations(planId: call.id, readBody: call.readBody)
        }
        routes.put("/api/plans/{planId}/serviceaccount", .owner(.plan, toDo: "change")) { api, call in
            try api.setPlanServiceAccount(planId: call.id, readBody: call.readBody)
        }
        routes.delete("/api/plans/{planId}/serviceaccount", .owner(.plan, toDo: "change")) { api, call in
            try api.unsetPlanServiceAccount(planId: call.id)
        }

        routes.get("/api/runs") { api, call in try api.findRuns(call.request) }
        routes.get("/api/runs/{runId}") { api, call in try api.showRun(runId: call.id) }
        routes.delete("/api/runs/{runId}", .owner(.run, toDo: "delete")) { api, call in
            try api.deleteRun(runId: call.id)
        }
        routes.get("/api/runs/{runId}/log") { api, call in
            let follow = call.request.query.contains { $0.name == "follow" }
            return try api.runLog(runId: call.id, follow: follow, caller: call.caller)
        }
        routes.put("/api/runs/{runId}/abort", .owner(.run, toDo: "stop")) { api, call in
            try api.stopRun(runId: call.id, fail: true)
        }
        routes.put("/api/runs/{runId}/tearoff", .owner(.run, toDo: "stop")) { api, call in
            try api.stopRun(runId: call.id, fail: false)
        }
        routes.put("/api/runs/{runId}/retry", .owner(.run, toDo: "retry")) { api, call in
            try api.retryRun(runId: call.id)
        }

        // nginx's `auth_request` for the image registry; the method it judges is in `X-Original-Method`.
        routes.get("/api/auth/registry") { api, call in
            try api.registryAuthorization(call.request, caller: call.caller, logger: call.logger)
        }

        // Prometheus' scrape target (Metrics.swift): outside /api/ where scrapers look for it; admins only,
        // since it tells how busy the server is and how much it holds.
        routes.get("/metrics", .admin) { api, _ in try api.metricsResponse() }
        return routes
    }()
}

/// Who may call a route. The router checks it before the handler runs.
enum RouteAccess: Sendable {
    /// No token needed.
    case open
    /// Any valid token: every role may read.
    case anyRole
    /// A role that may write.
    case writer
    /// Only an admin.
    case admin
    /// A role that may write, and the caller owns the thing the path's `{id}` names, or is an admin
    /// (``Ownership``); 404 when it does not exist, 403 naming the owner otherwise.
    case owner(OwnedKind, toDo: String)

    enum OwnedKind: Sendable {
        case data, plan, run

        func thing(_ id: String) -> OwnedThing {
            switch self {
            case .data: return .data(knitId: id)
            case .plan: return .plan(planId: id)
            case .run: return .run(runId: id)
            }
        }
    }
}

/// One request as a handler sees it, after the router matched its route and checked its access.
struct RouteCall {
    let request: APIRequest
    /// The values of the path's `{…}` segments, in order.
    let parameters: [String]
    /// The token's user; ``Caller/anonymous`` on an `.open` route.
    let caller: Caller
    let readBody: KnitAPI.BodyReader
    let logger: Logger

    /// The first `{…}` value: the Data, Plan or Run the path names.
    var id: String { parameters[0] }
}

struct Route: Sendable {
    typealias Handler = @Sendable (KnitAPI, RouteCall) throws -> APIResponse

    enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter
    }

    /// The route's place in the table (its metrics slot).
    let index: Int
    let method: String
    /// The path as the table lists it (`/api/data/{knitId}`): the route's label in the metrics.
    let path: String
    let pattern: [Segment]
    let access: RouteAccess
    let handler: Handler

    func matches(_ segments: [String]) -> [String]? {
        guard segments.count == pattern.count else { return nil }
        var parameters: [String] = []
        for (segment, part) in zip(segments, pattern) {
            switch part {
            case .literal(let literal): guard segment == literal else { return nil }
            case .parameter: parameters.append(segment)
            }
        }
        return parameters
    }
}

/// Routes by method and path pattern, in the spirit of `router.get("/api/data", use:)`.
struct RouteTable: Sendable {
    private(set) var routes: [Route] = []

    enum Match {
        case found(Route, parameters: [String])
        /// The path exists, for these methods only; `open` when no route of the path needs a token.
        case wrongMethod(allowed: [String], open: Bool)
        case noSuchPath
    }

    mutating func get(_ path: String, _ access: RouteAccess = .anyRole, use handler: @escaping Route.Handler) {
        add("GET", path, access, handler)
    }
    mutating func post(_ path: String, _ access: RouteAccess = .anyRole, use handler: @escaping Route.Handler) {
        add("POST", path, access, handler)
    }
    mutating func put(_ path: String, _ access: RouteAccess = .anyRole, use handler: @escaping Route.Handler) {
        add("PUT", path, access, handler)
    }
    mutating func delete(_ path: String, _ access: RouteAccess = .anyRole, use handler: @escaping Route.Handler) {
        add("DELETE", path, access, handler)
    }

    private mutating func add(
        _ method: String,
        _ path: String,
        _ access: RouteAccess,
        _ handler: @escaping Route.Handler
    ) {
        let pattern = path.split(separator: "/").map { part -> Route.Segment in
            part.hasPrefix("{") && part.hasSuffix("}") ? .parameter : .literal(String(part))
        }
        precondition(
            !routes.contains { $0.method == method && $0.pattern == pattern },
            "route \(method) \(path) is listed twice"
        )
        routes.append(
            Route(index: routes.count, method: method, path: path, pattern: pattern, access: access, handler: handler)
        )
    }

    /// `segments`: the request path split at `/`, empty segments dropped (so a trailing slash is optional).
    func match(method: String, segments: [String]) -> Match {
        var allowed: [String] = []
        var open = true
        for route in routes {
            guard let parameters = route.matches(segments) else { continue }
            if route.method == method || (method == "HEAD" && route.method == "GET") {
                return .found(route, parameters: parameters)
            }
            allowed.append(route.method)
            if route.method == "GET" { allowed.append("HEAD") }
            if case .open = route.access {} else { open = false }
        }
        return allowed.isEmpty ? .noSuchPath : .wrongMethod(allowed: allowed, open: open)
    }
}

extension Caller {
    /// The caller of an `.open` route, which asks for no token.
    static let anonymous = Caller(name: "", role: .reader)
}

/// `GET /api/whoami`: the token's user and role.
struct WhoAmIJSON: Encodable {
    let name: String
    let role: String
}
