public import KnitCore
internal import KnitLMDB

// Lineage and plan graphs, each read in one transaction so the graph is one consistent snapshot. The walk
// itself is KnitCore's (LineageBuilder / PlanGraphBuilder); here are only the two lookups it needs. A Data
// record names its producing Run, a Run record its inputs and outputs, and `consumers` the Runs reading a Data;
// tombstones (invalidated Runs) are answered as absent, so they and their edges never appear.

extension KnitStore {
    /// The lineage graph of `knitId` (Knitfab's `knit data lineage`).
    /// - Throws: `.notFound` when there is no such Data; `.corrupted` when a Run names a missing Data.
    public func lineage(knitId: String, upstream: Bool, downstream: Bool, depth: GraphDepth) throws(StoreError)
        -> KnitGraph
    {
        try read("lineage") { txn in
            let cache = PlanCache()
            do {
                return try LineageBuilder.build(
                    knitId: knitId,
                    upstream: upstream,
                    downstream: downstream,
                    depth: depth,
                    data: { id in try lineageFacts(txn, id) },
                    run: { id in
                        let record = try txn.withValue(db.runs, key: id.utf8) { bytes throws(StoreError) in
                            try bytes.map { bytes throws(StoreError) in try RunRecord(decoding: bytes) }
                        }
                        guard let record, record.status != .invalidated else { return nil }
                        return try runDetail(txn, record, cache)
                    }
                )
            } catch let error as GraphError {
                throw StoreError(error.code == .notFound ? .notFound : .corrupted, error.message)
            }
        }
    }

    /// The plan graph of `planId` (Knitfab's `knit plan graph`); pseudo plans included.
    /// - Throws: `.notFound` when there is no such plan.
    public func planGraph(planId: String, upstream: Bool, downstream: Bool, depth: GraphDepth) throws(StoreError)
        -> KnitGraph
    {
        try read("plan graph") { txn in
            let plans = try allImagePlans(txn)
            let byId = Dictionary(plans.map { ($0.planId, $0) }, uniquingKeysWith: { first, _ in first })
            let neighbourhood = PlanNeighbourhood(plans)
            do {
                return try PlanGraphBuilder.build(
                    planId: planId,
                    upstream: upstream,
                    downstream: downstream,
                    depth: depth
                ) { id in
                    if id == uploadedPlan.planId { return Self.pseudoDetail(uploadedPlan) }
                    guard let found = byId[id] else { return nil }
                    return PlanDetailJSON(planId: id, plan: found.plan, neighbourhood: neighbourhood)
                }
            } catch let error as GraphError {
                throw StoreError(error.code == .notFound ? .notFound : .corrupted, error.message)
            }
        }
    }

    /// What the lineage walk needs of one Data: its tags as the API shows them, its producer (hidden when a
    /// tombstone) and the Runs in `consumers` (tombstones among them are dropped by the run lookup).
    private func lineageFacts(_ txn: borrowing LMDBTransaction, _ knitId: String) throws -> LineageDataFacts? {
        guard let record = try dataRecord(txn, Array(knitId.utf8)), let producer = record.producer else { return nil }
        let timestamp = record.timestampMs.map { KnitTime(milliseconds: $0).description }
        let consumers = try txn.duplicates(db.consumers, key: Array(knitId.utf8)).map {
            String(decoding: $0, as: UTF8.self)
        }
        return LineageDataFacts(
            knitId: knitId,
            tags: Self.tagSet(record, timestamp: timestamp, status: producer.status),
            producerRunId: producer.status == .invalidated ? nil : record.runId,
            consumerRunIds: consumers
        )
    }
}
