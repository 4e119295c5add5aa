public import KnitCore
internal import KnitDigest
internal import KnitLMDB
internal import Logging

// Plans: registration (identity and cycle checks), queries, and changes to the mutable fields. Plan
// Detail links every plan to its upstreams and downstreams, so each answer reads every plan record; the
// plan table is small next to Data, and one read transaction keeps the links consistent.

extension KnitStore {
    /// Registers `spec` as a new Plan created by `creator`.
    ///
    /// Validates and normalizes it (absent resources get the defaults), refuses a plan equivalent to a
    /// registered one and one whose tags close a dependency cycle, then writes the plan, its identity hash
    /// and its input tags in one transaction.
    /// - Throws: `.invalid` "invalid plan spec" with the problems, one per line, as advice; `.conflict` "there
    ///   are equivalent plan" with ``StoreError/see`` naming the existing plan, or "plan spec conflicts with
    ///   others" when the plan would make a cycle.
    public func registerPlan(_ spec: PlanSpecJSON, creator: String) throws(StoreError) -> PlanDetailJSON {
        let plan: Plan
        do { plan = try Plan(validating: spec) } catch {
            throw StoreError(.invalid, "invalid plan spec", advice: "\(error)")
        }
        let hash = Array(SHA256Digest.hex(of: plan.identityBytes).utf8)
        let planId = KnitIdentifier.make()
        let now = clock()
        return try write("register plan") { txn in
            for existingId in try txn.duplicates(db.planByHash, key: hash) {
                let existing = try imagePlan(txn, String(decoding: existingId, as: UTF8.self))
                if existing.plan.sameIdentity(as: plan) {
                    throw StoreError(.conflict, "there are equivalent plan", see: existing.planId)
                }
            }
            let others = try allImagePlans(txn)
            let node = PlanGraphNode(planId: planId, plan: plan)
            if PlanGraph.createsCycle(adding: node, to: others.map { PlanGraphNode(planId: $0.planId, plan: $0.plan) })
            {
                throw StoreError(
                    .conflict,
                    "plan spec conflicts with others",
                    advice: "plan's tag dependency makes cycle"
                )
            }
            let record = PlanRecord(planId: planId, plan: plan, creator: creator, createdAtMs: now)
            try txn.put(db.plans, key: Array(planId.utf8), value: Self.encode(record))
            try countNewPlan(txn, record)
            try txn.put(db.planByHash, key: hash, value: Array(planId.utf8))
            for input in plan.inputs {
                guard let tag = try leastUsedInputTag(txn, input.userTags) else { continue }
                try txn.put(db.inputTagIndex, key: Self.indexKey(tag), value: Array(planId.utf8))
            }
            if plan.inputs.contains(where: \.userTags.isEmpty) {
                try txn.put(db.untaggedInputPlans, key: Array(planId.utf8), value: [0])
            }
            let created = try projectPlan(txn, planRecord: record, plan: plan, now: now)
            logger.info(
                "plan registered",
                metadata: [
                    "plan.id": "\(planId)", "plan.image": "\(plan.imageReference)", "plan.runs_created": "\(created)",
                ]
            )
            var detail = PlanDetailJSON(planId: planId, plan: plan, others: others)
            detail.creator = Self.shownCreator(record.creator)
            return detail
        }
    }

    /// The Plan `planId` (pseudo plans included) as the API shows it.
    /// - Throws: `.notFound`.
    public func planDetail(planId: String) throws(StoreError) -> PlanDetailJSON {
        try read("plan detail") { txn in
            if planId == uploadedPlan.planId { return Self.pseudoDetail(uploadedPlan) }
            let others = try allImagePlans(txn)
            guard let found = others.first(where: { $0.planId == planId }) else {
                throw StoreError(.notFound, "plan \(planId) not found")
            }
            var detail = PlanDetailJSON(planId: planId, plan: found.plan, others: others)
            detail.creator = Self.shownCreator(try decodedPlan(txn, planId).record.creator)
            return detail
        }
    }

    /// Plans matching every given filter, ordered by planId (Knitfab's `GET /api/plans`).
    ///
    /// - `active`: nil for both.
    /// - `image`: `name` (or `name:`) matches any tag of that image, `name:tag` only that tag. A colon before the last
    ///   `/` belongs to a registry's `host:port` (Knitfab #225).
    /// - `inTags`: some input asks for all of them; `knit#id` / `knit#timestamp` match an input pinned to
    ///   that Data or instant. Two values of one system key, or any other `knit#` key, match nothing.
    /// - `outTags`: some output, or the log, carries all of them; system tags match nothing.
    ///
    /// - `creator`: registered by that user.
    ///
    /// Pseudo plans (no image, no inputs, one untagged output; nobody's) appear only when no image, input,
    /// output or creator filter is given and `active` is not false.
    public func findPlans(
        active: Bool? = nil,
        image: String? = nil,
        inTags: [Tag] = [],
        outTags: [Tag] = [],
        creator: String? = nil
    ) throws(StoreError) -> [PlanDetailJSON] {
        guard let inQuery = InTagQuery(inTags), !outTags.contains(where: \.isSystem) else { return [] }
        let imageQuery = image.map(ImageQuery.init)
        let outSet = TagSet(outTags)
        return try read("find plans") { txn in
            let plans = try allImagePlans(txn)
            let neighbourhood = PlanNeighbourhood(plans)
            var found: [PlanDetailJSON] = []
            if active != false, image == nil, inTags.isEmpty, outTags.isEmpty, creator == nil {
                found.append(Self.pseudoDetail(uploadedPlan))
            }
            for entry in plans {
                let plan = entry.plan
                if let active, plan.active != active { continue }
                if let imageQuery, !imageQuery.matches(plan) { continue }
                if !inTags.isEmpty, !plan.inputs.contains(where: inQuery.matches) { continue }
                if !outTags.isEmpty {
                    let points = plan.outputs.map(\.tags) + (plan.log.map { [$0] } ?? [])
                    guard points.contains(where: { $0.isSuperset(of: outSet) }) else { continue }
                }
                let owner = Self.shownCreator(try decodedPlan(txn, entry.planId).record.creator)
                if let creator, owner != creator { continue }
                var detail = PlanDetailJSON(planId: entry.planId, plan: plan, neighbourhood: neighbourhood)
                detail.creator = owner
                found.append(detail)
            }
            return found.sorted { $0.planId.utf8.lexicographicallyPrecedes($1.planId.utf8) }
        }
    }

    /// Activates or deactivates `planId`. A pseudo plan is always active and cannot change.
    /// - Throws: `.notFound`; `.invalid` for a pseudo plan.
    public func setPlanActive(planId: String, active: Bool) throws(StoreError) -> PlanDetailJSON {
        let now = clock()
        // The same transaction parks the plan's waiting Runs (or wakes its deactivated ones), so the
        // scheduler never starts a Run of an inactive plan.
        return try changePlan(
            planId,
            operation: "set plan active",
            { plan throws(StoreError) in plan.active = active },
            then: { txn in try applyPlanActive(txn, planId: planId, active: active, now: now) }
        )
    }

    /// Applies `PUT /api/plans/{id}/resources`: `set`, then `unset` (unset wins for the same key).
    /// - Throws: `.invalid` for a malformed quantity or resource name (nothing changes); `.notFound`.
    public func changePlanResources(planId: String, change: PlanResourceChangeJSON) throws(StoreError)
        -> PlanDetailJSON
    {
        try changePlan(planId, operation: "change plan resources") { plan throws(StoreError) in
            do { try plan.apply(change) } catch {
                throw StoreError(.invalid, "invalid resources", advice: "\(error)")
            }
        }
    }

    /// Applies `PUT /api/plans/{id}/annotations`: `remove_key`, `remove`, then `add`.
    /// - Throws: `.invalid` for a malformed annotation (nothing changes); `.notFound`.
    public func changePlanAnnotations(planId: String, change: PlanAnnotationChangeJSON) throws(StoreError)
        -> PlanDetailJSON
    {
        try changePlan(planId, operation: "change plan annotations") { plan throws(StoreError) in
            do { try plan.apply(change) } catch {
                throw StoreError(.invalid, "invalid annotations", advice: "\(error)")
            }
        }
    }

    /// Sets the service account of `planId`; nil (or an empty name) removes it.
    /// - Throws: `.invalid` for a name longer than 63 characters; `.notFound`.
    public func setPlanServiceAccount(planId: String, name: String?) throws(StoreError) -> PlanDetailJSON {
        try changePlan(planId, operation: "set plan service account") { plan throws(StoreError) in
            do { try plan.setServiceAccount(name) } catch {
                throw StoreError(.invalid, "invalid service account", advice: "\(error)")
            }
        }
    }

    // MARK: Internals

    /// Loads `planId`, lets `change` alter its mutable fields, and writes it back, in one transaction.
    private func changePlan(
        _ planId: String,
        operation: String,
        _ change: (inout Plan) throws(StoreError) -> Void,
        then: (borrowing LMDBTransaction) throws -> Void = { _ in }
    ) throws(StoreError) -> PlanDetailJSON {
        try write(operation) { txn in
            if planId == uploadedPlan.planId {
                throw StoreError(.invalid, "plan \(planId) is the \(PseudoPlan.uploaded) pseudo plan and cannot change")
            }
            var others = try allImagePlans(txn)
            guard let index = others.firstIndex(where: { $0.planId == planId }),
                var record = try Self.decode(PlanRecord.self, txn.get(db.plans, key: Array(planId.utf8)))
            else { throw StoreError(.notFound, "plan \(planId) not found") }
            var plan = others[index].plan
            try change(&plan)
            record.update(from: plan)
            try txn.put(db.plans, key: Array(planId.utf8), value: Self.encode(record))
            try then(txn)
            others[index] = IdentifiedPlan(planId: planId, plan: plan)
            var detail = PlanDetailJSON(planId: planId, plan: plan, others: others)
            detail.creator = Self.shownCreator(record.creator)
            return detail
        }
    }

    /// Every plan with an image (pseudo plans excluded), in planId order.
    func allImagePlans(_ txn: borrowing LMDBTransaction) throws -> [IdentifiedPlan] {
        var plans: [IdentifiedPlan] = []
        try txn.forEach(db.plans) { key, value in
            let decoded = try planMemo.decoded(planId: String(decoding: key, as: UTF8.self), bytes: value)
            if let plan = decoded.plan { plans.append(IdentifiedPlan(planId: decoded.record.planId, plan: plan)) }
            return true
        }
        return plans
    }

    /// The tag that lists `input` in `input_tag_index`. A Data matches an input only when it carries all of
    /// the input's tags, so one of them is enough to find the input again; taking the one fewest inputs
    /// are listed under keeps a tag every plan shares (`type:dataset`) from making each push look at
    /// every plan. Ties go to the first tag in tag order, so the choice is deterministic.
    private func leastUsedInputTag(_ txn: borrowing LMDBTransaction, _ tags: TagSet) throws -> Tag? {
        var best: (tag: Tag, count: Int)?
        for tag in tags {
            let count = try txn.duplicateCount(db.inputTagIndex, key: Self.indexKey(tag))
            if let current = best, current.count <= count { continue }
            best = (tag, count)
        }
        return best?.tag
    }

    /// The image plan `planId`, which must exist (an index points at it).
    func imagePlan(_ txn: borrowing LMDBTransaction, _ planId: String) throws -> IdentifiedPlan {
        guard let plan = try decodedPlan(txn, planId).plan else {
            throw StoreError(.corrupted, "store: plan \(planId) is a pseudo plan where an image plan was expected")
        }
        return IdentifiedPlan(planId: planId, plan: plan)
    }

    /// The validated Plan of an image plan's record. Resources are taken exactly as stored, since
    /// validation would give back the defaults of limits a user has unset.
    static func plan(from record: PlanRecord) throws(StoreError) -> Plan {
        guard let spec = record.spec else { throw StoreError(.corrupted, "store: plan \(record.planId) has no spec") }
        var plan: Plan
        // Not `runnable`: a plan registered before those rules existed must still load (its Runs fail at start).
        do { plan = try Plan(validating: spec, runnable: false) } catch {
            throw StoreError(.corrupted, "store: plan \(record.planId) no longer validates: \(error)")
        }
        var resources: [String: ResourceQuantity] = [:]
        for (key, text) in spec.resources ?? [:] {
            guard let quantity = try? ResourceQuantity(parsing: text) else {
                throw StoreError(.corrupted, "store: plan \(record.planId) has a malformed resource \(key)")
            }
            resources[key] = quantity
        }
        plan.resources = resources
        return plan
    }

    /// A recorded creator as details show it: records from before creators were kept have none.
    static func shownCreator(_ creator: String?) -> String? {
        guard let creator, !creator.isEmpty else { return nil }
        return creator
    }

    /// Detail of a pseudo plan: a name instead of an image, always active, one output without tags.
    static func pseudoDetail(_ record: PlanRecord) -> PlanDetailJSON {
        PlanDetailJSON(
            planId: record.planId,
            name: record.pseudoName,
            outputs: [PlanOutputJSON(path: PseudoPlan.uploadPath, tags: [])],
            active: true
        )
    }
}

extension PlanRecord {
    init(planId: String, plan: Plan, creator: String, createdAtMs: Int64) {
        self.init(planId: planId)
        self.creator = creator
        self.createdAtMs = createdAtMs
        update(from: plan)
    }

    /// Copies `plan` (its spec and the summary fields) into the record.
    mutating func update(from plan: Plan) {
        let summary = plan.summary(planId: planId)
        spec = plan.spec
        image = summary.image
        entrypoint = summary.entrypoint
        args = summary.args
        annotations = summary.annotations
    }
}

/// `image=` of a plan query: `name` or `name:tag`, where a colon before the last `/` is a registry port.
private struct ImageQuery {
    let name: String
    let version: String?

    init(_ text: String) {
        let nameStart = text.lastIndex(of: "/").map { text.index(after: $0) } ?? text.startIndex
        if let colon = text[nameStart...].lastIndex(of: ":") {
            name = String(text[..<colon])
            // `name:` (what Knitfab's CLI sends for `--image name`) asks for any version, as in Knitfab.
            let tag = String(text[text.index(after: colon)...])
            version = tag.isEmpty ? nil : tag
        } else {
            name = text
            version = nil
        }
    }

    func matches(_ plan: Plan) -> Bool { plan.image == name && (version == nil || plan.version == version) }
}

/// `in_tag=` of a plan query, split into user tags and the pinned Data or instant. Nil when it can match
/// nothing (two values of one system key, `knit#transient` or an unknown `knit#` key, a bad timestamp).
private struct InTagQuery {
    var userTags = TagSet()
    var knitId: String?
    var timestamp: KnitTime?

    init?(_ tags: [Tag]) {
        for tag in tags {
            switch tag.key {
            case SystemTag.id:
                guard knitId == nil || knitId == tag.value else { return nil }
                knitId = tag.value
            case SystemTag.timestamp:
                guard let instant = try? KnitTime(rfc3339: tag.value) else { return nil }
                guard timestamp == nil || timestamp == instant else { return nil }
                timestamp = instant
            default:
                if tag.isSystem { return nil }
                userTags.insert(tag)
            }
        }
    }

    func matches(_ input: PlanInput) -> Bool {
        if let knitId, input.knitId != knitId { return false }
        if let timestamp, input.timestamp != timestamp { return false }
        return input.userTags.isSuperset(of: userTags)
    }
}
