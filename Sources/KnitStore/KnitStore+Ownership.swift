public import KnitCore
internal import KnitLMDB

// Owners for the ownership rule (`Ownership` in KnitCore). A creator never changes, so the API may check
// the owner and then act in a second transaction: the only thing that can happen in between is that the
// thing disappears, which the action then reports as not found.

extension KnitStore {
    /// The user who owns `thing`: the creator of a Data, Run or Plan, the first pusher of an image
    /// repository (nil when nobody has pushed to it yet).
    /// - Throws: `.notFound` for an unknown Data, Run or Plan.
    public func owner(of thing: OwnedThing) throws(StoreError) -> String? {
        try read("owner") { txn -> String? in
            switch thing {
            case .data(let knitId):
                guard let record = try dataRecord(txn, Array(knitId.utf8)) else {
                    throw StoreError(.notFound, "data \(knitId) not found")
                }
                return record.creator
            case .run(let runId):
                let found = try txn.withValue(db.runs, key: runId.utf8) { bytes throws(StoreError) in
                    try bytes.map { bytes throws(StoreError) in try RunRecord(decoding: bytes) }
                }
                guard let found, found.status != .invalidated else {
                    throw StoreError(.notFound, "run \(runId) not found")
                }
                return found.creator
            case .plan(let planId):
                if planId == uploadedPlan.planId { return "" }
                guard try txn.withValue(db.plans, key: planId.utf8, { $0 != nil }) else {
                    throw StoreError(.notFound, "plan \(planId) not found")
                }
                return try decodedPlan(txn, planId).record.creator ?? ""
            case .imageRepository(let name):
                return try txn.withValue(db.imageOwners, key: name.utf8) { bytes in
                    bytes.map { String(decoding: $0, as: UTF8.self) }
                }
            }
        }
    }

    /// Makes `user` the owner of image repository `name` unless it has one; returns the owner it has
    /// afterwards (one write transaction, so two first pushes cannot both win).
    public func claimImageRepository(_ name: String, for user: String) throws(StoreError) -> String {
        // Every blob chunk of a push asks again: answer those from a read, and take the writer lock only for
        // the first push to a repository.
        if let owner = try owner(of: .imageRepository(name: name)) { return owner }
        return try write("claim image repository") { txn -> String in
            if let existing = try txn.withValue(
                db.imageOwners,
                key: name.utf8,
                { bytes in
                    bytes.map { String(decoding: $0, as: UTF8.self) }
                }
            ) {
                return existing
            }
            try txn.put(db.imageOwners, key: Array(name.utf8), value: Array(user.utf8))
            return user
        }
    }
}
