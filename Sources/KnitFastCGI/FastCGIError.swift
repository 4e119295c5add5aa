/// Errors of the FastCGI layer: socket setup and the per-request streams.
public struct FastCGIError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// The socket path is served by another live process.
        case addressInUse
        /// Creating, binding or configuring the listening socket failed.
        case socket
        /// The web server (or its client) went away mid-request; the request body or response is incomplete.
        case connectionLost
    }
    public let code: Code
    public let message: String
    /// errno or libfcgi's stream error code, when there was one.
    public let cause: Int32?

    init(_ code: Code, _ message: String, cause: Int32? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { cause.map { "\(message) (\($0))" } ?? message }
}
