internal import KnitCore
internal import KnitLMDB
internal import Logging

#if canImport(Glibc)
    internal import Glibc
#endif

// Who owns a Run's directories, and how the directories of dropped Data are deleted for sure.
//
// knitd runs as the instance's user and deletes Data directories on retry and delete; the scheduler runs as
// root and creates the directories a Run writes into. So the store creates them for the user owning
// `home/data` (the store's owner), and the scheduler hands back whatever a Run wrote to that same owner when
// the Run ends (see KnitScheduler's OutputSanitizer).
//
// Deleting is two steps that cannot be one transaction: the records go in a write transaction, the
// directories after it commits. The transaction that drops the records also names their directories in
// `garbage`; after the commit they are deleted and their entries dropped. A crash or a failed deletion in
// between leaves the entry, and `collectGarbage()` (knitd and the scheduler call it at start) finishes the job.

/// The owner of the store's `data/` directory: the owner every Data directory should have.
public struct StoreOwner: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32

    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }
}

extension KnitStore {
    /// Who owns `home/data`, or nil when it cannot be read.
    public func dataOwner() -> StoreOwner? {
        var info = stat()
        guard lstat(layout.data, &info) == 0 else { return nil }
        return StoreOwner(uid: info.st_uid, gid: info.st_gid)
    }

    /// Creates an (empty) output or log directory of a Run, mode 0755, owned by ``dataOwner()`` so that knitd
    /// can delete it later even though the scheduler (root) made it.
    func makeRunDirectory(_ path: String) throws(StoreError) {
        try FileSystem.makeDirectory(path, mode: 0o755)
        guard let owner = dataOwner() else { return }
        var info = stat()
        guard lstat(path, &info) == 0, info.st_uid != owner.uid || info.st_gid != owner.gid else { return }
        if lchown(path, owner.uid, owner.gid) != 0 {
            throw FileSystem.error("hand \(path) to uid \(owner.uid)")
        }
    }

    /// Names the directories of `knitIds` as garbage, in the transaction that drops their records.
    func markGarbage(_ txn: borrowing LMDBTransaction, _ knitIds: [String], runId: String) throws {
        for knitId in knitIds {
            try txn.put(db.garbage, key: Array(knitId.utf8), value: Array(runId.utf8))
        }
    }

    /// Deletes the directories of `knitIds` (garbage committed just now) and then their `garbage` entries.
    /// A directory that cannot be deleted keeps its entry for the next ``collectGarbage()``.
    /// - Returns: how many were deleted.
    @discardableResult
    func removeGarbage(_ knitIds: [String]) -> Int {
        var removed: [String] = []
        for knitId in knitIds {
            do {
                try FileSystem.removeTree(dataDirectory(knitId: knitId))
                removed.append(knitId)
            } catch {
                logger.error(
                    "cannot delete the directory of dropped data; kept for the next start",
                    metadata: ["data.id": "\(knitId)", "store.error": "\(error)"]
                )
            }
        }
        guard !removed.isEmpty else { return 0 }
        do {
            try write("drop garbage entries") { txn in
                for knitId in removed { _ = try txn.delete(db.garbage, key: Array(knitId.utf8)) }
            }
        } catch {
            // The directories are gone; the entries only make the next start try again, which is harmless.
            logger.error("cannot drop garbage entries", metadata: ["store.error": "\(error)"])
        }
        return removed.count
    }

    /// knitIds whose directories wait for deletion (their records are gone).
    public func pendingGarbage() throws(StoreError) -> [String] {
        try read("list garbage") { txn in
            var knitIds: [String] = []
            try txn.forEach(db.garbage) { key, _ in
                knitIds.append(String(decoding: key, as: UTF8.self))
                return true
            }
            return knitIds
        }
    }

    /// Deletes every directory `garbage` still names (a crash, or a failed deletion, after the transaction that
    /// dropped their records) and drops the entries. knitd and the scheduler call it at start.
    /// - Returns: how many directories were deleted.
    @discardableResult
    public func collectGarbage() -> Int {
        let pending: [String]
        do { pending = try pendingGarbage() } catch {
            logger.error("cannot read the garbage list", metadata: ["store.error": "\(error)"])
            return 0
        }
        guard !pending.isEmpty else { return 0 }
        let removed = removeGarbage(pending)
        logger.info(
            "collected the directories of dropped data",
            metadata: ["store.garbage.removed": "\(removed)", "store.garbage.left": "\(pending.count - removed)"]
        )
        return removed
    }
}
