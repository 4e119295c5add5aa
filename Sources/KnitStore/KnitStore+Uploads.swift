public import KnitCore
internal import KnitLMDB
internal import Logging

// Uploads: a `knit#uploaded` Run and its output Data exist (processing) from the moment the upload
// begins; finishing publishes the content and marks the Run done in one transaction.

extension KnitStore {
    /// Starts an upload by `creator`: one write transaction creates a running `knit#uploaded` Run and its
    /// output Data (no tags, no timestamp), then the staging directory is created.
    /// - Throws: `.quotaExceeded` when the creator holds as many Data as their quota allows or their stored
    ///   bytes are at their limit (nothing created).
    public func beginUpload(creator: String) throws(StoreError) -> UploadTicket {
        let knitId = KnitIdentifier.make()
        let runId = KnitIdentifier.make()
        let staging = stagingDirectory(knitId: knitId)
        try FileSystem.makeDirectory(staging)
        let now = clock()
        let bytesLeft: (left: Int64, limit: Int64)?
        do {
            bytesLeft = try write("begin upload") { txn -> (left: Int64, limit: Int64)? in
                let bytesLeft = try admitNewData(txn, user: creator)
                let run = RunRecord(
                    runId: runId,
                    planId: uploadedPlan.planId,
                    status: .running,
                    updatedAtMs: now,
                    exit: nil,
                    outputs: [knitId],
                    creator: creator
                )
                let data = DataRecord(
                    knitId: knitId,
                    runId: runId,
                    outputPath: PseudoPlan.uploadPath,
                    userTags: [],
                    timestampMs: nil,
                    sizeBytes: nil,
                    creator: creator,
                    producer: run.snapshot
                )
                try insertRun(txn, run)
                try txn.put(db.data, key: Array(knitId.utf8), value: data.encoded(), flags: .noOverwrite)
                try countNewData(txn, data)
                try txn.put(db.openUploads, key: Array(runId.utf8), value: Array(knitId.utf8))
                return bytesLeft
            }
        } catch {
            try? FileSystem.removeTree(staging)
            throw error
        }
        logger.debug("upload begun", metadata: ["data.id": "\(knitId)", "run.id": "\(runId)"])
        return UploadTicket(
            knitId: knitId,
            runId: runId,
            stagingPath: staging,
            quotaBytesLeft: bytesLeft?.left,
            quotaBytesLimit: bytesLeft?.limit
        )
    }

    /// Publishes an upload: syncs the staged content, renames it to `data/<knitId>`, then in one write
    /// transaction marks the Run done and gives the Data its timestamp (the same instant), size and tags.
    /// - Throws: `.invalid` for `knit#` tags (nothing moved; abandon the upload), `.conflict` when the
    ///   upload was already finished or abandoned, `.quotaExceeded` when `sizeBytes` would take the uploader
    ///   over their bytes quota (nothing published; abandon the upload), `.io`/`.storageFull` on file or LMDB
    ///   failures.
    public func finishUpload(_ ticket: UploadTicket, tags: [Tag], sizeBytes: Int64) throws(StoreError) -> DataDetailJSON
    {
        if let system = tags.first(where: \.isSystem) {
            throw StoreError(.invalid, "system tag '\(system)' cannot be set on upload")
        }
        let target = dataDirectory(knitId: ticket.knitId)
        try FileSystem.syncTree(ticket.stagingPath)
        try FileSystem.rename(ticket.stagingPath, to: target)
        try FileSystem.sync(layout.data)
        let now = clock()
        do {
            let detail = try write("finish upload") { txn in
                let runKey = Array(ticket.runId.utf8)
                let dataKey = Array(ticket.knitId.utf8)
                var run = try run(txn, ticket.runId)
                guard run.status == .running,
                    var record = try dataRecord(txn, dataKey)
                else {
                    throw StoreError(.conflict, "upload \(ticket.knitId) is no longer in progress")
                }
                try admitPublish(txn, user: record.creator, sizeBytes: sizeBytes)
                try addUsage(txn, user: record.creator, data: 0, bytes: sizeBytes - (record.sizeBytes ?? 0))
                run.status = .done
                run.updatedAtMs = now
                record.timestampMs = now
                record.sizeBytes = sizeBytes
                let userTags = TagSet(tags).tags
                try reindex(txn, knitId: ticket.knitId, from: record.userTags, to: userTags)
                record.userTags = userTags
                record.producer = run.snapshot
                try txn.put(db.data, key: dataKey, value: record.encoded())
                try putRun(txn, run)
                try txn.delete(db.openUploads, key: runKey)
                let cache = PlanCache()
                try projectData(txn, record, now: now, cache: cache)
                return try linkedDetail(txn, record, cache)
            }
            logger.info("upload finished", metadata: ["data.id": "\(ticket.knitId)", "data.bytes": "\(sizeBytes)"])
            return detail
        } catch {
            // The records still say "running"; put the content back so abandon or recovery finds it.
            do { try FileSystem.rename(target, to: ticket.stagingPath) } catch {
                logger.error(
                    "cannot return content to staging",
                    metadata: ["data.id": "\(ticket.knitId)", "store.error": "\(error)"]
                )
            }
            throw error
        }
    }

    /// Drops an upload that will not finish: removes its staging directory and its Run and Data records.
    /// Does nothing to an upload that was already finished. Never throws; failures are logged and left
    /// to ``recoverAtStartup()``.
    public func abandonUpload(_ ticket: UploadTicket) {
        do {
            try FileSystem.removeTree(ticket.stagingPath)
            let dropped = try write("abandon upload") { txn -> Bool in
                guard try txn.get(db.openUploads, key: Array(ticket.runId.utf8)) != nil else { return false }
                try dropUpload(txn, runId: ticket.runId, knitId: ticket.knitId)
                return true
            }
            if dropped {
                try FileSystem.removeTree(dataDirectory(knitId: ticket.knitId))
                logger.info("upload abandoned", metadata: ["data.id": "\(ticket.knitId)"])
            }
        } catch {
            logger.error(
                "abandoning upload failed",
                metadata: ["data.id": "\(ticket.knitId)", "store.error": "\(error)"]
            )
        }
    }

    /// Cleans up after a crash: every upload still open belonged to a knitd that died (one knitd owns
    /// uploads), so its records, staging and data directories go; then everything left in `staging/` goes.
    /// Call once at start-up, before serving.
    public func recoverAtStartup() -> RecoveryReport {
        var report = RecoveryReport()
        // Each step goes on past what it cannot do: one bad leftover must not keep every later one around.
        do {
            let open: [(runId: String, knitId: String)] = try read("list open uploads") { txn in
                var pairs: [(String, String)] = []
                try txn.forEach(db.openUploads) { key, value in
                    pairs.append((String(decoding: key, as: UTF8.self), String(decoding: value, as: UTF8.self)))
                    return true
                }
                return pairs
            }
            for upload in open {
                do {
                    try write("drop open upload") { txn in
                        try dropUpload(txn, runId: upload.runId, knitId: upload.knitId)
                    }
                    report.abandonedUploads += 1
                } catch {
                    logger.error(
                        "start-up recovery cannot drop an open upload",
                        metadata: ["data.id": "\(upload.knitId)", "store.error": "\(error)"]
                    )
                }
                for directory in [stagingDirectory(knitId: upload.knitId), dataDirectory(knitId: upload.knitId)] {
                    do { try FileSystem.removeTree(directory) } catch {
                        logger.error(
                            "start-up recovery cannot remove content",
                            metadata: ["data.id": "\(upload.knitId)", "store.error": "\(error)"]
                        )
                    }
                }
            }
        } catch {
            logger.error("start-up recovery cannot list open uploads", metadata: ["store.error": "\(error)"])
        }
        do {
            for name in try FileSystem.entries(layout.staging) {
                let shown = String(decoding: name, as: UTF8.self)
                do {
                    try FileSystem.removeTree(bytes: Array((home + "/staging/").utf8) + name, shown: shown)
                    report.removedStagingEntries += 1
                } catch {
                    report.unremovableStagingEntries += 1
                    logger.error(
                        "start-up recovery cannot remove a staging entry",
                        metadata: ["store.entry": "\(shown)", "store.error": "\(error)"]
                    )
                }
            }
        } catch {
            logger.error("start-up recovery cannot list staging", metadata: ["store.error": "\(error)"])
        }
        if report != RecoveryReport() {
            logger.info(
                "recovered from unfinished uploads",
                metadata: [
                    "store.abandoned": "\(report.abandonedUploads)",
                    "store.staging_removed": "\(report.removedStagingEntries)",
                    "store.staging_left": "\(report.unremovableStagingEntries)",
                ]
            )
        }
        return report
    }

    /// Deletes an open upload's Run, Data and index entries.
    private func dropUpload(_ txn: borrowing LMDBTransaction, runId: String, knitId: String) throws {
        let dataKey = Array(knitId.utf8)
        if let record = try dataRecord(txn, dataKey) {
            try reindex(txn, knitId: knitId, from: record.userTags, to: [])
            try txn.delete(db.data, key: dataKey)
            try uncountData(txn, record)
        }
        let id = Array(runId.utf8)
        if let run = try txn.withValue(
            db.runs,
            key: id,
            { bytes throws(StoreError) in
                try bytes.map { bytes throws(StoreError) in try RunRecord(decoding: bytes) }
            }
        ) {
            try txn.delete(db.runsByPlan, key: Array(run.planId.utf8), value: id)
            try txn.delete(db.runsByStatus, key: Array(run.status.rawValue.utf8), value: id)
        }
        try txn.delete(db.runs, key: id)
        try txn.delete(db.openUploads, key: id)
    }

    /// Inserts `count` finished uploads with the given tags, in large write transactions.
    /// For benchmarks only: no content directories are created. Not part of the store's API: `bench/` is its
    /// own package, which `package` access cannot reach, so it is an SPI only `@_spi(Benchmark) import` sees.
    /// Commits are not synced one by one but once at the end: each commit of random keys rewrites pages all over
    /// the trees, and syncing them every 20,000 Data wrote about 20 times the database's size at 10^6 Data.
    @_spi(Benchmark) public func bulkInsertForBenchmark(count: Int, tagsFor: (Int) -> [Tag]) throws {
        try env.withoutCommitSync { try bulkInsert(count: count, tagsFor: tagsFor) }
    }

    private func bulkInsert(count: Int, tagsFor: (Int) -> [Tag]) throws {
        // Each Data dirties a leaf page in five trees. Past about 6 million Data, 20,000 at a time went beyond
        // LMDB's dirty-page list (128 Ki pages) and the transaction spilled and rewrote pages over and over: the
        // loader wrote about 1 GB per second and committed once in 13 s. 5,000 stay well inside it.
        let batch = 5_000
        var index = 0
        let now = clock()
        while index < count {
            let end = min(count, index + batch)
            try write("bulk insert") { txn in
                for i in index..<end {
                    let knitId = KnitIdentifier.make()
                    let runId = KnitIdentifier.make()
                    let stamp = now - Int64(count - i)
                    let run = RunRecord(
                        runId: runId,
                        planId: uploadedPlan.planId,
                        status: .done,
                        updatedAtMs: stamp,
                        exit: nil,
                        outputs: [knitId],
                        creator: "bench"
                    )
                    let tags = TagSet(tagsFor(i)).tags
                    let data = DataRecord(
                        knitId: knitId,
                        runId: runId,
                        outputPath: PseudoPlan.uploadPath,
                        userTags: tags,
                        timestampMs: stamp,
                        sizeBytes: 0,
                        creator: "bench",
                        producer: run.snapshot
                    )
                    try insertRun(txn, run)
                    try txn.put(db.data, key: Array(knitId.utf8), value: data.encoded())
                    try countNewData(txn, data)
                    try reindex(txn, knitId: knitId, from: [], to: tags)
                }
            }
            index = end
        }
    }
}
