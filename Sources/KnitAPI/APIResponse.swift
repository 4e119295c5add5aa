import KnitCore

/// What a handler answers: status, headers and a body that is either ready or streamed.
public struct APIResponse: Sendable {
    /// Takes the next bytes of a streamed body. An empty buffer sends nothing: it asks the transport whether
    /// the client is still there, and throws when it is not (a stream that waits for data calls it so).
    public typealias Sink = (UnsafeRawBufferPointer) throws -> Void

    public enum Body: Sendable {
        case empty
        case bytes([UInt8])
        /// Written after the head; `Sink` throws when the client is gone, which should end the stream.
        case stream(@Sendable (Sink) throws -> Void)
    }

    public var status: Int
    public var headers: [(String, String)]
    public var body: Body
    /// Ids a change made (a new Data, Plan or Run's outputs), for the audit line; never sent.
    var createdIds: [String] = []

    public init(status: Int, headers: [(String, String)] = [], body: Body = .empty) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    static func json<T: Encodable>(_ value: T, status: Int = 200) -> APIResponse {
        do {
            let bytes = try KnitJSONBridge.encode(value)
            return APIResponse(status: status, headers: [("Content-Type", "application/json")], body: .bytes(bytes))
        } catch {
            return APIResponse(
                status: 500,
                headers: [("Content-Type", "application/json")],
                body: .bytes(Array(#"{"message":"internal error"}"#.utf8))
            )
        }
    }

    static func error(_ error: KnitAPIError) -> APIResponse {
        var response = json(error.body, status: error.status)
        if let seconds = error.retryAfterSeconds { response.headers.append(("Retry-After", "\(seconds)")) }
        return response
    }

    /// Collects a body into memory (tests and small responses).
    public func collectBody() throws -> [UInt8] {
        switch body {
        case .empty: return []
        case .bytes(let bytes): return bytes
        case .stream(let writer):
            var collected: [UInt8] = []
            try writer { collected.append(contentsOf: $0) }
            return collected
        }
    }
}

enum KnitJSONBridge {
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] { try KnitJSON.encode(value) }
}
