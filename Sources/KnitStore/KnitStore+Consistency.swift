public import KnitCore
internal import KnitLMDB

#if canImport(Glibc)
    internal import Glibc
#endif

// Records against directories, checked while knitd and the scheduler serve. The store's own order makes the
// check safe to run live: a Data record is written before its directory exists (an upload's at its begin, a
// Run's output at its creation) and dropped in the same transaction that names its directory in `garbage`, so
// a directory is never legitimately without a record or a garbage entry, and a record of an ended Run always
// has its directory. What a concurrent change could make look wrong is read again before it is reported.

/// What `checkConsistency` found (and `repairOrphanDirectories` did).
public struct ConsistencyReport: Codable, Sendable, Equatable {
    /// A Data whose Run has ended but whose directory is gone.
    public struct MissingDirectory: Codable, Sendable, Equatable {
        public var knitId: String
        public var runId: String
        public var runStatus: RunStatus
    }

    /// Data of ended Runs without their directory under `data/`.
    public var recordsWithoutDirectory: [MissingDirectory] = []
    /// Names under `data/` that no Data record and no garbage entry explains.
    public var directoriesWithoutRecord: [String] = []
    /// Directories of dropped Data waiting to be deleted (`garbage`): expected, not a problem.
    public var pendingGarbage: [String] = []
    /// Orphan directories `--repair` deleted.
    public var removedDirectories: [String] = []
    /// Users whose kept usage differs from a recount of their Data records (``KnitStore/checkUsage(repair:)``).
    public var usageMismatches: [UsageMismatch] = []
    /// Whether `--repair` rewrote the kept usage from the recount.
    public var usageRewritten = false
    public var dataRecords = 0
    public var directories = 0
}

extension KnitStore {
    /// Compares the Data records with the directories under `data/`.
    public func checkConsistency() throws(StoreError) -> ConsistencyReport {
        var report = ConsistencyReport()
        // Directories first: a Data made after this listing has its record by then and is simply not looked at.
        let names = try FileSystem.entries(layout.data)
        report.directories = names.count
        let listed = Set(names)
        var unexplained: [[UInt8]] = []
        var absent: [ConsistencyReport.MissingDirectory] = []
        try read("check consistency") { txn in
            var count = 0
            try txn.forEach(db.data) { key, value in
                count += 1
                let record = try resolved(txn, try DataRecord(decoding: value))
                if let status = record.producer?.status, !status.isProcessing, !listed.contains(Array(key)) {
                    absent.append(.init(knitId: record.knitId, runId: record.runId, runStatus: status))
                }
                return true
            }
            report.dataRecords = count
            for name in names {
                if try txn.get(db.data, key: name) != nil { continue }
                if try txn.get(db.garbage, key: name) != nil {
                    report.pendingGarbage.append(String(decoding: name, as: UTF8.self))
                    continue
                }
                unexplained.append(name)
            }
        }
        // A directory deleted since the listing was garbage being collected; a record without its directory may
        // have been dropped (retry, delete) since the transaction. Only what is still wrong is reported.
        report.directoriesWithoutRecord = unexplained.filter {
            FileSystem.exists(layout.data + "/" + String(decoding: $0, as: UTF8.self))
        }.map { String(decoding: $0, as: UTF8.self) }
        if !absent.isEmpty {
            let still = try read("check consistency") { txn in
                try absent.filter { try txn.get(db.data, key: Array($0.knitId.utf8)) != nil }
            }
            report.recordsWithoutDirectory = still.filter { !FileSystem.exists(dataDirectory(knitId: $0.knitId)) }
        }
        return report
    }

    /// Deletes directories under `data/` that still have neither a Data record nor a garbage entry, the way
    /// the store deletes dropped Data: named in `garbage` in one transaction (which checks again that no
    /// record appeared), then deleted and their entries dropped. A deletion that fails stays in `garbage`
    /// for the next start.
    /// - Returns: the names deleted.
    public func repairOrphanDirectories(_ names: [String]) throws(StoreError) -> [String] {
        let orphans = try write("mark orphan directories") { txn in
            var orphans: [String] = []
            for name in names where !name.contains("/") && name != "." && name != ".." {
                let key = Array(name.utf8)
                guard try txn.get(db.data, key: key) == nil else { continue }
                try txn.put(db.garbage, key: key, value: Array("fsck".utf8))
                orphans.append(name)
            }
            return orphans
        }
        var removed: [String] = []
        for name in orphans where removeGarbage([name]) == 1 { removed.append(name) }
        return removed
    }
}
