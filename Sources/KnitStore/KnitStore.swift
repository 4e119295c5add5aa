public import KnitCore
internal import KnitDigest
internal import KnitLMDB
public import Logging

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif
#if canImport(Glibc)
    internal import Glibc
#endif

/// The only owner of Knit's persistent state: the LMDB environment under `home/db` and the Data
/// directories under `home/data` and `home/staging`.
///
/// Every public method is one LMDB read or write transaction (plus file moves around it), so each
/// call is atomic. Methods block; call them off the cooperative thread pool.
public final class KnitStore: Sendable {
    /// Schema version this code reads and writes. Older stores are migrated forward when opened (see
    /// `migrate`); a newer one is refused.
    public static let schemaVersion = "\(currentSchema)"
    /// ``schemaVersion`` as a number. 2: per-user usage kept in `usage`. 3: the lifecycle hooks' `hook_outbox`.
    static let currentSchema = 3

    /// The instance directory when none is given: `$KNIT_HOME` (unless empty), else `/var/lib/knit`.
    public static func defaultHome() -> String {
        if let value = getenv("KNIT_HOME"), value.pointee != 0 { return String(cString: value) }
        return "/var/lib/knit"
    }

    /// Milliseconds since the epoch from the real-time clock; the default clock of a store.
    public static let systemClock: @Sendable () -> Int64 = { FileSystem.nowMilliseconds() }

    /// The store's root directory (`KNIT_HOME`).
    public let home: String
    /// Every path under ``home``.
    public let layout: InstanceLayout

    let env: LMDBEnvironment
    let db: Databases
    let logger: Logger
    let clock: @Sendable () -> Int64
    /// The `knit#uploaded` pseudo plan; it never changes after the store is created.
    let uploadedPlan: PlanRecord
    /// Plan records already decoded and validated (see ``PlanMemo``).
    let planMemo = PlanMemo()
    /// Where the scheduler's status changes are reported (``recordLifecycleEvents(for:)``).
    let hookTargets = LifecycleHookTargets()
    /// Held shared while this store is open, exclusively while it migrates (``OpenersLock``).
    let openers: OpenersLock

    struct Databases: Sendable {
        let meta: LMDBDatabase
        let data: LMDBDatabase
        let tagIndex: LMDBDatabase
        let runs: LMDBDatabase
        let plans: LMDBDatabase
        /// SHA-256 hex of a plan's identity bytes → planId (DUPSORT, so a hash collision cannot hide a plan).
        let planByHash: LMDBDatabase
        /// `key\0value` of one user tag of each input (the least used one) → planId (DUPSORT), so a Data
        /// looks only at plans that can take it.
        let inputTagIndex: LMDBDatabase
        let users: LMDBDatabase
        let tokens: LMDBDatabase
        /// runId → knitId of uploads begun and neither finished nor abandoned, so start-up recovery
        /// finds them without scanning every Run.
        let openUploads: LMDBDatabase
        /// `Projection.combinationKey` of every (plan, one Data per input) a Run was made for → runId, so a
        /// combination never runs twice (tombstones keep their entry).
        let runByCombination: LMDBDatabase
        /// knitId → runId of every Run that has the Data as an input (DUPSORT): Data downstreams.
        let consumers: LMDBDatabase
        /// planId → runId (DUPSORT), uploads included.
        let runsByPlan: LMDBDatabase
        /// Run status → runId (DUPSORT), kept by `putRun`; the scheduler reads `waiting` from it.
        let runsByStatus: LMDBDatabase
        /// planId → empty, for plans having an input that asks for no user tag (only `knit#id` /
        /// `knit#timestamp`), which `input_tag_index` cannot point at.
        let untaggedInputPlans: LMDBDatabase
        /// Image repository name (`team/train`) → the user who first pushed to it: only that user (or an
        /// admin) may push to or delete from it.
        let imageOwners: LMDBDatabase
        /// `knitId/variant` → `writer md5hex`: the MD5 of a Data's download in one archive variant, as written by
        /// one archive writer version (``KnitStore/downloadDigest(knitId:variant:writer:)``).
        let downloadDigests: LMDBDatabase
        /// knitId → runId of Data whose records are dropped and whose directories are still to be deleted
        /// (written in the dropping transaction, removed once the directory is gone).
        let garbage: LMDBDatabase
        /// User name → ``KeptUsage`` (JSON): bytes and count of the Data they created, kept by every writer of
        /// `data` (schema 2).
        let usage: LMDBDatabase
        /// Sequence (8 bytes, big-endian) → one after-hook delivery still owed (schema 3, KnitStore+Hooks).
        let hookOutbox: LMDBDatabase
    }

    /// Opens the store under `home`, creating it when new.
    ///
    /// Creates `db/`, `data/` and `staging/` (mode 0750), opens the LMDB environment, clears reader slots
    /// of dead processes, checks the schema version and, in a new store, seeds the `knit#uploaded` plan.
    ///
    /// A store of an older schema is migrated only while no other program has it open (`db/openers.lock`): a
    /// running program of the previous release would go on writing records of the old schema into the migrated
    /// store. When others have it open, the opener waits for them to close it (`beforeWaitingToMigrate` given:
    /// knitd taking over from its predecessor) or refuses with `.schemaMismatch` saying what to stop.
    /// - Parameters:
    ///   - mapSize: the LMDB map size in bytes (the file is sparse; this is only a ceiling).
    ///   - clock: milliseconds since the epoch; tests pass a fixed clock.
    ///   - beforeWaitingToMigrate: when given, a store that needs a migration while others have it open is
    ///     waited for (until they close it) instead of refused; called once before that wait.
    /// - Throws: ``StoreError`` with `.schemaMismatch` when the store was written by another schema,
    ///   `.io` when directories cannot be created or LMDB cannot open.
    public init(
        home: String,
        logger: Logger,
        mapSize: Int = 64 << 30,
        clock: @escaping @Sendable () -> Int64 = KnitStore.systemClock,
        beforeWaitingToMigrate: (() -> Void)? = nil
    ) throws(StoreError) {
        self.home = home
        self.logger = logger
        self.clock = clock
        let layout = InstanceLayout(home: home)
        self.layout = layout
        for directory in [layout.home, layout.database, layout.data, layout.staging] {
            try FileSystem.makeDirectory(directory)
        }
        let env: LMDBEnvironment
        do {
            env = try LMDBEnvironment(path: layout.database, mapSize: mapSize, maxDatabases: 32, maxReaders: 512)
        } catch {
            throw StoreError(error)
        }
        self.env = env
        let stale = env.readerCheck()
        if stale > 0 { logger.info("cleared stale LMDB readers", metadata: ["store.readers": "\(stale)"]) }
        do {
            db = Databases(
                meta: try env.openDatabase(name: "meta"),
                data: try env.openDatabase(name: "data"),
                tagIndex: try env.openDatabase(name: "tag_index", duplicateSort: true),
                runs: try env.openDatabase(name: "runs"),
                plans: try env.openDatabase(name: "plans"),
                planByHash: try env.openDatabase(name: "plan_by_hash", duplicateSort: true),
                inputTagIndex: try env.openDatabase(name: "input_tag_index", duplicateSort: true),
                users: try env.openDatabase(name: "users"),
                tokens: try env.openDatabase(name: "tokens"),
                openUploads: try env.openDatabase(name: "open_uploads"),
                runByCombination: try env.openDatabase(name: "run_by_combination"),
                consumers: try env.openDatabase(name: "consumers", duplicateSort: true),
                runsByPlan: try env.openDatabase(name: "runs_by_plan", duplicateSort: true),
                runsByStatus: try env.openDatabase(name: "runs_by_status", duplicateSort: true),
                untaggedInputPlans: try env.openDatabase(name: "untagged_input_plans"),
                imageOwners: try env.openDatabase(name: "image_owners"),
                downloadDigests: try env.openDatabase(name: "download_digests"),
                garbage: try env.openDatabase(name: "garbage"),
                usage: try env.openDatabase(name: "usage"),
                hookOutbox: try env.openDatabase(name: "hook_outbox")
            )
        } catch {
            env.close()
            throw StoreError(error)
        }
        let openers: OpenersLock
        do {
            openers = try OpenersLock(path: layout.database + "/openers.lock", ownerOf: layout.database)
        } catch {
            env.close()
            throw error
        }
        self.openers = openers
        do {
            uploadedPlan = try Self.openSchema(
                env: env,
                db: db,
                openers: openers,
                logger: logger,
                beforeWaitingToMigrate: beforeWaitingToMigrate
            )
        } catch {
            openers.release()
            env.close()
            throw error
        }
    }

    /// Closes the LMDB environment. Idempotent; no other method may be called afterwards.
    public func close() {
        env.close()
        openers.release()
    }

    /// `home/data/<knitId>`: where the content of a finished Data lives.
    public func dataDirectory(knitId: String) -> String { layout.dataDirectory(knitId: knitId) }

    /// `home/staging/<knitId>`: where an upload writes before it is finished.
    public func stagingDirectory(knitId: String) -> String { layout.stagingDirectory(knitId: knitId) }

    // MARK: Schema gate

    static let schemaKey = Array("schema_version".utf8)
    static let uploadedPlanKey = Array("plan:\(PseudoPlan.uploaded)".utf8)
    /// Present once `runs_by_plan` and `runs_by_status` cover every Run (stores written before those
    /// indexes existed get them at the first open).
    static let runIndexesKey = Array("run_indexes".utf8)

    /// The schema gate under the openers lock: alone (exclusive) it may migrate; beside other openers (shared)
    /// only a store of the current schema opens.
    private static func openSchema(
        env: LMDBEnvironment,
        db: Databases,
        openers: OpenersLock,
        logger: Logger,
        beforeWaitingToMigrate: (() -> Void)?
    ) throws(StoreError) -> PlanRecord {
        if try openers.tryExclusive() {
            let plan = try checkSchema(env: env, db: db, logger: logger, mayMigrate: true)
            try openers.share()
            return try plan.orThrow()
        }
        // Waits only while another opener migrates (holds it exclusively).
        try openers.share()
        let plan = try checkSchema(env: env, db: db, logger: logger, mayMigrate: false)
        guard case .migrationNeeded(let stored) = plan else { return try plan.orThrow() }
        guard let beforeWaitingToMigrate else {
            throw StoreError(
                .schemaMismatch,
                "store schema version \(stored) must be migrated to \(currentSchema), and other programs (a knitd, "
                    + "knit-scheduler or knitadm of the previous release) have it open; stop them first "
                    + "(installer/knit-up --upgrade does it in order)"
            )
        }
        logger.notice("waiting for the store's other programs to close it before migrating")
        beforeWaitingToMigrate()
        try openers.exclusive()
        let migrated = try checkSchema(env: env, db: db, logger: logger, mayMigrate: true)
        try openers.share()
        return try migrated.orThrow()
    }

    /// What the schema gate found: the store opened, or (when it may not migrate) the older version it holds.
    private enum SchemaGate {
        case opened(PlanRecord)
        case migrationNeeded(stored: Int)

        func orThrow() throws(StoreError) -> PlanRecord {
            switch self {
            case .opened(let plan): return plan
            case .migrationNeeded(let stored):
                throw StoreError(.schemaMismatch, "store schema version \(stored) was not migrated")
            }
        }
    }

    private static func checkSchema(
        env: LMDBEnvironment,
        db: Databases,
        logger: Logger,
        mayMigrate: Bool
    ) throws(StoreError) -> SchemaGate {
        do {
            return try env.write { txn throws -> SchemaGate in
                if let version = try txn.get(db.meta, key: schemaKey) {
                    let text = String(decoding: version, as: UTF8.self)
                    guard let stored = Int(text), stored >= 1 else {
                        throw StoreError(.corrupted, "store: schema version '\(text)' is not a version")
                    }
                    guard stored <= currentSchema else {
                        throw StoreError(
                            .schemaMismatch,
                            "store schema version \(stored) is newer than this \(programName()) knows "
                                + "(\(currentSchema)); run the release that wrote it, or a newer one"
                        )
                    }
                    guard stored == currentSchema || mayMigrate else { return .migrationNeeded(stored: stored) }
                    guard let planId = try txn.get(db.meta, key: uploadedPlanKey),
                        let plan = try decode(PlanRecord.self, txn.get(db.plans, key: planId))
                    else {
                        throw StoreError(.corrupted, "store: the \(PseudoPlan.uploaded) plan is missing")
                    }
                    if try txn.get(db.meta, key: runIndexesKey) == nil {
                        try backfillRunIndexes(txn, db: db)
                    }
                    for from in stored..<currentSchema {
                        let started = FileSystem.nowMilliseconds()
                        try migrate(txn, db: db, from: from, uploadedPlanId: plan.planId)
                        logger.info(
                            "migrated store schema",
                            metadata: [
                                "store.schema_from": "\(from)", "store.schema_to": "\(from + 1)",
                                "store.duration_ms": "\(FileSystem.nowMilliseconds() - started)",
                            ]
                        )
                    }
                    if stored < currentSchema {
                        try txn.put(db.meta, key: schemaKey, value: Array(schemaVersion.utf8))
                    }
                    return .opened(plan)
                }
                guard try txn.count(db.data) == 0, try txn.count(db.runs) == 0 else {
                    throw StoreError(.corrupted, "store: records exist but schema_version is missing")
                }
                let plan = PlanRecord(planId: KnitIdentifier.make(), pseudoName: PseudoPlan.uploaded)
                try txn.put(db.meta, key: schemaKey, value: Array(schemaVersion.utf8))
                try txn.put(db.plans, key: Array(plan.planId.utf8), value: encode(plan))
                try txn.put(db.meta, key: uploadedPlanKey, value: Array(plan.planId.utf8))
                try txn.put(db.meta, key: runIndexesKey, value: [1])
                logger.info("created new store", metadata: ["store.schema": "\(schemaVersion)"])
                return .opened(plan)
            }
        } catch {
            throw StoreError.from(error, operation: "open")
        }
    }

    /// Moves a store of schema `from` to `from + 1`, inside the opening write transaction: every opener
    /// (knitd, the scheduler, knitadm) may be the first to open an older store after an upgrade, and LMDB's single
    /// writer makes exactly one of them migrate while the others wait and then see the new version.
    private static func migrate(
        _ txn: borrowing LMDBTransaction,
        db: Databases,
        from: Int,
        uploadedPlanId: String
    ) throws {
        switch from {
        case 1:
            // Schema 1 summed usage from the records on every check; schema 2 keeps it. One pass builds it.
            try replaceUsage(txn, db: db, with: recountUsage(txn, db: db, uploadedPlanId: uploadedPlanId))
        case 2:
            // Schema 3 adds `hook_outbox`, opened (created) above and empty: no Run changed with hooks yet. The
            // version still moves, so that a release without a hook sender refuses the store rather than
            // leaving deliveries in it that nobody sends.
            guard try txn.count(db.hookOutbox) == 0 else {
                throw StoreError(.corrupted, "store: schema 2 with a non-empty hook_outbox")
            }
        default:
            throw StoreError(.corrupted, "store: no migration from schema version \(from)")
        }
    }

    /// The running program's name for messages (`knitd`, `knitadm`, `knit-scheduler`).
    static func programName() -> String {
        let path = CommandLine.arguments.first ?? "knit"
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return name.isEmpty ? "program" : name
    }

    /// Fills `runs_by_plan`, `runs_by_status` and `untagged_input_plans` for records written before they
    /// existed (collected first: the cursor must not see its own writes).
    private static func backfillRunIndexes(_ txn: borrowing LMDBTransaction, db: Databases) throws {
        var runs: [RunRecord] = []
        try txn.forEach(db.runs) { _, value in
            runs.append(try RunRecord(decoding: value))
            return true
        }
        for run in runs {
            let id = Array(run.runId.utf8)
            try txn.put(db.runsByPlan, key: Array(run.planId.utf8), value: id)
            try txn.put(db.runsByStatus, key: Array(run.status.rawValue.utf8), value: id)
        }
        var untagged: [String] = []
        try txn.forEach(db.plans) { _, value in
            let record = try decode(PlanRecord.self, value)
            if record.pseudoName == nil, try plan(from: record).inputs.contains(where: \.userTags.isEmpty) {
                untagged.append(record.planId)
            }
            return true
        }
        for planId in untagged { try txn.put(db.untaggedInputPlans, key: Array(planId.utf8), value: [0]) }
        try txn.put(db.meta, key: runIndexesKey, value: [1])
    }

    // MARK: Transactions and encoding

    func read<R>(_ operation: String, _ body: (borrowing LMDBTransaction) throws -> R) throws(StoreError) -> R {
        do { return try env.read(body) } catch { throw StoreError.from(error, operation: operation) }
    }

    func write<R>(_ operation: String, _ body: (borrowing LMDBTransaction) throws -> R) throws(StoreError) -> R {
        do { return try env.write(body) } catch { throw StoreError.from(error, operation: operation) }
    }

    static func encode(_ value: some Encodable) throws -> [UInt8] {
        Array(try JSONEncoder().encode(value))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]?) throws -> T? {
        guard let bytes else { return nil }
        return try JSONDecoder().decode(type, from: Data(bytes))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: UnsafeRawBufferPointer) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}
