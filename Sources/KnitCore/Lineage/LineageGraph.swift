// Lineage and plan graphs as data: nodes and edges that every renderer (dot, JSON, OpenLineage, PROV) reads.
// The traversals are Knitfab's over two lookups the caller supplies, so the store walks LMDB
// in one read transaction and a client can walk a server's find/show endpoints with the same code.

/// How far a graph reaches: a number of steps, or `all` (until nothing is left).
public struct GraphDepth: Sendable, Hashable, CustomStringConvertible {
    /// Steps to take; nil for all.
    public let steps: Int?

    public static let all = GraphDepth(steps: nil)
    /// Knitfab's default for both `knit data lineage` and `knit plan graph`.
    public static let `default` = GraphDepth(steps: 3)

    private init(steps: Int?) { self.steps = steps }

    /// A positive number of steps; traps on zero or less (callers parse user input with ``init(parsing:)``).
    public init(_ steps: Int) {
        precondition(steps > 0, "a graph depth is at least 1")
        self.steps = steps
    }

    /// `all` or a positive integer; nil for anything else (`0` included, as in Knitfab).
    public init?(parsing text: String) {
        if text == "all" {
            self.steps = nil
            return
        }
        guard let steps = Int(text), steps > 0 else { return nil }
        self.steps = steps
    }

    public var description: String { steps.map(String.init) ?? "all" }

    func allows(_ taken: Int) -> Bool { steps.map { taken < $0 } ?? true }

    /// Breadth-first from `start`, one level per step while the depth allows: `step` is called once for each
    /// node reached and appends the nodes one level further on.
    func walk(from start: String, _ step: (String, inout [String]) throws -> Void) rethrows {
        var frontier = [start]
        var visited = Set<String>()
        var taken = 0
        while allows(taken), !frontier.isEmpty {
            var next: [String] = []
            for id in frontier where visited.insert(id).inserted { try step(id, &next) }
            frontier = next
            taken += 1
        }
    }
}

/// Which kind of graph a ``KnitGraph`` is.
public enum KnitGraphKind: String, Codable, Sendable {
    /// Data and Runs around one Data (`knit data lineage`).
    case lineage
    /// Plans and their mountpoints around one Plan (`knit plan graph`).
    case plan
}

/// What a node stands for.
public enum GraphNodeType: String, Codable, Sendable {
    /// A Data (`id` = `d<knitId>`).
    case data
    /// A Run (`id` = `r<runId>`).
    case run
    /// The start of a Run without inputs, such as an upload (`id` = `root#N`).
    case root
    /// A Plan (`id` = `p<planId>`).
    case plan
    /// A Plan's input (`id` = `p<planId>@<path>`).
    case input
    /// A Plan's output (`id` = `p<planId>@<path>`).
    case output
    /// A Plan's log point (`id` = `p<planId>@log`).
    case log
}

/// What an edge says.
public enum GraphEdgeType: String, Codable, Sendable {
    /// Data → Run it is mounted into (label: the input path); in a plan graph, input point → Plan.
    case input
    /// Run → Data it made (label: the output path); in a plan graph, Plan → output point.
    case output
    /// Run → its log Data; in a plan graph, Plan → log point (label `(log)`).
    case log
    /// Root → a Run without inputs.
    case root
    /// Plan graph: an output or log point → an input point of another Plan its Data can feed.
    case feeds
}

/// One node. Which optional fields are present depends on `type`:
/// `data`: knitId, tags; `run`: runId, status, updatedAt, exit?, plan; `root`: runId of the Run it starts;
/// `plan`: planId, plan (summary), active; `input`/`output`: planId, path, tags; `log`: planId, tags.
public struct GraphNode: Codable, Sendable, Equatable {
    public var id: String
    public var type: GraphNodeType
    /// True on the node the graph was asked for.
    public var start: Bool?
    public var knitId: String?
    public var tags: TagSet?
    public var runId: String?
    public var status: String?
    public var updatedAt: String?
    public var exit: RunExitJSON?
    public var planId: String?
    public var plan: PlanSummaryJSON?
    public var active: Bool?
    public var path: String?

    public init(
        id: String,
        type: GraphNodeType,
        start: Bool? = nil,
        knitId: String? = nil,
        tags: TagSet? = nil,
        runId: String? = nil,
        status: String? = nil,
        updatedAt: String? = nil,
        exit: RunExitJSON? = nil,
        planId: String? = nil,
        plan: PlanSummaryJSON? = nil,
        active: Bool? = nil,
        path: String? = nil
    ) {
        self.id = id
        self.type = type
        self.start = start
        self.knitId = knitId
        self.tags = tags
        self.runId = runId
        self.status = status
        self.updatedAt = updatedAt
        self.exit = exit
        self.planId = planId
        self.plan = plan
        self.active = active
        self.path = path
    }
}

/// One directed edge between two node ids.
public struct GraphEdge: Codable, Sendable, Equatable, Hashable {
    public var from: String
    public var to: String
    public var type: GraphEdgeType
    public var label: String?

    public init(from: String, to: String, type: GraphEdgeType, label: String? = nil) {
        self.from = from
        self.to = to
        self.type = type
        self.label = label
    }
}

/// A lineage or plan graph: the JSON body of `GET /api/data/{knitId}/lineage` and `GET /api/plans/{id}/graph`.
///
/// Nodes and edges are in discovery order (breadth first from `start`, upstream before downstream); node ids
/// are the dot ids Knitfab's CLI uses, so every renderer agrees on them.
public struct KnitGraph: Codable, Sendable, Equatable {
    public var kind: KnitGraphKind
    /// Id of the node the graph was asked for.
    public var start: String
    public var upstream: Bool
    public var downstream: Bool
    /// Steps asked for; absent for `all`.
    public var depth: Int?
    public var nodes: [GraphNode]
    public var edges: [GraphEdge]

    public init(
        kind: KnitGraphKind,
        start: String,
        upstream: Bool,
        downstream: Bool,
        depth: Int?,
        nodes: [GraphNode],
        edges: [GraphEdge]
    ) {
        self.kind = kind
        self.start = start
        self.upstream = upstream
        self.downstream = downstream
        self.depth = depth
        self.nodes = nodes
        self.edges = edges
    }

    /// The node with `id`, if present.
    public func node(_ id: String) -> GraphNode? { nodes.first { $0.id == id } }

    public static func dataNodeId(_ knitId: String) -> String { "d" + knitId }
    public static func runNodeId(_ runId: String) -> String { "r" + runId }
    public static func planNodeId(_ planId: String) -> String { "p" + planId }
}

/// Why a graph could not be built.
public struct GraphError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// The starting Data or Plan does not exist.
        case notFound
        /// A record the graph links to is missing (a broken store or a server answering inconsistently).
        case inconsistent
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// What the lineage walk needs to know about one Data.
public struct LineageDataFacts: Sendable, Equatable {
    public var knitId: String
    /// All tags, system tags included (`knit#timestamp`, `knit#transient`).
    public var tags: TagSet
    /// The Run that made it; nil when that Run is not to be shown.
    public var producerRunId: String?
    /// Runs having it as an input, tombstones excluded.
    public var consumerRunIds: [String]

    public init(knitId: String, tags: TagSet, producerRunId: String?, consumerRunIds: [String]) {
        self.knitId = knitId
        self.tags = tags
        self.producerRunId = producerRunId
        self.consumerRunIds = consumerRunIds
    }

    /// The facts of a Data Detail, as a client sees them.
    public init(_ detail: DataDetailJSON) {
        var consumers: [String] = []
        for downstream in detail.downstreams where !consumers.contains(downstream.run.runId) {
            consumers.append(downstream.run.runId)
        }
        self.init(
            knitId: detail.knitId,
            tags: detail.tags,
            producerRunId: detail.upstream.run.runId,
            consumerRunIds: consumers
        )
    }
}

/// Builds lineage graphs (Knitfab's `knit data lineage`).
///
/// Depth counts Data → Run → Data hops. An upstream step goes from a Data to the Run that made it, adds that
/// Run's other outputs and log (not expanded further) and its inputs (the next frontier); a Run without inputs
/// gets a root node. A downstream step goes from a Data to every Run consuming it, adds their other inputs
/// (not expanded), and their outputs and logs (the next frontier). Upstream is walked first.
public struct LineageBuilder {
    private var nodes: [GraphNode] = []
    private var nodeIndex: [String: Int] = [:]
    private var edges: [GraphEdge] = []
    private var edgeSet: Set<GraphEdge> = []
    private var facts: [String: LineageDataFacts] = [:]
    private var roots = 0

    private init() {}

    /// The lineage of `knitId`.
    /// - Parameters:
    ///   - data: the facts of a Data, nil when there is none.
    ///   - run: a Run's detail, nil when there is none or it must not be shown (a tombstone).
    /// - Throws: ``GraphError`` `.notFound` for an unknown `knitId`, `.inconsistent` when a Run names a Data
    ///   that `data` does not know; whatever the lookups throw.
    public static func build(
        knitId: String,
        upstream: Bool,
        downstream: Bool,
        depth: GraphDepth,
        data: (String) throws -> LineageDataFacts?,
        run: (String) throws -> RunDetailJSON?
    ) throws -> KnitGraph {
        var builder = LineageBuilder()
        guard let first = try data(knitId) else { throw GraphError(.notFound, "data \(knitId) not found") }
        builder.facts[knitId] = first
        builder.addData(first, start: true)
        if upstream {
            try depth.walk(from: knitId) { id, next in try builder.stepUp(from: id, data: data, run: run, next: &next) }
        }
        if downstream {
            try depth.walk(from: knitId) { id, next in
                try builder.stepDown(from: id, data: data, run: run, next: &next)
            }
        }
        return KnitGraph(
            kind: .lineage,
            start: KnitGraph.dataNodeId(knitId),
            upstream: upstream,
            downstream: downstream,
            depth: depth.steps,
            nodes: builder.nodes,
            edges: builder.edges
        )
    }

    private mutating func stepUp(
        from knitId: String,
        data: (String) throws -> LineageDataFacts?,
        run: (String) throws -> RunDetailJSON?,
        next: inout [String]
    ) throws {
        let here = try ensureData(knitId, data)
        guard let runId = here.producerRunId, nodeIndex[KnitGraph.runNodeId(runId)] == nil,
            let producer = try run(runId)
        else { return }
        addRun(producer)
        // Siblings of the Data being traced are shown but not expanded further upstream.
        var siblings: [String] = []
        try addOutputs(of: producer, data: data, next: &siblings)
        if producer.inputs.isEmpty {
            let rootId = "root#\(roots)"
            roots += 1
            add(GraphNode(id: rootId, type: .root, runId: runId))
            addEdge(GraphEdge(from: rootId, to: KnitGraph.runNodeId(runId), type: .root))
        } else {
            for input in producer.inputs {
                try addInput(input, of: runId, data: data)
                next.append(input.knitId)
            }
        }
    }

    /// The Data on one input of `runId` and its edge into the Run.
    private mutating func addInput(
        _ input: RunAssignmentJSON,
        of runId: String,
        data: (String) throws -> LineageDataFacts?
    ) throws {
        _ = try ensureData(input.knitId, data)
        addEdge(
            GraphEdge(
                from: KnitGraph.dataNodeId(input.knitId),
                to: KnitGraph.runNodeId(runId),
                type: .input,
                label: input.path
            )
        )
    }

    private mutating func stepDown(
        from knitId: String,
        data: (String) throws -> LineageDataFacts?,
        run: (String) throws -> RunDetailJSON?,
        next: inout [String]
    ) throws {
        let here = try ensureData(knitId, data)
        for runId in here.consumerRunIds where nodeIndex[KnitGraph.runNodeId(runId)] == nil {
            guard let consumer = try run(runId) else { continue }
            addRun(consumer)
            for input in consumer.inputs { try addInput(input, of: runId, data: data) }
            var produced: [String] = []
            try addOutputs(of: consumer, data: data, next: &produced)
            next.append(contentsOf: produced)
        }
    }

    private mutating func addOutputs(
        of producer: RunDetailJSON,
        data: (String) throws -> LineageDataFacts?,
        next: inout [String]
    ) throws {
        let runNode = KnitGraph.runNodeId(producer.runId)
        for output in producer.outputs {
            _ = try ensureData(output.knitId, data)
            addEdge(
                GraphEdge(from: runNode, to: KnitGraph.dataNodeId(output.knitId), type: .output, label: output.path)
            )
            next.append(output.knitId)
        }
        if let log = producer.log {
            _ = try ensureData(log.knitId, data)
            addEdge(GraphEdge(from: runNode, to: KnitGraph.dataNodeId(log.knitId), type: .log, label: "(log)"))
            next.append(log.knitId)
        }
    }

    private mutating func ensureData(_ knitId: String, _ data: (String) throws -> LineageDataFacts?) throws
        -> LineageDataFacts
    {
        if let known = facts[knitId] { return known }
        guard let found = try data(knitId) else {
            throw GraphError(.inconsistent, "data \(knitId) is linked from a run but not found")
        }
        facts[knitId] = found
        addData(found, start: false)
        return found
    }

    private mutating func addData(_ facts: LineageDataFacts, start: Bool) {
        add(
            GraphNode(
                id: KnitGraph.dataNodeId(facts.knitId),
                type: .data,
                start: start ? true : nil,
                knitId: facts.knitId,
                tags: facts.tags
            )
        )
    }

    private mutating func addRun(_ run: RunDetailJSON) {
        add(
            GraphNode(
                id: KnitGraph.runNodeId(run.runId),
                type: .run,
                runId: run.runId,
                status: run.status,
                updatedAt: run.updatedAt,
                exit: run.exit,
                plan: run.plan
            )
        )
    }

    private mutating func add(_ node: GraphNode) {
        guard nodeIndex[node.id] == nil else { return }
        nodeIndex[node.id] = nodes.count
        nodes.append(node)
    }

    private mutating func addEdge(_ edge: GraphEdge) {
        if edgeSet.insert(edge).inserted { edges.append(edge) }
    }
}

/// Builds plan graphs (Knitfab's `knit plan graph`): breadth first from a Plan, upstream over its inputs'
/// `upstreams`, downstream over its outputs' and log's `downstreams`, each Plan with its mountpoints.
public enum PlanGraphBuilder {
    /// The plan graph around `planId`.
    /// - Parameter plan: a Plan Detail (with upstreams and downstreams), nil when there is none.
    /// - Throws: ``GraphError`` `.notFound` for an unknown `planId`, `.inconsistent` when a linked plan is
    ///   missing; whatever `plan` throws.
    public static func build(
        planId: String,
        upstream: Bool,
        downstream: Bool,
        depth: GraphDepth,
        plan: (String) throws -> PlanDetailJSON?
    ) throws -> KnitGraph {
        guard let first = try plan(planId) else { throw GraphError(.notFound, "plan \(planId) not found") }
        var details: [String: PlanDetailJSON] = [planId: first]
        var order = [planId]
        func walk(_ neighbours: (PlanDetailJSON) -> [String]) throws {
            var frontier = [first]
            var taken = 0
            while depth.allows(taken), !frontier.isEmpty {
                var next: [PlanDetailJSON] = []
                for leaf in frontier {
                    for id in neighbours(leaf) where details[id] == nil {
                        guard let found = try plan(id) else {
                            throw GraphError(
                                .inconsistent,
                                "plan \(id) is linked from plan \(leaf.planId) but not found"
                            )
                        }
                        details[id] = found
                        order.append(id)
                        next.append(found)
                    }
                }
                frontier = next
                taken += 1
            }
        }
        if upstream { try walk { $0.inputs.flatMap { $0.upstreams.map(\.plan.planId) } } }
        if downstream {
            try walk { detail in
                detail.outputs.flatMap { $0.downstreams.map(\.plan.planId) }
                    + (detail.log?.downstreams.map(\.plan.planId) ?? [])
            }
        }

        var nodes: [GraphNode] = []
        var edges: [GraphEdge] = []
        for id in order {
            let detail = details[id]!
            let planNode = KnitGraph.planNodeId(id)
            let summary = PlanSummaryJSON(
                planId: id,
                image: detail.image,
                name: detail.name,
                entrypoint: detail.entrypoint,
                args: detail.args,
                annotations: detail.annotations
            )
            nodes.append(
                GraphNode(
                    id: planNode,
                    type: .plan,
                    start: id == planId ? true : nil,
                    planId: id,
                    plan: summary,
                    active: detail.active
                )
            )
            for input in detail.inputs {
                let point = planNode + "@" + input.path
                nodes.append(GraphNode(id: point, type: .input, tags: input.tags, planId: id, path: input.path))
                edges.append(GraphEdge(from: point, to: planNode, type: .input, label: input.path))
            }
            for output in detail.outputs {
                let point = planNode + "@" + output.path
                nodes.append(GraphNode(id: point, type: .output, tags: output.tags, planId: id, path: output.path))
                edges.append(GraphEdge(from: planNode, to: point, type: .output, label: output.path))
            }
            if let log = detail.log {
                let point = planNode + "@log"
                nodes.append(GraphNode(id: point, type: .log, tags: log.tags, planId: id))
                edges.append(GraphEdge(from: planNode, to: point, type: .log, label: "(log)"))
            }
        }
        // Links between two plans that are both in the graph, each once, from the downstream side's inputs.
        var links = Set<GraphEdge>()
        for id in order {
            let detail = details[id]!
            for input in detail.inputs {
                for up in input.upstreams where details[up.plan.planId] != nil {
                    let source = KnitGraph.planNodeId(up.plan.planId) + "@" + (up.mountpoint?.path ?? "log")
                    let edge = GraphEdge(from: source, to: KnitGraph.planNodeId(id) + "@" + input.path, type: .feeds)
                    if links.insert(edge).inserted { edges.append(edge) }
                }
            }
        }
        return KnitGraph(
            kind: .plan,
            start: KnitGraph.planNodeId(planId),
            upstream: upstream,
            downstream: downstream,
            depth: depth.steps,
            nodes: nodes,
            edges: edges
        )
    }
}
