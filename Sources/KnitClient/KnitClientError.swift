/// Why a client operation failed. `description` is the one line the CLI shows after `knit: `.
public struct KnitClientError: Error, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: String { case profile, server, transport, archive, io, usage, response, checksum }
        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// A knitprofile, profile store or knitenv is missing or malformed.
        public static let profile = Code(.profile)
        /// The server answered with an error status (see ``KnitClientError/status``).
        public static let server = Code(.server)
        /// No answer: connect, TLS, timeout (see ``KnitClientError/underlying``, an `HTTPError`).
        public static let transport = Code(.transport)
        /// Packing or unpacking the Data archive failed.
        public static let archive = Code(.archive)
        /// A local file could not be read or written.
        public static let io = Code(.io)
        /// The caller asked for something meaningless (e.g. a duration without a start).
        public static let usage = Code(.usage)
        /// The server answered 2xx with a body that is not what the API promises.
        public static let response = Code(.response)
        /// A download's bytes do not have the MD5 the server sent for them (`x-checksum-md5`).
        public static let checksum = Code(.checksum)

        public var description: String { kind.rawValue }
    }

    public let code: Code
    public let message: String
    /// The HTTP status, for ``Code/server``.
    public let status: Int?
    public let underlying: (any Error)?

    public init(_ code: Code, _ message: String, status: Int? = nil, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.underlying = underlying
    }

    /// `404: data 'x' not found` for server errors, the message otherwise.
    public var description: String { status.map { "\($0): \(message)" } ?? message }
}

/// The version of the `knit` client, shown by `knit version` and sent as the User-Agent.
public let knitClientVersion = "0.1.0"
