internal import KnitCore
internal import KnitLMDB
internal import KnitSystem
internal import Logging

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif
#if canImport(Glibc)
    internal import Glibc
#endif

// Backup and restore while knitd and the scheduler serve.
//
// A backup directory holds:
//   manifest.json        the last complete backup, written last (temporary file, fsync, rename)
//   db-<id>/data.mdb      the compacted LMDB snapshot the manifest names
//   data/<knitId>/        the content of every Data whose Run has ended (immutable: hard links into the home
//                         where the file system allows), shared by successive backups, complete once renamed
//                         from data/.partial-<knitId>
//   inflight-<id>/<knitId>/ a copy (never links: they still change) of the directories of Runs in flight
// Everything a run writes before the manifest's rename is new and unnamed by the old manifest, so a kill -9 at
// any moment leaves the previous backup whole; a second run reuses every complete data/<knitId> (resumable) and
// removes what the new manifest no longer names only after its rename.
//
// Data directories are checked against the snapshot, not the live store: a Data whose Run ended in the snapshot
// must have its directory. When one is gone (a retry or delete committed after the snapshot), another snapshot
// is taken and only what is missing is copied, up to a few times; what is still missing then (the store has a
// record without a directory: see `checkConsistency`) is listed in the manifest as `missing`.

/// The description of one complete backup (`manifest.json`).
public struct BackupManifest: Codable, Sendable, Equatable {
    /// One backed-up Data directory and its fingerprint.
    public struct Entry: Codable, Sendable, Equatable {
        public var knitId: String
        public var digest: TreeDigest
    }

    public static let currentFormat = 1
    public var format: Int
    public var id: String
    public var createdAtMs: Int64
    public var schemaVersion: String
    /// The snapshot's directory, relative to the backup directory.
    public var database: String
    /// Data of ended Runs, under `data/`.
    public var data: [Entry]
    /// Output and log directories of Runs in flight at the snapshot, under `inflight-<id>/`.
    public var inFlight: [Entry]
    /// Data of ended Runs whose directory the store did not have.
    public var missing: [String]
    /// The image registry's storage (`registry-<id>/`), when the home has one.
    public var registry: String?

    public var inFlightDirectory: String { "inflight-" + id }
}

/// What one `backup` did.
public struct BackupReport: Codable, Sendable, Equatable {
    public var directory: String
    public var id: String
    public var data: Int
    public var inFlight: Int
    public var missing: [String]
    /// Data directories a previous (complete or interrupted) run had already copied.
    public var reused: Int
    /// Files of ended Runs' Data linked or copied by this run.
    public var linkedFiles: Int
    public var copiedFiles: Int
    public var copiedBytes: Int64
    /// Bytes copied of Runs in flight (always copied, never linked).
    public var inFlightBytes: Int64
    /// Files of the image registry's storage linked (blobs) and copied (everything else).
    public var registryLinkedFiles: Int
    public var registryCopiedFiles: Int
    /// LMDB snapshots taken (more than one when Data were dropped while copying).
    public var snapshots: Int
    public var databaseBytes: Int64
}

/// What one `restore` did.
public struct RestoreReport: Codable, Sendable, Equatable {
    public var home: String
    public var backupId: String
    public var data: Int
    public var inFlight: Int
    public var bytes: Int64
    /// Where the home's previous `db/`, `data/` and `staging/` were moved, when it had any.
    public var previousContent: String?
}

extension KnitStore {
    static let manifestName = "manifest.json"
    /// Snapshots taken before giving up on a Data directory that keeps disappearing.
    static let backupSnapshotAttempts = 4

    /// Writes a backup of this store into `directory` (created when absent) while the store serves.
    /// - Throws: `.conflict` when another backup writes into `directory`; `.io`/`.storageFull` on file errors;
    ///   the previous backup in `directory` stays usable whatever fails.
    public func backup(to directory: String) throws(StoreError) -> BackupReport {
        try FileSystem.makeDirectory(directory, mode: 0o700)
        let lock = try Self.lockBackupDirectory(directory)
        defer { Glibc.close(lock) }
        let previous = try Self.readManifest(directory)
        let id = KnitIdentifier.make()
        let pool = directory + "/data"
        try FileSystem.makeDirectory(pool, mode: 0o700)
        try Self.removeLeftovers(directory, pool: pool)

        var count = TreeCopyCount()
        var reused = 0
        var snapshots = 0
        var snapshotDirectory = ""
        var records: [SnapshotRecord] = []
        var missing: [String] = []
        repeat {
            if !snapshotDirectory.isEmpty { try FileSystem.removeTree(snapshotDirectory) }
            snapshots += 1
            snapshotDirectory = directory + "/.partial-db-\(id)-\(snapshots)"
            try FileSystem.makeDirectory(snapshotDirectory, mode: 0o700)
            do { try env.copy(to: snapshotDirectory, compact: true) } catch { throw StoreError(error) }
            records = try Self.snapshotRecords(snapshotDirectory)
            missing = []
            for record in records where record.ended {
                let target = pool + "/" + record.knitId
                if FileSystem.exists(target) {
                    if snapshots == 1 { reused += 1 }
                    continue
                }
                let source = dataDirectory(knitId: record.knitId)
                guard FileSystem.exists(source) else {
                    missing.append(record.knitId)
                    continue
                }
                let partial = pool + "/.partial-" + record.knitId
                do {
                    try TreeCopy.copy(source, to: partial, link: true, count: &count)
                } catch  where !FileSystem.exists(source) {
                    // Dropped while it was being copied: like one gone before, the next snapshot tells.
                    try FileSystem.removeTree(partial)
                    missing.append(record.knitId)
                    continue
                }
                try FileSystem.syncTree(partial)
                try FileSystem.rename(partial, to: target)
            }
            if !missing.isEmpty {
                logger.info(
                    "data directories vanished after the snapshot; taking another",
                    metadata: ["backup.missing": "\(missing.count)", "backup.snapshot": "\(snapshots)"]
                )
            }
        } while !missing.isEmpty && snapshots < Self.backupSnapshotAttempts
        try FileSystem.sync(pool)

        let inFlightPartial = directory + "/.partial-inflight-\(id)"
        try FileSystem.makeDirectory(inFlightPartial, mode: 0o700)
        var inFlight: [BackupManifest.Entry] = []
        var inFlightCount = TreeCopyCount()
        for record in records where !record.ended && !record.openUpload {
            // Waiting Runs have no directories yet, and knitd's start-up recovery drops an upload in progress
            // (its record and any directory), so neither is copied.
            let source = dataDirectory(knitId: record.knitId)
            guard FileSystem.exists(source) else { continue }
            let target = inFlightPartial + "/" + record.knitId
            do {
                try TreeCopy.copy(source, to: target, link: false, count: &inFlightCount)
            } catch  where !FileSystem.exists(source) {
                // The Run was retried or deleted meanwhile; the snapshot still shows it in flight and restore
                // gives it an empty directory.
                try FileSystem.removeTree(target)
                try FileSystem.makeDirectory(target, mode: 0o755)
            }
            inFlight.append(.init(knitId: record.knitId, digest: try TreeCopy.digest(target)))
        }
        try FileSystem.syncTree(inFlightPartial)

        let known = Dictionary((previous?.data ?? []).map { ($0.knitId, $0.digest) }, uniquingKeysWith: { a, _ in a })
        var entries: [BackupManifest.Entry] = []
        let missingSet = Set(missing)
        for record in records where record.ended && !missingSet.contains(record.knitId) {
            if let digest = known[record.knitId] {
                entries.append(.init(knitId: record.knitId, digest: digest))
            } else {
                entries.append(.init(knitId: record.knitId, digest: try TreeCopy.digest(pool + "/" + record.knitId)))
            }
        }
        var registryCount = TreeCopyCount()
        var registry: String?
        if FileSystem.exists(layout.registryStorage) {
            let partial = directory + "/.partial-registry-\(id)"
            try TreeCopy.copy(layout.registryStorage, to: partial, policy: Self.registryPolicy, count: &registryCount)
            try FileSystem.syncTree(partial)
            registry = "registry-" + id
            try FileSystem.rename(partial, to: directory + "/" + registry!)
        }
        let database = "db-" + id
        try FileSystem.rename(snapshotDirectory, to: directory + "/" + database)
        let manifest = BackupManifest(
            format: BackupManifest.currentFormat,
            id: id,
            createdAtMs: clock(),
            schemaVersion: Self.schemaVersion,
            database: database,
            data: entries,
            inFlight: inFlight,
            missing: missing,
            registry: registry
        )
        try FileSystem.rename(inFlightPartial, to: directory + "/" + manifest.inFlightDirectory)
        try FileSystem.sync(directory)
        try Self.writeManifest(manifest, in: directory)
        Self.prune(directory, pool: pool, keeping: manifest, logger: logger)
        var info = stat()
        let databaseBytes = lstat(directory + "/" + database + "/data.mdb", &info) == 0 ? Int64(info.st_size) : 0
        return BackupReport(
            directory: directory,
            id: id,
            data: entries.count,
            inFlight: inFlight.count,
            missing: missing,
            reused: reused,
            linkedFiles: count.linkedFiles,
            copiedFiles: count.copiedFiles,
            copiedBytes: count.copiedBytes,
            inFlightBytes: inFlightCount.copiedBytes,
            registryLinkedFiles: registryCount.linkedFiles,
            registryCopiedFiles: registryCount.copiedFiles,
            snapshots: snapshots,
            databaseBytes: databaseBytes
        )
    }

    /// Whether this code can open (after migrating) a store of schema `version`.
    static func knownSchema(_ version: String) -> Bool {
        Int(version).map { (1...currentSchema).contains($0) } ?? false
    }

    /// Restores the backup in `directory` into `home`, which no process may have open (knitd, the scheduler,
    /// knitadm). Every Data directory is copied and checked against its fingerprint, and the snapshot is opened
    /// and its schema checked, before the home is touched; the home's previous `db/`, `data/` and `staging/`
    /// are then moved into `home/pre-restore-<time>/`, never deleted.
    public static func restore(from directory: String, into home: String) throws(StoreError) -> RestoreReport {
        guard let manifest = try readManifest(directory) else {
            throw StoreError(.notFound, "\(directory) holds no complete backup (no \(manifestName))")
        }
        // An older schema is restored as it is and migrated by the first open, like the store it was taken of.
        guard manifest.format == BackupManifest.currentFormat, knownSchema(manifest.schemaVersion) else {
            throw StoreError(
                .schemaMismatch,
                "backup \(manifest.id) has format \(manifest.format), schema \(manifest.schemaVersion); "
                    + "this knitadm restores format \(BackupManifest.currentFormat), schema 1 to \(schemaVersion)"
            )
        }
        try FileSystem.makeDirectory(home)
        if let pid = processHolding(home: home) {
            throw StoreError(
                .conflict,
                "\(home) is in use by process \(pid) (knitd, knit-scheduler or knitadm); stop it before restoring"
            )
        }
        var homeInfo = stat()
        guard lstat(home, &homeInfo) == 0 else { throw FileSystem.error("inspect \(home)") }
        // The instance's user owns its home; everything restored becomes theirs, as knitd and the store expect.
        let owner = StoreOwner(uid: homeInfo.st_uid, gid: homeInfo.st_gid)
        let layout = InstanceLayout(home: home)
        let work = home + "/.restore-" + manifest.id
        try FileSystem.removeTree(work)
        try FileSystem.makeDirectory(work + "/db", mode: 0o750)
        try FileSystem.makeDirectory(work + "/data", mode: 0o750)
        let bytes: Int64
        do {
            bytes = try prepareRestore(manifest, from: directory, work: work, owner: owner)
        } catch {
            // The home is untouched so far; what was copied for it goes.
            try? FileSystem.removeTree(work)
            throw error
        }

        var previousContent: String?
        var replaced = [layout.database, layout.data, layout.staging]
        if manifest.registry != nil { replaced.append(layout.registryStorage) }
        let present = replaced.filter(FileSystem.exists)
        if !present.isEmpty {
            let aside = home + "/pre-restore-\(FileSystem.nowMilliseconds())"
            try FileSystem.makeDirectory(aside, mode: 0o700)
            for path in present {
                try FileSystem.rename(path, to: aside + "/" + String(path.split(separator: "/").last!))
            }
            previousContent = aside
        }
        try FileSystem.rename(work + "/db", to: layout.database)
        try FileSystem.rename(work + "/data", to: layout.data)
        if manifest.registry != nil { try FileSystem.rename(work + "/registry", to: layout.registryStorage) }
        try FileSystem.makeDirectory(layout.staging)
        _ = lchown(layout.staging, owner.uid, owner.gid)
        try FileSystem.removeTree(work)
        try FileSystem.sync(home)
        return RestoreReport(
            home: home,
            backupId: manifest.id,
            data: manifest.data.count,
            inFlight: manifest.inFlight.count,
            bytes: bytes,
            previousContent: previousContent
        )
    }

    /// Copies the snapshot and every Data directory into `work` and checks each against the manifest.
    /// - Returns: the bytes of Data restored.
    private static func prepareRestore(
        _ manifest: BackupManifest,
        from directory: String,
        work: String,
        owner: StoreOwner
    ) throws(StoreError) -> Int64 {
        var count = TreeCopyCount()
        try TreeCopy.copy(
            directory + "/" + manifest.database + "/data.mdb",
            to: work + "/db/data.mdb",
            link: false,
            owner: owner,
            count: &count
        )
        let records = try snapshotRecords(work + "/db")
        let ended = Set(records.filter(\.ended).map(\.knitId))
        let listed = Set(manifest.data.map(\.knitId)).union(manifest.missing)
        guard ended == listed else {
            throw StoreError(
                .corrupted,
                "backup \(manifest.id): its snapshot and manifest disagree on \(ended.symmetricDifference(listed).count) Data"
            )
        }
        var bytes: Int64 = 0
        let sources =
            manifest.data.map { ($0, directory + "/data/" + $0.knitId) }
            + manifest.inFlight.map { ($0, directory + "/" + manifest.inFlightDirectory + "/" + $0.knitId) }
        for (entry, source) in sources {
            let target = work + "/data/" + entry.knitId
            try TreeCopy.copy(source, to: target, link: false, owner: owner, count: &count)
            let digest = try TreeCopy.digest(target)
            guard digest == entry.digest else {
                throw StoreError(
                    .corrupted,
                    "backup \(manifest.id): Data \(entry.knitId) does not match its fingerprint "
                        + "(\(digest.files) files, \(digest.bytes) bytes; backed up \(entry.digest.files), "
                        + "\(entry.digest.bytes))"
                )
            }
            bytes += digest.bytes
        }
        if let registry = manifest.registry {
            let target = work + "/registry"
            let policy = TreeCopy.Policy(link: { _ in false })
            try TreeCopy.copy(directory + "/" + registry, to: target, policy: policy, owner: owner, count: &count)
            try verifyRegistryBlobs(target + "/" + registryBlobs, backup: manifest.id)
        }
        if lchown(work + "/db", owner.uid, owner.gid) != 0 || lchown(work + "/data", owner.uid, owner.gid) != 0 {
            throw FileSystem.error("hand the restored directories to uid \(owner.uid)")
        }
        try FileSystem.syncTree(work)
        return bytes
    }

    /// Where docker-registry's filesystem driver keeps blobs, below the storage root.
    static let registryBlobs = "docker/registry/v2/blobs"

    /// The registry's blobs are written once under their digest (an upload is renamed into place), so they are
    /// linked; everything else (repository links, tags) is rewritten in place and copied; uploads in progress
    /// are left out. The registry keeps serving, so entries vanishing mid-walk are passed over.
    static let registryPolicy = TreeCopy.Policy(
        link: { $0.starts(with: Array((registryBlobs + "/").utf8)) },
        skip: { $0.split(separator: 0x2F).last.map { Array($0) } == Array("_uploads".utf8) },
        tolerateVanished: true
    )

    /// Checks every registry blob against the digest it is stored under (`sha256/ab/<hex>/data`).
    private static func verifyRegistryBlobs(_ blobs: String, backup: String) throws(StoreError) {
        let root = blobs + "/sha256"
        guard FileSystem.exists(root) else { return }
        for prefix in try FileSystem.entries(root) {
            let prefixPath = root + "/" + String(decoding: prefix, as: UTF8.self)
            for digest in try FileSystem.entries(prefixPath) {
                let hex = String(decoding: digest, as: UTF8.self)
                let file = prefixPath + "/" + hex + "/data"
                guard FileSystem.exists(file) else { continue }
                guard try TreeCopy.fileSHA256(file) == hex else {
                    throw StoreError(
                        .corrupted,
                        "backup \(backup): registry blob sha256:\(hex) does not match its digest"
                    )
                }
            }
        }
    }

    /// The process that has the store under `home` open, or nil when none has.
    ///
    /// Every process with the LMDB environment open holds a shared `fcntl` lock on the first byte of
    /// `db/lock.mdb` for as long as it is open (LMDB's own liveness lock), and the kernel drops it when the
    /// process dies, so unlike a pid file this can be neither stale nor forgotten.
    public static func processHolding(home: String) -> Int32? {
        let fd = open(InstanceLayout(home: home).database + "/lock.mdb", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var lock = Glibc.flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = 0
        lock.l_len = 1
        guard fcntl(fd, F_GETLK, &lock) == 0, lock.l_type != Int16(F_UNLCK) else { return nil }
        return lock.l_pid
    }

    // MARK: Backup directory

    /// A Data record of a snapshot: whether its Run had ended (so its directory no longer changes).
    struct SnapshotRecord {
        var knitId: String
        var ended: Bool
        /// An upload neither finished nor abandoned at the snapshot.
        var openUpload: Bool
    }

    /// The Data records of the LMDB snapshot in `databaseDirectory` (opened on its own, then closed and its lock
    /// file removed, so the copy stays a bare `data.mdb`).
    static func snapshotRecords(_ databaseDirectory: String) throws(StoreError) -> [SnapshotRecord] {
        defer { unlink(databaseDirectory + "/lock.mdb") }
        do {
            let env = try LMDBEnvironment(path: databaseDirectory, maxReaders: 8)
            defer { env.close() }
            let meta = try env.openDatabase(name: "meta")
            let data = try env.openDatabase(name: "data")
            let runs = try env.openDatabase(name: "runs")
            let openUploads = try env.openDatabase(name: "open_uploads")
            return try env.read { txn in
                let version = try txn.get(meta, key: schemaKey).map { String(decoding: $0, as: UTF8.self) }
                guard let version, knownSchema(version) else {
                    throw StoreError(
                        .schemaMismatch,
                        "snapshot schema \(version ?? "none") is not one of 1 to \(schemaVersion)"
                    )
                }
                var uploading: Set<String> = []
                try txn.forEach(openUploads) { _, value in
                    uploading.insert(String(decoding: value, as: UTF8.self))
                    return true
                }
                var records: [SnapshotRecord] = []
                try txn.forEach(data) { key, value in
                    let record = try DataRecord(decoding: value)
                    var status = record.producer?.status
                    if status == nil {
                        status = try txn.withValue(runs, key: record.runId.utf8) { bytes throws(StoreError) in
                            try bytes.map { bytes throws(StoreError) in try RunRecord(decoding: bytes).status }
                        }
                    }
                    let ended = status.map { !$0.isProcessing } ?? false
                    let knitId = String(decoding: key, as: UTF8.self)
                    records.append(
                        SnapshotRecord(knitId: knitId, ended: ended, openUpload: uploading.contains(knitId))
                    )
                    return true
                }
                return records
            }
        } catch {
            throw StoreError.from(error, operation: "read the backup snapshot")
        }
    }

    static func readManifest(_ directory: String) throws(StoreError) -> BackupManifest? {
        let path = directory + "/" + manifestName
        guard FileSystem.exists(path) else { return nil }
        do {
            return try JSONDecoder().decode(BackupManifest.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw StoreError(.corrupted, "cannot read \(path): \(error)")
        }
    }

    private static func writeManifest(_ manifest: BackupManifest, in directory: String) throws(StoreError) {
        let temporary = directory + "/.partial-" + manifestName
        let path = directory + "/" + manifestName
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try encoder.encode(manifest).write(to: URL(fileURLWithPath: temporary))
        } catch {
            throw StoreError(.io, "cannot write \(temporary): \(error)")
        }
        try FileSystem.sync(temporary)
        try FileSystem.rename(temporary, to: path)
        try FileSystem.sync(directory)
    }

    /// An exclusive `fcntl` lock on `directory/.lock` (released by the kernel when the process dies), so two backups never write into one directory.
    private static func lockBackupDirectory(_ directory: String) throws(StoreError) -> Int32 {
        let fd = open(directory + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileSystem.error("open \(directory)/.lock") }
        var lock = Glibc.flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        guard fcntl(fd, F_SETLK, &lock) == 0 else {
            Glibc.close(fd)
            throw StoreError(.conflict, "another backup is writing into \(directory)")
        }
        return fd
    }

    /// Removes what an interrupted run left half-written (never a complete `data/<knitId>`, which the next
    /// run reuses).
    private static func removeLeftovers(_ directory: String, pool: String) throws(StoreError) {
        for (parent, names) in [(directory, try FileSystem.entries(directory)), (pool, try FileSystem.entries(pool))] {
            for name in names where name.starts(with: Array(".partial-".utf8)) {
                try FileSystem.removeTree(bytes: Array((parent + "/").utf8) + name, shown: parent + "/…")
            }
        }
    }

    /// Removes older snapshots and Data the new manifest does not name. Best effort: what stays is only disk.
    private static func prune(_ directory: String, pool: String, keeping manifest: BackupManifest, logger: Logger) {
        let keep = Set(manifest.data.map(\.knitId))
        do {
            for name in try FileSystem.entries(directory) {
                let text = String(decoding: name, as: UTF8.self)
                guard text.hasPrefix("db-") || text.hasPrefix("inflight-") || text.hasPrefix("registry-"),
                    text != manifest.database, text != manifest.inFlightDirectory, text != manifest.registry
                else { continue }
                try FileSystem.removeTree(directory + "/" + text)
            }
            for name in try FileSystem.entries(pool) where !keep.contains(String(decoding: name, as: UTF8.self)) {
                try FileSystem.removeTree(bytes: Array((pool + "/").utf8) + name, shown: pool + "/…")
            }
        } catch {
            logger.warning("cannot prune the previous backup", metadata: ["backup.error": "\(error)"])
        }
    }
}
