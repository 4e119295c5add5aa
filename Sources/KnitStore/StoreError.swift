internal import KnitLMDB

#if canImport(Glibc)
    internal import Glibc
#endif

/// A store operation that failed: ``code`` says what kind of failure (the API maps it to a status),
/// ``message`` says what, naming the Data, Run, user or path, and ``advice`` what the caller can do about it.
public struct StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        /// The named Data, Run or user does not exist.
        case notFound
        /// The thing exists already, or is not in a state that allows the operation.
        case conflict
        /// The request itself is wrong (e.g. a `knit#` tag key, a bad user name).
        case invalid
        /// The on-disk schema version is not the one this code knows.
        case schemaMismatch
        /// The LMDB map or the disk is full.
        case storageFull
        /// The user's quota does not allow it (``message`` names the quota, the usage and the limit).
        case quotaExceeded
        /// Any other environmental failure (permissions, I/O errors).
        case io
        /// A record could not be decoded, or LMDB reports corruption.
        case corrupted
    }

    public var code: Code
    /// The reason: what went wrong.
    public var message: String
    /// What to do about it, or the details of the reason (validation problems, the cycle, what a Run's status
    /// allows); the API sends it as `advice`.
    public var advice: String?
    /// The id of the thing a conflict is with (the existing plan an equivalent spec matches), so the API
    /// can send it as `see`.
    public var see: String?

    public init(_ code: Code, _ message: String, advice: String? = nil, see: String? = nil) {
        self.code = code
        self.message = message
        self.advice = advice
        self.see = see
    }

    public var description: String { advice.map { "\(message): \($0)" } ?? message }

    /// Translates an LMDB failure, keeping its message (which names the database and operation).
    init(_ error: LMDBError) {
        switch error.code {
        case .mapFull: self.init(.storageFull, "store: \(error.message)")
        case .other(let errno) where errno == ENOSPC:
            self.init(.storageFull, "store: disk is full: \(error.message)")
        case .corrupted, .versionMismatch, .invalid: self.init(.corrupted, "store: \(error.message)")
        case .notFound: self.init(.notFound, "store: \(error.message)")
        case .keyExists: self.init(.conflict, "store: \(error.message)")
        default: self.init(.io, "store: \(error.message)")
        }
    }

    /// Funnels any error thrown inside a transaction into a ``StoreError``.
    static func from(_ error: any Error, operation: String) -> StoreError {
        switch error {
        case let error as StoreError: return error
        case let error as LMDBError: return StoreError(error)
        case is DecodingError: return StoreError(.corrupted, "store: \(operation): undecodable record: \(error)")
        default: return StoreError(.io, "store: \(operation): \(error)")
        }
    }
}
