internal import CKnitLMDB

/// A failed LMDB call: what went wrong (``code``), which operation on which database (``message``),
/// and the raw return code of the C function (``cause``).
public struct LMDBError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kinds of failure callers act on; anything else is ``other(_:)`` with the errno.
    public enum Code: Sendable, Hashable {
        /// `MDB_NOTFOUND`: no such key (only surfaced where absence is not a normal answer).
        case notFound
        /// `MDB_KEYEXIST`: a put with `noOverwrite` / `noDupData` met an existing entry.
        case keyExists
        /// `MDB_MAP_FULL`: the map size is exhausted; the database is full.
        case mapFull
        /// `MDB_READERS_FULL`: every reader slot is taken.
        case readersFull
        /// `MDB_TXN_FULL`: one transaction touched too many pages.
        case txnFull
        /// `MDB_CORRUPTED`, `MDB_PAGE_NOTFOUND` or `MDB_PANIC`.
        case corrupted
        /// `MDB_VERSION_MISMATCH`: the file was written by an incompatible liblmdb.
        case versionMismatch
        /// `MDB_INVALID` and the `MDB_BAD_*` family: not an LMDB file, or an API misuse LMDB caught.
        case invalid
        /// Any other code, usually an errno such as `ENOSPC` or `EACCES`.
        case other(Int32)
    }

    public var code: Code
    public var message: String
    /// The return code of the LMDB function that failed.
    public var cause: Int32

    public init(code: Code, message: String, cause: Int32) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }

    /// Builds the error for return code `rc` of `operation` (e.g. "put into 'data'").
    init(rc: Int32, operation: String) {
        let code: Code
        switch rc {
        case MDB_NOTFOUND: code = .notFound
        case MDB_KEYEXIST: code = .keyExists
        case MDB_MAP_FULL: code = .mapFull
        case MDB_READERS_FULL: code = .readersFull
        case MDB_TXN_FULL: code = .txnFull
        case MDB_CORRUPTED, MDB_PAGE_NOTFOUND, MDB_PANIC: code = .corrupted
        case MDB_VERSION_MISMATCH: code = .versionMismatch
        case MDB_INVALID, MDB_BAD_RSLOT, MDB_BAD_TXN, MDB_BAD_VALSIZE, MDB_BAD_DBI: code = .invalid
        default: code = .other(rc)
        }
        let detail: String
        if code == .mapFull {
            detail = "database is full (map size exhausted; raise the map size)"
        } else {
            detail = String(cString: mdb_strerror(rc))
        }
        self.init(code: code, message: "lmdb: \(operation): \(detail)", cause: rc)
    }
}

/// Throws unless `rc` is 0.
@inline(__always)
func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(LMDBError) {
    if rc != 0 { throw LMDBError(rc: rc, operation: operation()) }
}
