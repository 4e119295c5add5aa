/// Header fields in arrival order; lookups ignore ASCII case, as HTTP field names do.
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)]

    public init(_ fields: [(name: String, value: String)] = []) { self.fields = fields }

    public init(dictionaryLiteral elements: (String, String)...) {
        fields = elements.map { (name: $0.0, value: $0.1) }
    }

    /// The first value of `name`, or nil.
    public subscript(name: String) -> String? {
        fields.first { Self.sameName($0.name, name) }?.value
    }

    /// Every value of `name`, in order.
    public func values(for name: String) -> [String] {
        fields.filter { Self.sameName($0.name, name) }.map(\.value)
    }

    public mutating func append(_ name: String, _ value: String) { fields.append((name: name, value: value)) }

    public var isEmpty: Bool { fields.isEmpty }
    public var count: Int { fields.count }
    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }

    static func sameName(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && zip(a.utf8, b.utf8).allSatisfy { asciiLower($0) == asciiLower($1) }
    }

    private static func asciiLower(_ byte: UInt8) -> UInt8 {
        (0x41...0x5A).contains(byte) ? byte | 0x20 : byte
    }
}

/// What to send as a request body.
public enum HTTPBody {
    case bytes([UInt8])
    /// Produced on demand: `read` fills as much of the buffer as it likes and returns the count; 0 means the
    /// end. With `length` nil the body goes out chunked (and may carry trailers). A thrown error aborts
    /// the request and comes back as ``HTTPError/underlying``.
    case stream(length: Int64?, read: (UnsafeMutableRawBufferPointer) throws -> Int)
}

/// Request trailers: names are announced in a `Trailer:` header before the body; values are asked for
/// once the body has ended (so they can carry a checksum of it). Only sent with a chunked body.
public struct HTTPTrailers {
    public var names: [String]
    public var values: () -> HTTPHeaders

    public init(names: [String], values: @escaping () -> HTTPHeaders) {
        self.names = names
        self.values = values
    }
}

/// Bytes moved so far; a total is nil when unknown (chunked upload, response without Content-Length).
public struct HTTPProgress: Sendable, Equatable {
    public var uploaded: Int64
    public var uploadTotal: Int64?
    public var downloaded: Int64
    public var downloadTotal: Int64?
}

public struct HTTPRequest {
    public var method: String
    public var url: String
    public var headers: HTTPHeaders
    public var body: HTTPBody?
    public var trailers: HTTPTrailers?
    public var progress: ((HTTPProgress) -> Void)?
    /// Asked about once a second while the transfer runs, bytes arriving or not; true stops it
    /// (``HTTPError/Code/aborted``). Lets another thread end a long watch or followed log that is silent.
    public var isCancelled: (@Sendable () -> Bool)?
    /// Largest response body collected into ``HTTPResponse/body``; more is an error, not a truncation.
    public var maximumCollectedBody: Int

    public init(
        method: String = "GET",
        url: String,
        headers: HTTPHeaders = [:],
        body: HTTPBody? = nil,
        trailers: HTTPTrailers? = nil,
        progress: ((HTTPProgress) -> Void)? = nil,
        isCancelled: (@Sendable () -> Bool)? = nil,
        maximumCollectedBody: Int = 64 << 20
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.trailers = trailers
        self.progress = progress
        self.isCancelled = isCancelled
        self.maximumCollectedBody = maximumCollectedBody
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    /// Fields sent after a chunked body (e.g. `x-checksum-md5`); curl hands them over with the headers,
    /// they are kept apart here.
    public var trailers: HTTPHeaders
    /// The body, unless it was streamed to a sink (2xx responses with a sink leave this empty).
    public var body: [UInt8]

    public var isSuccess: Bool { (200..<300).contains(status) }

    /// A header, or failing that a trailer, of this name.
    public func field(_ name: String) -> String? { headers[name] ?? trailers[name] }
}

/// A request that got no complete HTTP response: could not connect, TLS refused, timed out, or aborted by
/// one of our own callbacks. An HTTP error status is not an `HTTPError`; it is a response.
public struct HTTPError: Error, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: String { case connect, tls, timeout, aborted, other }
        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// Name resolution or TCP connect failed.
        public static let connect = Code(.connect)
        /// Handshake failed or the server's certificate was not trusted.
        public static let tls = Code(.tls)
        public static let timeout = Code(.timeout)
        /// A body source, body sink, progress callback or ``HTTPRequest/isCancelled`` stopped the transfer.
        public static let aborted = Code(.aborted)
        public static let other = Code(.other)

        public var description: String { kind.rawValue }
    }

    public let code: Code
    /// `METHOD URL: curl's explanation`.
    public let message: String
    /// The libcurl `CURLcode`, when curl reported the failure.
    public let curlCode: Int?
    /// The error thrown by a body source or sink, when that is what stopped the transfer.
    public let underlying: (any Error)?

    public init(code: Code, message: String, curlCode: Int? = nil, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.curlCode = curlCode
        self.underlying = underlying
    }

    public var description: String { message }
}
