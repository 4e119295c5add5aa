internal import CKnitLMDB
internal import Synchronization

/// One open LMDB environment (a directory holding `data.mdb` and `lock.mdb`).
///
/// Always opened with `MDB_NOTLS`: read transactions are not bound to the thread that began them, which
/// Swift concurrency needs (otherwise a second read txn on one thread fails with `MDB_BAD_RSLOT`).
///
/// `@unchecked Sendable`: the only state is the `MDB_env` pointer, which LMDB documents as usable from
/// any thread once open, and the closed flag, which is atomic. Closing while transactions are alive
/// is a programmer error, as in LMDB.
public final class LMDBEnvironment: @unchecked Sendable {
    /// Extra `mdb_env_open` flags. The default is durable: every commit is synced.
    public struct Flags: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// `MDB_NOSYNC`: do not fsync on commit (a crash may lose the last commits).
        public static let noSync = Flags(rawValue: UInt32(MDB_NOSYNC))
        /// `MDB_NOMETASYNC`: fsync data but not the meta page on commit.
        public static let noMetaSync = Flags(rawValue: UInt32(MDB_NOMETASYNC))
        /// `MDB_NORDAHEAD`: no read-ahead, for maps much larger than RAM.
        public static let noReadAhead = Flags(rawValue: UInt32(MDB_NORDAHEAD))
    }

    let handle: OpaquePointer
    private let closed = Atomic<Bool>(false)
    let writes = WriteGroup()
    /// The directory this environment lives in.
    public let path: String

    /// Opens (creating files if needed) the environment in the existing directory `path`.
    /// - Parameters:
    ///   - mapSize: upper bound of the database size in bytes; the file is sparse, so large is cheap.
    ///   - maxDatabases: how many named databases may be opened.
    ///   - maxReaders: reader slots; must exceed processes × threads that read concurrently.
    /// - Throws: ``LMDBError`` when the directory is missing or unreadable, or the file is not LMDB.
    ///
    /// Uses `mdb_env_create`, `mdb_env_set_mapsize`, `mdb_env_set_maxdbs`, `mdb_env_set_maxreaders`
    /// and `mdb_env_open`.
    public init(
        path: String,
        mapSize: Int = 64 << 30,
        maxDatabases: Int = 32,
        maxReaders: Int = 512,
        flags: Flags = []
    ) throws(LMDBError) {
        var env: OpaquePointer?
        try check(mdb_env_create(&env), "create environment for \(path)")
        guard let env else {
            throw LMDBError(code: .invalid, message: "lmdb: mdb_env_create returned no handle", cause: 0)
        }
        do {
            try check(mdb_env_set_mapsize(env, mapSize), "set map size \(mapSize) for \(path)")
            try check(mdb_env_set_maxdbs(env, UInt32(maxDatabases)), "set max databases for \(path)")
            try check(mdb_env_set_maxreaders(env, UInt32(max(maxReaders, 1))), "set max readers for \(path)")
            try check(mdb_env_open(env, path, UInt32(MDB_NOTLS) | flags.rawValue, 0o640), "open environment \(path)")
        } catch {
            mdb_env_close(env)
            throw error
        }
        self.handle = env
        self.path = path
    }

    deinit { close() }

    /// Closes the environment. Idempotent. All transactions must have ended. Uses `mdb_env_close`.
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        mdb_env_close(handle)
    }

    /// Clears reader slots left by dead processes; returns how many were cleared.
    /// Uses `mdb_reader_check`.
    @discardableResult
    public func readerCheck() -> Int {
        var dead: Int32 = 0
        guard mdb_reader_check(handle, &dead) == 0 else { return 0 }
        return Int(dead)
    }

    /// Runs `body` with the per-commit sync off (`mdb_env_set_flags` with `MDB_NOSYNC`), then syncs once
    /// (`mdb_env_sync`) and turns it back on. Only for bulk loads that are worthless until complete (benchmarks):
    /// a crash inside `body` may lose or corrupt what it wrote, and other writers meanwhile are not synced either.
    @available(*, noasync, message: "the closing sync blocks")
    public func withoutCommitSync<R>(_ body: () throws -> R) throws -> R {
        try check(mdb_env_set_flags(handle, UInt32(MDB_NOSYNC), 1), "turn commit sync off for \(path)")
        defer { mdb_env_set_flags(handle, UInt32(MDB_NOSYNC), 0) }
        let result = try body()
        try check(mdb_env_sync(handle, 1), "sync environment \(path)")
        return result
    }

    /// Writes a consistent copy of the environment into the existing, empty directory `directory` (as
    /// `data.mdb`) while other processes go on reading and writing: the copy is one read transaction's
    /// snapshot. `compact` leaves out free pages and renumbers the rest, so the copy holds only live data.
    /// Uses `mdb_env_copy2` (with `MDB_CP_COMPACT` when `compact`).
    @available(*, noasync, message: "copying blocks for as long as the database takes to write")
    public func copy(to directory: String, compact: Bool = true) throws(LMDBError) {
        try check(
            mdb_env_copy2(handle, directory, compact ? UInt32(MDB_CP_COMPACT) : 0),
            "copy environment \(path) to \(directory)"
        )
    }

    /// How much of the map the last committed transaction uses: a constant-time look at the meta page, cheap
    /// enough for every metrics scrape. Uses `mdb_env_info` and `mdb_env_stat`.
    public func mapUsage() throws(LMDBError) -> LMDBMapUsage {
        var info = MDB_envinfo()
        try check(mdb_env_info(handle, &info), "read environment info of \(path)")
        var stat = MDB_stat()
        try check(mdb_env_stat(handle, &stat), "stat environment \(path)")
        return LMDBMapUsage(
            mapSize: Int64(info.me_mapsize),
            pageSize: Int64(stat.ms_psize),
            // Pages 0 and 1 are the meta pages; the last page number is the highest in use.
            usedPages: Int64(info.me_last_pgno) + 1,
            readersInUse: Int(info.me_numreaders),
            maxReaders: Int(info.me_maxreaders)
        )
    }

    /// Opens (creating if needed) the named database in its own write transaction.
    /// Do this once at start-up: the handle is then valid in every transaction on every thread.
    /// Uses `mdb_dbi_open` with `MDB_CREATE` (and `MDB_DUPSORT` when `duplicateSort`).
    public func openDatabase(name: String, duplicateSort: Bool = false) throws(LMDBError) -> LMDBDatabase {
        let txn = try LMDBTransaction(environment: self, readOnly: false)
        var dbi: MDB_dbi = 0
        let flags = UInt32(MDB_CREATE) | (duplicateSort ? UInt32(MDB_DUPSORT) : 0)
        let rc = mdb_dbi_open(txn.handle, name, flags, &dbi)
        guard rc == 0 else {
            txn.abort()
            throw LMDBError(rc: rc, operation: "open database '\(name)'")
        }
        try txn.commit()
        return LMDBDatabase(dbi: dbi, name: name, duplicateSort: duplicateSort)
    }

    /// Runs `body` in a read-only transaction, which is aborted (released) afterwards.
    @available(*, noasync, message: "LMDB transactions block; run them off the cooperative pool")
    public func read<R>(_ body: (borrowing LMDBTransaction) throws -> R) throws -> R {
        let txn = try LMDBTransaction(environment: self, readOnly: true)
        let result = try body(txn)
        txn.abort()
        return result
    }

    /// Runs `body` in a write transaction: committed when `body` returns, aborted when it throws. Returns only
    /// once the commit is on disk. Concurrent calls of this environment are committed in groups (``WriteGroup``):
    /// each body runs in its own nested transaction, on whichever caller's thread leads the group, and the group
    /// shares one commit and its syncs. Write transactions are serialised by LMDB; this blocks while another
    /// writer is active. A body must not call `write` itself.
    @available(*, noasync, message: "LMDB transactions block; run them off the cooperative pool")
    public func write<R>(_ body: (borrowing LMDBTransaction) throws -> R) throws -> R {
        var result: R?
        try withoutActuallyEscaping(body) { body in
            // The job does not outlive this call: `run` returns only after the body has run (or never will).
            try writes.run(WriteGroup.Job { txn in result = try body(txn) }, environment: self)
        }
        guard let result else { preconditionFailure("a write body ended without a result or an error") }
        return result
    }
}

/// A named database handle (`MDB_dbi`). Valid for the life of its environment, in every transaction.
public struct LMDBDatabase: Sendable, Hashable {
    let dbi: UInt32
    /// The database name, for messages.
    public let name: String
    /// Whether the database keeps several sorted values per key (`MDB_DUPSORT`).
    public let duplicateSort: Bool
}

/// The map's size and how much of it is used, from `mdb_env_info` and `mdb_env_stat`.
public struct LMDBMapUsage: Sendable, Equatable, Codable {
    /// The map size in bytes: the most the database file may grow to.
    public var mapSize: Int64
    public var pageSize: Int64
    /// Pages up to the highest one in use (free pages inside are reused before the file grows).
    public var usedPages: Int64
    /// Reader slots taken (by live or not yet cleared transactions) and the most there may be.
    public var readersInUse: Int
    public var maxReaders: Int

    public var usedBytes: Int64 { usedPages * pageSize }
    public var totalPages: Int64 { pageSize > 0 ? mapSize / pageSize : 0 }
}
