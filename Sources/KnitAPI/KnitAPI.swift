import KnitArchive
import KnitCore
import KnitStore
import Logging

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
        var logger = self.logger
        logger[metadataKey: "request.id"] = "\(requestCounter.next())"
        logger[metadataKey: "request.method"] = "\(request.method)"
        // A client may put its token in the path by mistake (`/api/knit_…`); the log must never hold one.
        logger[metadataKey: "request.path"] = "\(redactingTokens(request.path))"
        do {
            let response = try route(request, readBody: readBody, logger: logger)
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

    private func route(_ request: APIRequest, readBody: BodyReader, logger: Logger) throws -> APIResponse {
        // Knitfab adds a trailing slash to every path; accept both spellings.
        var segments = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard segments.first == "api" else { throw KnitAPIError.notFound("no such endpoint: \(request.path)") }
        segments.removeFirst()

        if segments == ["health"] {
            guard request.method == "GET" || request.method == "HEAD" else { throw methodNotAllowed(request) }
            return health()
        }

        let caller = try authenticate(request)
        // Reads change nothing and are not audited (the registry check, a GET, audits the push it judges).
        let changes = request.method != "GET" && request.method != "HEAD"
        do {
            let response = try routeAuthenticated(
                request,
                segments: segments,
                caller: caller,
                readBody: readBody,
                logger: logger
            )
            if changes, response.status < 300 {
                audit(caller, request, outcome: "done", created: response.createdIds, logger: logger)
            }
            return response
        } catch let error as KnitAPIError where changes && error.status == 403 {
            audit(caller, request, outcome: "denied", logger: logger)
            throw error
        }
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

    private func routeAuthenticated(
        _ request: APIRequest,
        segments: [String],
        caller: Caller,
        readBody: BodyReader,
        logger: Logger
    ) throws -> APIResponse {
        switch (request.method, segments.count, segments.first) {
        case ("GET", 1, "data"):
            return try findData(request)
        case ("POST", 1, "data"):
            try requireWrite(caller)
            return try uploadData(request, caller: caller, readBody: readBody, logger: logger)
        case ("GET", 2, "data"), ("HEAD", 2, "data"):
            return try downloadData(request, knitId: segments[1], caller: caller, logger: logger)
        case ("PUT", 2, "data"):
            try requireOwner(caller, of: .data(knitId: segments[1]), toDo: "change the tags of")
            return try updateTags(knitId: segments[1], readBody: readBody)
        case (_, 1, "data"), (_, 2, "data"):
            throw methodNotAllowed(request)
        case (_, 3, "data"):
            return try routeDataSubresource(request, segments: segments)
        case (_, _, "plans"):
            return try routePlans(request, segments: segments, caller: caller, readBody: readBody)
        case (_, _, "runs"):
            return try routeRuns(request, segments: segments, caller: caller)
        case ("GET", 1, "whoami"):
            // Extension: who the token belongs to, so a client (the web console) can offer only what
            // the role allows. The API still checks every request itself.
            return .json(WhoAmIJSON(name: caller.name, role: caller.role.rawValue))
        case ("GET", 2, "auth") where segments[1] == "registry", ("HEAD", 2, "auth") where segments[1] == "registry":
            return try registryAuthorization(request, caller: caller, logger: logger)
        default:
            throw KnitAPIError.notFound("no such endpoint: \(request.method) \(request.path)")
        }
    }

    private func health() -> APIResponse {
        .json(
            HealthJSON(
                status: "ok",
                version: Self.version,
                formats: ServedFormat.preferenceOrder.map(\.contentType)
            )
        )
    }

    private func authenticate(_ request: APIRequest) throws -> Caller {
        guard let token = bearerToken(fromAuthorization: request.header("authorization")),
            let user = store.authenticate(token: token)
        else { throw KnitAPIError.unauthorized }
        return Caller(name: user.name, role: user.role)
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

    private func requireWrite(_ caller: Caller) throws {
        guard caller.role.canWrite else { throw KnitAPIError.forbidden }
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
                reason: "\(thing) belongs to \(owner.isEmpty ? "no user" : "user '\(owner)'"); only its owner or an admin may \(action) it",
                advice: "ask its owner or an administrator"
            )
        }
    }

    private func methodNotAllowed(_ request: APIRequest) -> KnitAPIError {
        KnitAPIError(status: 405, reason: "method \(request.method) is not allowed on \(request.path)")
    }
}

/// `GET /api/health`: liveness, version and the archive formats this server reads and writes, best first.
public struct HealthJSON: Codable, Sendable, Equatable {
    public var status: String
    public var version: String
    public var formats: [String]
}

/// Numbers requests for log correlation.
final class RequestCounter: @unchecked Sendable {  // guarded by `lock`
    private var lock = pthread_mutex_t()
    private var value: UInt64 = 0
    init() { pthread_mutex_init(&lock, nil) }
    func next() -> UInt64 {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        value += 1
        return value
    }
}

/// `GET /api/whoami`: the token's user and role.
private struct WhoAmIJSON: Encodable {
    let name: String
    let role: String
}
