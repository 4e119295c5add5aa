// Plans depend on each other through tags only: plan B depends on plan A when some input of B (not one
// pinned by knit#id or knit#timestamp) asks for user tags that all appear on some output or the log of A,
// because then every Data A produces there can feed B. Registering a plan that closes a loop (itself
// included) would make Runs feed themselves forever, so it is refused with 409.

/// A plan as the dependency graph sees it.
public struct PlanGraphNode: Sendable, Equatable {
    public let planId: String
    /// User tags of each input that is not pinned to one Data by `knit#id` / `knit#timestamp`.
    public let inputs: [TagSet]
    /// Tags of each output, and of the log if there is one.
    public let outputs: [TagSet]

    public init(planId: String, inputs: [TagSet], outputs: [TagSet]) {
        self.planId = planId
        self.inputs = inputs.filter { !$0.isEmpty }
        self.outputs = outputs
    }

    public init(planId: String, plan: Plan) {
        self.init(
            planId: planId,
            inputs: plan.inputs.filter { !$0.isPinned }.map(\.userTags),
            outputs: plan.outputs.map(\.tags) + (plan.log.map { [$0] } ?? [])
        )
    }
}

/// The plans' dependency graph, indexed so that finding the dependants of a plan looks only at inputs
/// that can match (an input's smallest tag must appear in the output's tag set).
public struct PlanGraph: Sendable {
    public let nodes: [PlanGraphNode]
    /// Smallest user tag of each input → (node index, input index).
    private let inputsByFirstTag: [Tag: [(Int, Int)]]

    public init(_ nodes: [PlanGraphNode]) {
        self.nodes = nodes
        var index: [Tag: [(Int, Int)]] = [:]
        for (nodeIndex, node) in nodes.enumerated() {
            for (inputIndex, tags) in node.inputs.enumerated() {
                guard let first = tags.tags.first else { continue }
                index[first, default: []].append((nodeIndex, inputIndex))
            }
        }
        inputsByFirstTag = index
    }

    /// Indexes of the nodes with an input fed by some output of `nodes[index]`.
    public func dependants(of index: Int) -> Set<Int> {
        var found = Set<Int>()
        for output in nodes[index].outputs {
            for tag in output {
                for (nodeIndex, inputIndex) in inputsByFirstTag[tag] ?? []
                where !found.contains(nodeIndex) && output.isSuperset(of: nodes[nodeIndex].inputs[inputIndex]) {
                    found.insert(nodeIndex)
                }
            }
        }
        return found
    }

    /// True when adding `node` to `existing` makes a dependency cycle through it (a plan feeding itself
    /// counts). `existing` is assumed acyclic, as every registration keeps it so.
    public static func createsCycle(adding node: PlanGraphNode, to existing: [PlanGraphNode]) -> Bool {
        let graph = PlanGraph(existing + [node])
        let start = existing.count
        var visited = Set<Int>()
        var pending = [start]
        while let current = pending.popLast() {
            for next in graph.dependants(of: current) {
                if next == start { return true }
                if visited.insert(next).inserted { pending.append(next) }
            }
        }
        return false
    }
}

/// A registered plan with its id, as the detail builder needs its neighbours.
public struct IdentifiedPlan: Sendable, Equatable {
    public let planId: String
    public let plan: Plan
    public init(planId: String, plan: Plan) {
        self.planId = planId
        self.plan = plan
    }
}

extension PlanInput {
    /// True when Data produced with `tags` (an output's or a log's) always satisfies this input's tag
    /// requirement; pinned inputs are fed by no plan.
    public func isFed(by tags: TagSet) -> Bool { !isPinned && tags.isSuperset(of: userTags) }
}

/// Registered plans indexed by tag for Plan Detail's upstreams and downstreams. Built once, it answers
/// for any number of plans by looking only at outputs and inputs that share a tag with the point asked
/// about, so `plan find` over 10,000 plans is not 10,000 × 10,000 comparisons.
public struct PlanNeighbourhood: Sendable {
    /// The plans, ordered by planId bytes: the order upstreams and downstreams are listed in.
    private let plans: [IdentifiedPlan]
    /// Each user tag of an output (point = output index) or of the log (point = outputs.count) →
    /// (plan index, point), in plan then point order.
    private let pointsByTag: [Tag: [(plan: Int, point: Int)]]
    /// First user tag of every unpinned input → (plan index, input index).
    private let inputsByFirstTag: [Tag: [(plan: Int, input: Int)]]
    /// Unpinned inputs without user tags, which every output feeds.
    private let untaggedInputs: [(plan: Int, input: Int)]

    public init(_ others: [IdentifiedPlan]) {
        plans = others.sorted { compareBytes($0.planId, $1.planId) < 0 }
        var points: [Tag: [(plan: Int, point: Int)]] = [:]
        var inputs: [Tag: [(plan: Int, input: Int)]] = [:]
        var untagged: [(plan: Int, input: Int)] = []
        for (index, entry) in plans.enumerated() {
            let tagSets = entry.plan.outputs.map(\.tags) + (entry.plan.log.map { [$0] } ?? [])
            for (point, tags) in tagSets.enumerated() {
                for tag in tags { points[tag, default: []].append((index, point)) }
            }
            for (inputIndex, input) in entry.plan.inputs.enumerated() where !input.isPinned {
                if let first = input.userTags.tags.first {
                    inputs[first, default: []].append((index, inputIndex))
                } else {
                    untagged.append((index, inputIndex))
                }
            }
        }
        pointsByTag = points
        inputsByFirstTag = inputs
        untaggedInputs = untagged
    }

    /// Outputs and logs of other plans whose Data always satisfy `input`, by planId, then output order
    /// with the log last.
    func upstreams(of input: PlanInput, excluding planId: String) -> [PlanUpstreamJSON] {
        guard !input.isPinned else { return [] }
        let candidates: [(plan: Int, point: Int)]
        if let first = input.userTags.tags.first {
            candidates = pointsByTag[first] ?? []
        } else {
            candidates = plans.indices.flatMap { index in
                (0..<(plans[index].plan.outputs.count + (plans[index].plan.log == nil ? 0 : 1))).map { (index, $0) }
            }
        }
        var found: [PlanUpstreamJSON] = []
        for (index, point) in candidates where plans[index].planId != planId {
            let other = plans[index]
            let summary = other.plan.summary(planId: other.planId)
            if point < other.plan.outputs.count {
                let output = other.plan.outputs[point]
                if input.isFed(by: output.tags) {
                    found.append(PlanUpstreamJSON(plan: summary, mountpoint: output.mountpoint))
                }
            } else if let log = other.plan.log, input.isFed(by: log) {
                found.append(PlanUpstreamJSON(plan: summary, log: LogPointJSON(tags: log)))
            }
        }
        return found
    }

    /// Inputs of other plans that Data tagged `tags` always satisfy, by planId, then input order.
    func downstreams(of tags: TagSet, excluding planId: String) -> [PlanDownstreamJSON] {
        var candidates = untaggedInputs
        for tag in tags { candidates += inputsByFirstTag[tag] ?? [] }
        candidates.sort { $0.plan != $1.plan ? $0.plan < $1.plan : $0.input < $1.input }
        var found: [PlanDownstreamJSON] = []
        for (index, inputIndex) in candidates where plans[index].planId != planId {
            let other = plans[index]
            let input = other.plan.inputs[inputIndex]
            if input.isFed(by: tags) {
                found.append(
                    PlanDownstreamJSON(plan: other.plan.summary(planId: other.planId), mountpoint: input.mountpoint)
                )
            }
        }
        return found
    }
}

extension PlanDetailJSON {
    /// Plan Detail of `plan` registered as `planId`, with upstreams and downstreams among `others`
    /// (ordered by planId, then output order with the log last). `others` may contain the plan itself;
    /// it is skipped.
    public init(planId: String, plan: Plan, others: [IdentifiedPlan]) {
        self.init(planId: planId, plan: plan, neighbourhood: PlanNeighbourhood(others))
    }

    /// Plan Detail of `plan` with upstreams and downstreams from an index built once for many plans.
    public init(planId: String, plan: Plan, neighbourhood: PlanNeighbourhood) {
        let inputs = plan.inputs.map { input in
            PlanInputJSON(
                path: input.path,
                tags: input.tags,
                upstreams: neighbourhood.upstreams(of: input, excluding: planId)
            )
        }
        func downstreams(of tags: TagSet) -> [PlanDownstreamJSON] {
            neighbourhood.downstreams(of: tags, excluding: planId)
        }
        self.init(
            planId: planId,
            image: plan.imageReference,
            entrypoint: plan.entrypoint.isEmpty ? nil : plan.entrypoint,
            args: plan.args.isEmpty ? nil : plan.args,
            annotations: plan.annotations.isEmpty ? nil : plan.annotations.map(\.description),
            inputs: inputs,
            outputs: plan.outputs.map {
                PlanOutputJSON(path: $0.path, tags: $0.tags, downstreams: downstreams(of: $0.tags))
            },
            log: plan.log.map { PlanLogJSON(tags: $0, downstreams: downstreams(of: $0)) },
            active: plan.active,
            onNode: plan.onNodeJSON,
            resources: plan.resources.mapValues(\.text),
            serviceAccount: plan.serviceAccount
        )
    }
}
