internal import CKnitLMDB

/// Flags for ``LMDBTransaction/put(_:key:value:flags:)``.
public struct LMDBPutFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `MDB_NOOVERWRITE`: fail with ``LMDBError/Code/keyExists`` if the key exists.
    public static let noOverwrite = LMDBPutFlags(rawValue: UInt32(MDB_NOOVERWRITE))
    /// `MDB_NODUPDATA` (duplicate-sorted databases): fail with ``LMDBError/Code/keyExists`` if the pair exists.
    public static let noDupData = LMDBPutFlags(rawValue: UInt32(MDB_NODUPDATA))
    /// `MDB_APPEND`: the key sorts after every existing key (bulk loads); LMDB rejects it otherwise.
    public static let append = LMDBPutFlags(rawValue: UInt32(MDB_APPEND))
}

/// One LMDB transaction. Owning and `~Copyable`: it ends exactly once, by ``commit()``, ``abort()``
/// or, failing both, by `deinit` (abort).
///
/// Byte buffers handed to closures point into the memory map. They are valid only inside the closure
/// and must not escape; copy what you keep.
///
/// Marked `noasync`: a write transaction holds LMDB's writer lock, and must not sit across a suspension.
@available(*, noasync, message: "LMDB transactions block; run them off the cooperative pool")
public struct LMDBTransaction: ~Copyable {
    let handle: OpaquePointer
    /// Whether the transaction was begun read-only.
    public let isReadOnly: Bool

    /// Begins a transaction. Uses `mdb_txn_begin`.
    /// - Throws: ``LMDBError`` (e.g. ``LMDBError/Code/readersFull``).
    public init(environment: LMDBEnvironment, readOnly: Bool) throws(LMDBError) {
        var txn: OpaquePointer?
        let flags: UInt32 = readOnly ? UInt32(MDB_RDONLY) : 0
        try check(
            mdb_txn_begin(environment.handle, nil, flags, &txn),
            "begin \(readOnly ? "read" : "write") transaction"
        )
        guard let txn else {
            throw LMDBError(code: .invalid, message: "lmdb: mdb_txn_begin returned no handle", cause: 0)
        }
        self.handle = txn
        self.isReadOnly = readOnly
        self.ownsHandle = true
    }

    /// A read transaction whose handle its environment keeps for the next read on this thread
    /// (``LMDBEnvironment/read(_:)``): ending it is the environment's business, not this value's.
    init(parkedReadHandle handle: OpaquePointer) {
        self.handle = handle
        self.isReadOnly = true
        self.ownsHandle = false
    }

    private let ownsHandle: Bool

    /// Begins a write transaction nested in `parent` (`mdb_txn_begin` with a parent): its changes join the
    /// parent's when it commits and vanish when it aborts. The parent must not be used until this one ends.
    init(parent: borrowing LMDBTransaction) throws(LMDBError) {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(mdb_txn_env(parent.handle), parent.handle, 0, &txn), "begin nested write transaction")
        guard let txn else {
            throw LMDBError(code: .invalid, message: "lmdb: mdb_txn_begin returned no handle", cause: 0)
        }
        self.handle = txn
        self.isReadOnly = false
        self.ownsHandle = true
    }

    deinit { if ownsHandle { mdb_txn_abort(handle) } }

    /// Makes the changes durable. Uses `mdb_txn_commit`, which frees the transaction even when it fails.
    /// - Throws: ``LMDBError``, e.g. ``LMDBError/Code/mapFull`` or an I/O errno.
    public consuming func commit() throws(LMDBError) {
        precondition(ownsHandle, "a read transaction lent by LMDBEnvironment.read cannot be committed")
        let txn = handle
        discard self
        try check(mdb_txn_commit(txn), "commit")
    }

    /// Discards every change. Uses `mdb_txn_abort`.
    public consuming func abort() {
        let txn = handle
        let owned = ownsHandle
        discard self
        if owned { mdb_txn_abort(txn) }
    }

    // MARK: Point access

    /// A copy of the value stored under `key`, or nil. In a duplicate-sorted database, the first value.
    /// Uses `mdb_get`.
    public func get(_ db: LMDBDatabase, key: some Collection<UInt8>) throws(LMDBError) -> [UInt8]? {
        var value = MDB_val()
        let rc = withVal(key) { keyVal in mdb_get(handle, db.dbi, &keyVal, &value) }
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "get from '\(db.name)'")
        return Array(buffer(value))
    }

    /// Calls `body` with the value under `key` (nil when absent), borrowed from the map without copying.
    /// Uses `mdb_get`.
    public func withValue<R>(
        _ db: LMDBDatabase,
        key: some Collection<UInt8>,
        _ body: (UnsafeRawBufferPointer?) throws -> R
    ) throws -> R {
        var value = MDB_val()
        let rc = withVal(key) { keyVal in mdb_get(handle, db.dbi, &keyVal, &value) }
        if rc == MDB_NOTFOUND { return try body(nil) }
        try check(rc, "get from '\(db.name)'")
        return try body(buffer(value))
    }

    /// Stores `value` under `key`. Uses `mdb_put`.
    /// - Throws: ``LMDBError/Code/keyExists`` when `flags` forbid overwriting; ``LMDBError/Code/mapFull``.
    public func put(
        _ db: LMDBDatabase,
        key: some Collection<UInt8>,
        value: some Collection<UInt8>,
        flags: LMDBPutFlags = []
    ) throws(LMDBError) {
        let rc = withVal(key) { keyVal in
            withVal(value) { dataVal in mdb_put(handle, db.dbi, &keyVal, &dataVal, flags.rawValue) }
        }
        try check(rc, "put into '\(db.name)'")
    }

    /// Deletes `key` (all its values), or in a duplicate-sorted database only the pair `key`/`value`
    /// when `value` is given. Returns false when there was nothing to delete. Uses `mdb_del`.
    @discardableResult
    public func delete(_ db: LMDBDatabase, key: some Collection<UInt8>, value: [UInt8]? = nil) throws(LMDBError) -> Bool
    {
        let rc = withVal(key) { keyVal in
            if let value {
                return withVal(value) { dataVal in mdb_del(handle, db.dbi, &keyVal, &dataVal) }
            }
            return mdb_del(handle, db.dbi, &keyVal, nil)
        }
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "delete from '\(db.name)'")
        return true
    }

    /// Number of entries (key/value pairs, duplicates counted) in `db`. Uses `mdb_stat`.
    public func count(_ db: LMDBDatabase) throws(LMDBError) -> Int {
        var stat = MDB_stat()
        try check(mdb_stat(handle, db.dbi, &stat), "stat '\(db.name)'")
        return Int(stat.ms_entries)
    }

    // MARK: Duplicate-sorted access

    /// How many values `key` has (0 when absent). Uses `mdb_cursor_count`.
    public func duplicateCount(_ db: LMDBDatabase, key: some Collection<UInt8>) throws(LMDBError) -> Int {
        try withCursor(db) { cursor throws(LMDBError) in
            var value = MDB_val()
            let rc = withVal(key) { keyVal in mdb_cursor_get(cursor, &keyVal, &value, MDB_SET) }
            if rc == MDB_NOTFOUND { return 0 }
            try check(rc, "seek in '\(db.name)'")
            guard db.duplicateSort else { return 1 }
            var count = 0
            try check(mdb_cursor_count(cursor, &count), "count duplicates in '\(db.name)'")
            return count
        }
    }

    /// Whether the exact pair `key`/`value` exists. Uses `mdb_cursor_get(MDB_GET_BOTH)`.
    public func contains(_ db: LMDBDatabase, key: some Collection<UInt8>, value: some Collection<UInt8>)
        throws(LMDBError) -> Bool
    {
        try withCursor(db) { cursor throws(LMDBError) in
            let rc = withVal(key) { keyVal in
                withVal(value) { dataVal in mdb_cursor_get(cursor, &keyVal, &dataVal, MDB_GET_BOTH) }
            }
            if rc == MDB_NOTFOUND { return false }
            try check(rc, "seek pair in '\(db.name)'")
            return true
        }
    }

    /// Calls `body` with each value of `key` in sorted order until it returns false.
    /// Uses `MDB_SET_KEY` then `MDB_NEXT_DUP`.
    public func forEachDuplicate(
        _ db: LMDBDatabase,
        key: some Collection<UInt8>,
        _ body: (UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try withAnyCursor(db) { cursor in
            var keyOut = MDB_val()
            var value = MDB_val()
            var rc = withVal(key) { keyVal in
                let found = mdb_cursor_get(cursor, &keyVal, &value, MDB_SET_KEY)
                keyOut = keyVal
                return found
            }
            while rc == 0 {
                guard try body(buffer(value)) else { return }
                rc = mdb_cursor_get(cursor, &keyOut, &value, MDB_NEXT_DUP)
            }
            if rc != MDB_NOTFOUND { try check(rc, "iterate duplicates in '\(db.name)'") }
        }
    }

    /// A copy of every value of `key`, sorted.
    public func duplicates(_ db: LMDBDatabase, key: some Collection<UInt8>) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        try forEachDuplicate(db, key: key) { value in
            out.append(Array(value.bindMemory(to: UInt8.self)))
            return true
        }
        return out
    }

    // MARK: Ranges

    /// Calls `body` with each key/value pair whose key is `>= start` (all pairs when `start` is nil),
    /// in key order (then value order for duplicates), until it returns false.
    /// Uses `MDB_SET_RANGE` / `MDB_FIRST`, then `MDB_NEXT`.
    public func forEach(
        _ db: LMDBDatabase,
        from start: [UInt8]? = nil,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try withAnyCursor(db) { cursor in
            var keyVal = MDB_val()
            var value = MDB_val()
            var rc: Int32
            if let start {
                rc = withVal(start) { startVal in
                    let found = mdb_cursor_get(cursor, &startVal, &value, MDB_SET_RANGE)
                    keyVal = startVal
                    return found
                }
            } else {
                rc = mdb_cursor_get(cursor, &keyVal, &value, MDB_FIRST)
            }
            while rc == 0 {
                guard try body(buffer(keyVal), buffer(value)) else { return }
                rc = mdb_cursor_get(cursor, &keyVal, &value, MDB_NEXT)
            }
            if rc != MDB_NOTFOUND { try check(rc, "iterate '\(db.name)'") }
        }
    }

    /// Calls `body` with each key/value pair whose key starts with `prefix`, in order, until it returns false.
    public func forEach(
        _ db: LMDBDatabase,
        prefix: [UInt8],
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try forEach(db, from: prefix) { key, value in
            guard key.count >= prefix.count, zip(key, prefix).allSatisfy({ $0 == $1 }) else { return false }
            return try body(key, value)
        }
    }

    // MARK: Internals

    private func openCursor(_ db: LMDBDatabase) throws(LMDBError) -> OpaquePointer {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, db.dbi, &cursor), "open cursor on '\(db.name)'")
        guard let cursor else {
            throw LMDBError(code: .invalid, message: "lmdb: mdb_cursor_open returned no cursor", cause: 0)
        }
        return cursor
    }

    private func withCursor<R>(_ db: LMDBDatabase, _ body: (OpaquePointer) throws(LMDBError) -> R) throws(LMDBError)
        -> R
    {
        let cursor = try openCursor(db)
        defer { mdb_cursor_close(cursor) }
        return try body(cursor)
    }

    private func withAnyCursor<R>(_ db: LMDBDatabase, _ body: (OpaquePointer) throws -> R) throws -> R {
        let cursor = try openCursor(db)
        defer { mdb_cursor_close(cursor) }
        return try body(cursor)
    }
}

@inline(__always)
private func buffer(_ value: MDB_val) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size)
}

/// Presents `bytes` as an `MDB_val`. LMDB never writes through key or data pointers given to it.
@inline(__always)
private func withVal<R>(_ bytes: some Collection<UInt8>, _ body: (inout MDB_val) -> R) -> R {
    if let result = bytes.withContiguousStorageIfAvailable({ storage -> R in
        var val = MDB_val(mv_size: storage.count, mv_data: UnsafeMutableRawPointer(mutating: storage.baseAddress))
        return body(&val)
    }) {
        return result
    }
    return Array(bytes).withUnsafeBufferPointer { storage in
        var val = MDB_val(mv_size: storage.count, mv_data: UnsafeMutableRawPointer(mutating: storage.baseAddress))
        return body(&val)
    }
}
