/// An error meant for the API client: status code plus Knitfab's `{reason, advice, see}`.
///
/// The JSON body also carries `message` (reason and advice joined), which is what Knitfab v1.6.1
/// actually sends, so both its CLI and ours understand it. Internal details never go in here.
public struct KnitAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var reason: String
    public var advice: String?
    public var see: String?
    /// For a 503: when the client may try again (sent as `Retry-After`).
    public var retryAfterSeconds: Int?

    public init(status: Int, reason: String, advice: String? = nil, see: String? = nil, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.reason = reason
        self.advice = advice
        self.see = see
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var message: String { [reason, advice].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: "\n") }
    public var description: String { "\(status): \(message)" }

    public static func badRequest(_ reason: String, advice: String? = nil) -> KnitAPIError {
        KnitAPIError(status: 400, reason: reason, advice: advice)
    }
    public static func notFound(_ reason: String) -> KnitAPIError { KnitAPIError(status: 404, reason: reason) }
    public static func conflict(_ reason: String, advice: String? = nil, see: String? = nil) -> KnitAPIError {
        KnitAPIError(status: 409, reason: reason, advice: advice, see: see)
    }
    public static let unauthorized = KnitAPIError(
        status: 401,
        reason: "missing or invalid token",
        advice: "send 'Authorization: Bearer TOKEN' (see the knitprofile handout)"
    )
    public static let forbidden = KnitAPIError(status: 403, reason: "your role may not do this")

    /// The JSON body sent for this error.
    public var body: ErrorBodyJSON { ErrorBodyJSON(message: message, reason: reason, advice: advice, see: see) }
}

/// Wire form of ``KnitAPIError``.
public struct ErrorBodyJSON: Codable, Sendable, Equatable {
    public var message: String
    public var reason: String?
    public var advice: String?
    public var see: String?
    public init(message: String, reason: String? = nil, advice: String? = nil, see: String? = nil) {
        self.message = message
        self.reason = reason
        self.advice = advice
        self.see = see
    }
}
