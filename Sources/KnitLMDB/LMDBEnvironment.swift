internal import CKnitLMDB
internal import Synchronization

#if canImport(Glibc)
    internal import Glibc
#endif

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
    private let readers: ParkedReaders
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
        self.readers = ParkedReaders(environment: env)
    }

    deinit { close() }

    /// Closes the environment. Idempotent. All transactions must have ended. Uses `mdb_env_close`.
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        readers.close()
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
    ///
    /// Each thread keeps its read transaction's handle between reads, reset (`mdb_txn_reset`, which pins no
    /// pages) and renewed for the next (`mdb_txn_renew`): beginning afresh allocated ~2 KB and took the reader
    /// table's lock twice per API request. A parked handle holds a reader slot until its thread ends or the
    /// environment closes; a read nested in another on the same thread begins its own transaction.
    public func read<R>(_ body: (borrowing LMDBTransaction) throws -> R) throws -> R {
        let handle = try readers.take()
        defer { readers.park(handle) }
        return try body(LMDBTransaction(parkedReadHandle: handle))
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

/// Every thread's parked read transaction of one environment: the handle sits in a thread-specific slot while
/// its thread is not reading, and in a registry so closing the environment can abort them all first (LMDB
/// requires every transaction ended before `mdb_env_close`). A thread that ends aborts its own.
// @unchecked: the key and the environment pointer never change after init; everything else is behind a lock.
private final class ParkedReaders: @unchecked Sendable {
    /// One thread's slot; its handle is touched by its thread, and by close or the thread's end.
    final class Slot: Sendable {
        let owner: ParkedReaders
        let handle = Mutex<ParkedHandle?>(nil)
        init(owner: ParkedReaders) { self.owner = owner }
    }

    /// A reset read transaction. @unchecked: LMDB lets a `MDB_NOTLS` transaction move between threads, and
    /// only one thread at a time holds it (taken out of its slot under the lock).
    struct ParkedHandle: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    private let environment: OpaquePointer
    private var key = pthread_key_t()
    private let closed = Atomic(false)
    private let slots = Mutex<[ObjectIdentifier: Slot]>([:])

    init(environment: OpaquePointer) {
        self.environment = environment
        let created = pthread_key_create(&key) { raw in
            guard let raw else { return }
            let slot = Unmanaged<ParkedReaders.Slot>.fromOpaque(raw).takeRetainedValue()
            slot.owner.threadEnded(slot)
        }
        precondition(created == 0, "pthread_key_create failed: \(created)")
    }

    /// This thread's parked handle, renewed; or a new read transaction's when there is none (or it is in use
    /// by an outer read on this thread, or cannot be renewed).
    func take() throws(LMDBError) -> OpaquePointer {
        if let slot = currentSlot(), let parked = slot.handle.withLock({ $0.take() })?.pointer {
            if mdb_txn_renew(parked) == 0 { return parked }
            mdb_txn_abort(parked)
        }
        var txn: OpaquePointer?
        try check(mdb_txn_begin(environment, nil, UInt32(MDB_RDONLY), &txn), "begin read transaction")
        guard let txn else {
            throw LMDBError(code: .invalid, message: "lmdb: mdb_txn_begin returned no handle", cause: 0)
        }
        return txn
    }

    /// Ends a read: the handle is reset and kept in this thread's slot, or aborted when the slot is taken.
    func park(_ handle: OpaquePointer) {
        mdb_txn_reset(handle)
        let slot = currentSlot() ?? newSlot()
        // Checked under the slot's lock, which close takes after setting `closed`: either close finds the handle
        // here and aborts it, or this sees `closed` and aborts it itself.
        let kept = slot?.handle.withLock { parked -> Bool in
            guard parked == nil, !closed.load(ordering: .sequentiallyConsistent) else { return false }
            parked = ParkedHandle(pointer: handle)
            return true
        }
        if kept != true { mdb_txn_abort(handle) }
    }

    /// Aborts every parked handle; reads after this are a programmer error, as with LMDB.
    func close() {
        closed.store(true, ordering: .sequentiallyConsistent)
        // Under the registry's lock, as a thread's exit is: every handle is aborted exactly once, before
        // `mdb_env_close`.
        slots.withLock { all in
            for slot in all.values { slot.handle.withLock { $0.take() }.map { mdb_txn_abort($0.pointer) } }
            all = [:]
        }
        pthread_key_delete(key)
    }

    private func currentSlot() -> Slot? {
        pthread_getspecific(key).map { Unmanaged<Slot>.fromOpaque($0).takeUnretainedValue() }
    }

    private func newSlot() -> Slot? {
        let slot = Slot(owner: self)
        let registered = slots.withLock { all -> Bool in
            guard !closed.load(ordering: .sequentiallyConsistent) else { return false }
            all[ObjectIdentifier(slot)] = slot
            return true
        }
        guard registered else { return nil }
        pthread_setspecific(key, Unmanaged.passRetained(slot).toOpaque())
        return slot
    }

    private func threadEnded(_ slot: Slot) {
        // Under the registry's lock: a concurrent close has either aborted the handle already (none left
        // here) or waits until this one is aborted, before it closes the environment.
        slots.withLock { all in
            all[ObjectIdentifier(slot)] = nil
            slot.handle.withLock { $0.take() }.map { mdb_txn_abort($0.pointer) }
        }
    }
}
