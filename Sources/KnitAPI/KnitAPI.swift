import KnitArchive
import KnitCore
import KnitStore
import KnitSystem
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Knit's REST API: routing, authentication and the handlers, independent of the transport.
///
/// knitd feeds it FastCGI requests; tests call ``handle(_:readBody:)`` directly.
public final class KnitAPI: Sendable {
    /// Reads request body bytes; returns 0 at the end of the body and throws when the client went away.
    public typealias BodyReader = (UnsafeMutableRawBufferPointer) throws -> Int

    public static let version = "0.1.0"

    let store: KnitStore
    let logger: Logger
    let transfers: TransferSlots
    /// Followed run logs: a pool of their own, so readers following logs never keep anyone from uploading.
    let logFollowers: TransferSlots
    let requestCounter = RequestCounter()
    let metrics = APIMetrics(routes: KnitAPI.routes.routes)

    let onChange: (@Sendable () -> Void)?
    /// Most bytes one Data may hold (declared file sizes, sparse holes included); nil: only the free space.
    let maxDataBytes: Int64?
    /// Data up to this size get their download digest computed before the first download of a format is sent
    /// (a dry run: gzip level 1 manages ~50 MB/s, so about a second at the default); larger ones get it computed
    /// while that first download streams, and sent with every later one.
    let digestDryRunLimit: Int64

    /// - Parameters:
    ///   - transferSlots: uploads plus downloads allowed at once; more get 503.
    ///   - followSlots: followed run logs (`GET /api/runs/{id}/log?follow`) allowed at once; more get 503.
    ///   - slotsPerUser: the most of either pool one user may hold; default half of each pool.
    ///   - maxDataBytes: the most content one upload may declare; the free space of the store's file system
    ///     at the start of each upload is always a limit too.
    ///   - onChange: called after every successful change of Data, Plans or Runs (each may have made Runs
    ///     startable or asked one to stop); knitd rings the scheduler's wake-up socket with it.
    public init(
        store: KnitStore,
        logger: Logger,
        transferSlots: Int = 16,
        followSlots: Int = 4,
        slotsPerUser: Int? = nil,
        maxDataBytes: Int64? = nil,
        digestDryRunLimit: Int64 = 64 << 20,
        onChange: (@Sendable () -> Void)? = nil
    ) {
        self.store = store
        self.logger = logger
        self.transfers = TransferSlots(capacity: transferSlots, perUser: slotsPerUser, purpose: "transfers")
        self.logFollowers = TransferSlots(capacity: followSlots, perUser: slotsPerUser, purpose: "log streams")
        self.maxDataBytes = maxDataBytes
        self.digestDryRunLimit = digestDryRunLimit
        self.onChange = onChange
    }

    /// Transfers currently holding a slot (for tests and metrics).
    public var transfersInFlight: Int { transfers.inUse }

    /// Answers one request. Never throws: every failure becomes an error response, internal details are
    /// logged with the request id and not sent.
    public func handle(_ request: APIRequest, readBody: BodyReader) -> APIResponse {
        let started = APIMetrics.now()
        var routeIndex: Int?
        let metrics = self.metrics
        let requestID = request.requestID ?? "\(requestCounter.next())"
        var response = answer(request, id: requestID, routeIndex: &routeIndex) { buffer in
            let count = try readBody(buffer)
            metrics.received(count)
            return count
        }
        let slot = metrics.slot(method: request.method, route: routeIndex)
        metrics.record(slot: slot, status: response.status, nanoseconds: APIMetrics.now() &- started)
        response.headers.append(("X-Request-Id", requestID))
        switch response.body {
        case .empty: break
        case .bytes(let bytes): metrics.sent(bytes.count)
        case .stream(let produce):
            response.body = .stream { sink in
                try produce { bytes in
                    try sink(bytes)
                    metrics.sent(bytes.count)
                }
            }
        }
        return response
    }

    private func answer(
        _ request: APIRequest,
        id: String,
        routeIndex: inout Int?,
        readBody: BodyReader
    ) -> APIResponse {
        var logger = self.logger
        // A client may put its token in the path by mistake (`/api/knit_…`); the log must never hold one.
        logger.handler = RequestLogHandler(
            base: logger.handler,
            id: id,
            method: request.method,
            path: redactingTokens(request.path)
        )
        do {
            let response = try route(request, routeIndex: &routeIndex, readBody: readBody, logger: logger)
            if response.status < 300, request.method != "GET", request.method != "HEAD" { onChange?() }
            return response
        } catch let error as KnitAPIError {
            if error.status >= 500 { logger.error("request failed", metadata: ["error": "\(error)"]) }
            var response = APIResponse.error(error)
            if error.status == 401 { response.headers += Self.challenges(for: request) }
            return response
        } catch {
            logger.error("request failed unexpectedly", metadata: ["error": "\(String(reflecting: error))"])
            return .error(KnitAPIError(status: 500, reason: "internal error", advice: "see the server log"))
        }
    }

    /// `routeIndex`: set to the matched route's place in the table, for the metrics.
    private func route(
        _ request: APIRequest,
        routeIndex: inout Int?,
        readBody: BodyReader,
        logger: Logger
    ) throws -> APIResponse {
        // Knitfab adds a trailing slash to every path; accept both spellings.
        let segments = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard segments.first == "api" || segments == ["metrics"] else {
            throw KnitAPIError.notFound("no such endpoint: \(request.path)")
        }

        let match = Self.routes.match(method: request.method, segments: segments)
        switch match {
        case .found(let route, let parameters):
            routeIndex = route.index
            if case .open = route.access {
                return try call(route, request, parameters: parameters, caller: .anonymous, readBody, logger)
            }
        case .wrongMethod(let allowed, open: true):
            return methodNotAllowed(request, allowed: allowed)
        default:
            break
        }
        // Everything but the open routes needs a token, even to learn that a path does not exist.
        let caller = try authenticate(request)
        // Reads change nothing and are not audited (the registry check, a GET, audits the push it judges).
        let changes = request.method != "GET" && request.method != "HEAD"
        do {
            let response: APIResponse
            switch match {
            case .found(let route, let parameters):
                try checkAccess(route.access, caller: caller, parameters: parameters)
                response = try call(route, request, parameters: parameters, caller: caller, readBody, logger)
            case .wrongMethod(let allowed, _):
                return methodNotAllowed(request, allowed: allowed)
            case .noSuchPath:
                throw KnitAPIError.notFound("no such endpoint: \(request.method) \(request.path)")
            }
            if changes, response.status < 300 {
                audit(caller, request, outcome: "done", created: response.createdIds, logger: logger)
            }
            return response
        } catch let error as KnitAPIError where changes && error.status == 403 {
            audit(caller, request, outcome: "denied", logger: logger)
            throw error
        }
    }

    private func call(
        _ route: Route,
        _ request: APIRequest,
        parameters: [String],
        caller: Caller,
        _ readBody: BodyReader,
        _ logger: Logger
    ) throws -> APIResponse {
        // The body reader lives only as long as this request; no handler keeps it past its return.
        var response = try withoutActuallyEscaping(readBody) { readBody in
            try route.handler(
                self,
                RouteCall(request: request, parameters: parameters, caller: caller, readBody: readBody, logger: logger)
            )
        }
        // HEAD is GET without the body; dropping a streamed body also frees any slot it held.
        if request.method == "HEAD" { response.body = .empty }
        return response
    }

    /// 403 unless `caller` may call a route with `access`; checked before the handler reads any body.
    private func checkAccess(_ access: RouteAccess, caller: Caller, parameters: [String]) throws {
        switch access {
        case .open, .anyRole:
            return
        case .writer:
            guard caller.role.canWrite else { throw KnitAPIError.forbidden }
        case .admin:
            guard caller.role == .admin else { throw KnitAPIError.forbidden }
        case .owner(let kind, let action):
            try requireOwner(caller, of: kind.thing(parameters[0]), toDo: action)
        }
    }

    /// 405 with the methods the path does allow (RFC 9110 asks for `Allow`).
    private func methodNotAllowed(_ request: APIRequest, allowed: [String]) -> APIResponse {
        var response = APIResponse.error(
            KnitAPIError(status: 405, reason: "method \(request.method) is not allowed on \(request.path)")
        )
        response.headers.append(("Allow", allowed.joined(separator: ", ")))
        return response
    }

    /// One line per change and per refused change: who (user and role), what (method and path, which
    /// name the ids acted on) and what it made. Never the query string: it may carry anything a client put
    /// there, tokens included.
    func audit(_ caller: Caller, _ request: APIRequest, outcome: String, created: [String] = [], logger: Logger) {
        var metadata: Logger.Metadata = [
            "audit.user": "\(caller.name)",
            "audit.role": "\(caller.role.rawValue)",
            "audit.action": "\(request.method) \(redactingTokens(request.path))",
            "audit.outcome": "\(outcome)",
        ]
        if !created.isEmpty { metadata["audit.created"] = "\(created.joined(separator: ","))" }
        logger.notice("audit", metadata: metadata)
    }

    func health() -> APIResponse {
        .json(
            HealthJSON(
                status: "ok",
                version: Self.version,
                formats: ServedFormat.preferenceOrder.map(\.contentType),
                build: BuildIdentity.current,
                uploadTrailers: false
            )
        )
    }

    private func authenticate(_ request: APIRequest) throws -> Caller {
        guard let token = bearerToken(fromAuthorization: request.header("authorization")) else {
            throw KnitAPIError.unauthorized
        }
        // Told apart only for the holder of the token, who may as well learn why it stopped working.
        switch store.check(token: token) {
        case .valid(let user):
            return Caller(name: user.name, role: user.role)
        case .unknown:
            throw KnitAPIError.unauthorized
        case .expired(let user, let at):
            throw KnitAPIError(
                status: 401,
                reason: "token expired at \(at) (user '\(user)')",
                advice: "ask an administrator for a new token (knitadm user token \(user))"
            )
        case .disabled(let user):
            throw KnitAPIError(
                status: 401,
                reason: "user '\(user)' is disabled",
                advice: "ask an administrator to enable it again (knitadm user enable \(user))"
            )
        }
    }

    /// RFC 7235: a 401 names the schemes that would work. Bearer always; Basic (token as the password, as
    /// Knitfab's CLI sends it) only when the client did not use Bearer, so a browser that sent a Bearer token
    /// (the web console always does) never gets a Basic challenge and never pops a login dialog.
    /// Not for nginx's registry check (`/api/auth/registry`): nginx would copy the header into its own 401 for
    /// `/v2/`, where docker and podman must see only the registry's Basic challenge.
    static func challenges(for request: APIRequest) -> [(String, String)] {
        let segments = request.path.split(separator: "/")
        if segments == ["api", "auth", "registry"] { return [] }
        let scheme = request.header("authorization")?.drop { $0 == " " }.prefix { $0 != " " }.lowercased()
        var headers = [("WWW-Authenticate", #"Bearer realm="knit""#)]
        if scheme != "bearer" { headers.append(("WWW-Authenticate", #"Basic realm="knit""#)) }
        return headers
    }

    /// 403 unless the caller may change `thing` (``Ownership``); 404 when it does not exist. Checked before
    /// any body is read.
    func requireOwner(_ caller: Caller, of thing: OwnedThing, toDo action: String) throws {
        guard caller.role.canWrite else { throw KnitAPIError.forbidden }
        let store = self.store
        let owner = try storeCall { () throws(StoreError) in try store.owner(of: thing) } ?? ""
        guard Ownership.mayChange(owner: owner, caller: caller.name, role: caller.role) else {
            throw KnitAPIError(
                status: 403,
                reason:
                    "\(thing) belongs to \(owner.isEmpty ? "no user" : "user '\(owner)'"); only its owner or an admin may \(action) it",
                advice: "ask its owner or an administrator"
            )
        }
    }
}

/// `GET /api/health`: liveness, version and the archive formats this server reads and writes, best first.
public struct HealthJSON: Codable, Sendable, Equatable {
    public var status: String
    public var version: String
    public var formats: [String]
    /// The server binary's GNU build id (hex), so an upgrade can be seen to have taken effect; absent when the
    /// binary has none. Additive: older clients ignore it.
    public var build: String?
    /// Whether an upload's HTTP trailers reach the server: never for knitd (nginx drops request trailers and
    /// FastCGI has none), so clients need not compute the `x-checksum-md5` trailer Knitfab reads (its MD5 cost a
    /// push about 1.7 CPU-seconds per GiB). Additive; a server without it is taken to read them.
    public var uploadTrailers: Bool?
}

/// Numbers requests for log correlation.
final class RequestCounter: Sendable {
    private let value = Atomic<UInt64>(0)
    func next() -> UInt64 { value.add(1, ordering: .relaxed).newValue }
}
