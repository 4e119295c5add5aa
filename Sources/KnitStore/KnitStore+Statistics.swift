internal import KnitCore
internal import KnitLMDB

// Figures for `GET /metrics` and `knitadm status`. Every one is a count LMDB keeps anyway (`mdb_stat` of a
// database, `mdb_cursor_count` of one status in `runs_by_status`) or the environment's meta page, so a
// scrape costs the same on a store of ten Data as on one of ten million. The bytes the Data hold are left
// out on purpose: they are not kept as a counter (quota usage is summed from the Data records), and a
// scrape must not walk every record.

extension KnitStore {
    /// Counts and map use, read in one read transaction.
    public func statistics() throws(StoreError) -> StoreStatistics {
        let db = self.db
        let env = self.env
        return try read("statistics") { txn in
            var runs: [String: Int] = [:]
            for status in RunStatus.allCases {
                runs[status.rawValue] = try txn.duplicateCount(db.runsByStatus, key: Array(status.rawValue.utf8))
            }
            // Read inside the transaction so the counts and the map use describe about the same moment.
            let map = try env.mapUsage()
            return StoreStatistics(
                data: try txn.count(db.data),
                // The `knit#uploaded` pseudo plan is a record too; it is nobody's Plan.
                plans: max(try txn.count(db.plans) - 1, 0),
                users: try txn.count(db.users),
                runsByStatus: runs,
                mapSizeBytes: map.mapSize,
                mapUsedBytes: map.usedBytes,
                pageSize: map.pageSize,
                readersInUse: map.readersInUse,
                maxReaders: map.maxReaders,
                hookOutbox: try txn.count(db.hookOutbox)
            )
        }
    }
}

/// What ``KnitStore/statistics()`` reports.
public struct StoreStatistics: Codable, Sendable, Equatable {
    /// Data records: finished, processing and failed ones.
    public var data: Int
    /// Plans registered (not the `knit#uploaded` pseudo plan).
    public var plans: Int
    /// User records, disabled and deleted users included (a deleted user's record stays).
    public var users: Int
    /// Runs by status, every status present (0 when none).
    public var runsByStatus: [String: Int]
    /// The LMDB map size, the most the database file may grow to.
    public var mapSizeBytes: Int64
    /// Pages in use up to the highest one, times the page size.
    public var mapUsedBytes: Int64
    public var pageSize: Int64
    public var readersInUse: Int
    public var maxReaders: Int
    /// After-hook deliveries still owed (the scheduler's outbox).
    public var hookOutbox: Int

    public init(
        data: Int,
        plans: Int,
        users: Int,
        runsByStatus: [String: Int],
        mapSizeBytes: Int64,
        mapUsedBytes: Int64,
        pageSize: Int64,
        readersInUse: Int,
        maxReaders: Int,
        hookOutbox: Int = 0
    ) {
        self.data = data
        self.plans = plans
        self.users = users
        self.runsByStatus = runsByStatus
        self.mapSizeBytes = mapSizeBytes
        self.mapUsedBytes = mapUsedBytes
        self.pageSize = pageSize
        self.readersInUse = readersInUse
        self.maxReaders = maxReaders
        self.hookOutbox = hookOutbox
    }

    /// Runs the scheduler has still to start: its queue.
    public var runsWaiting: Int { runsByStatus[RunStatus.waiting.rawValue] ?? 0 }
}
