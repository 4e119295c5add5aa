internal import Glibc

/// A POSIX error number, told by its system description (`strerror`).
public struct Errno: Error, RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }

    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's `errno`, read now: take it before any other call can overwrite it.
    public static var current: Errno { Errno(errno) }

    /// The system's text for this number, e.g. "No such file or directory". Uses `strerror`.
    public var description: String { String(cString: strerror(rawValue)) }

    public static let noSuchFile = Errno(ENOENT)
    public static let noSpace = Errno(ENOSPC)
    public static let quotaExceeded = Errno(EDQUOT)
    public static let interrupted = Errno(EINTR)
}

/// A failed system call: what was attempted (e.g. "remove directory /x") and the errno it gave.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was attempted, naming its path; no trailing colon.
    public var operation: String
    public var errno: Errno

    public init(_ operation: String, _ errno: Errno = .current) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "\(operation): \(errno)" }
}
