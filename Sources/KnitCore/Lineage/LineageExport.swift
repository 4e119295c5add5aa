// Provenance exports of a lineage graph, for tools outside Knit: OpenLineage RunEvents (spec 2-0-2) and a
// W3C PROV-JSON document. Both are built as JSONValue trees so the key order is fixed and the output is
// stable; neither reads a clock: event times are the Runs' own update times.

/// OpenLineage and PROV-JSON views of a ``KnitGraph`` of kind `lineage`.
public enum LineageExport {
    /// Namespace of every job and dataset Knit exports.
    public static let namespace = "knit"
    /// The OpenLineage schema the events follow.
    public static let openLineageSchema = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"

    /// The OpenLineage event type a Run in `status` is at: not yet started → START, started → RUNNING,
    /// aborting → ABORT, done → COMPLETE, failed → FAIL; anything unknown → OTHER.
    public static func eventType(status: String) -> String {
        switch RunStatus(rawValue: status) {
        case .deactivated?, .waiting?, .ready?, .starting?: return "START"
        case .running?, .completing?: return "RUNNING"
        case .aborting?: return "ABORT"
        case .done?: return "COMPLETE"
        case .failed?, .invalidated?: return "FAIL"
        case nil: return "OTHER"
        }
    }

    /// One RunEvent per Run of `graph`, in graph order: the job is the Run's plan (name = planId), inputs and
    /// outputs are the Data (name = knitId) with their tags in a `knit_tags` facet and the mountpoint in a
    /// `knit_mountpoint` input/output facet.
    /// - Parameter producer: URI naming the software that made the events (OpenLineage `producer`).
    public static func openLineage(_ graph: KnitGraph, producer: String) -> JSONValue {
        let dataNodes = Dictionary(
            graph.nodes.filter { $0.type == .data }.map { ($0.id, $0) },
            uniquingKeysWith: { a, _ in a }
        )
        var inputs: [String: [GraphEdge]] = [:]
        var outputs: [String: [GraphEdge]] = [:]
        for edge in graph.edges {
            switch edge.type {
            case .input: inputs[edge.to, default: []].append(edge)
            case .output, .log: outputs[edge.from, default: []].append(edge)
            default: continue
            }
        }
        func facet(_ name: String, _ fields: [(String, JSONValue)]) -> JSONValue {
            .object(
                [("_producer", .string(producer)), ("_schemaURL", .string(producer + "#/facets/" + name))] + fields
            )
        }
        func dataset(_ nodeId: String, _ edge: GraphEdge, facetKey: String) -> JSONValue {
            let node = dataNodes[nodeId]
            let tags = (node?.tags ?? TagSet()).map { JSONValue.string($0.description) }
            let point: [(String, JSONValue)] =
                edge.type == .log ? [("log", .bool(true))] : [("path", .string(edge.label ?? ""))]
            return .object([
                ("namespace", .string(namespace)),
                ("name", .string(node?.knitId ?? String(nodeId.dropFirst()))),
                ("facets", .object([("knit_tags", facet("KnitTagsDatasetFacet", [("tags", .array(tags))]))])),
                (facetKey, .object([("knit_mountpoint", facet("KnitMountpointFacet", point))])),
            ])
        }
        var events: [JSONValue] = []
        for node in graph.nodes where node.type == .run {
            let status = node.status ?? ""
            var runFacet: [(String, JSONValue)] = [("status", .string(status))]
            if let exit = node.exit {
                runFacet.append(
                    ("exit", .object([("code", .number(String(exit.code))), ("message", .string(exit.message))]))
                )
            }
            var planFacet: [(String, JSONValue)] = [("planId", .string(node.plan?.planId ?? ""))]
            if let image = node.plan?.image { planFacet.append(("image", .string(image))) }
            if let name = node.plan?.name { planFacet.append(("name", .string(name))) }
            events.append(
                .object([
                    ("eventType", .string(eventType(status: status))),
                    ("eventTime", .string(node.updatedAt ?? "")),
                    ("producer", .string(producer)),
                    ("schemaURL", .string(openLineageSchema)),
                    (
                        "run",
                        .object([
                            ("runId", .string(node.runId ?? "")),
                            ("facets", .object([("knit_run", facet("KnitRunFacet", runFacet))])),
                        ])
                    ),
                    (
                        "job",
                        .object([
                            ("namespace", .string(namespace)),
                            ("name", .string(node.plan?.planId ?? "")),
                            ("facets", .object([("knit_plan", facet("KnitPlanJobFacet", planFacet))])),
                        ])
                    ),
                    ("inputs", .array((inputs[node.id] ?? []).map { dataset($0.from, $0, facetKey: "inputFacets") })),
                    ("outputs", .array((outputs[node.id] ?? []).map { dataset($0.to, $0, facetKey: "outputFacets") })),
                ])
            )
        }
        return .array(events)
    }

    /// A PROV-JSON document: every Data an entity (`knitdata:<knitId>`, attribute `knit:tags`), every Run an
    /// activity (`knitrun:<runId>`, `knit:status`, `prov:endTime` once finished), every Run's plan an agent
    /// (`knitplan:<planId>`); `used` and `wasGeneratedBy` carry the mountpoint path as `prov:role`,
    /// `wasAssociatedWith` ties each Run to its plan.
    public static func prov(_ graph: KnitGraph) -> JSONValue {
        var entities: [(String, JSONValue)] = []
        var activities: [(String, JSONValue)] = []
        var agents: [(String, JSONValue)] = []
        var agentIds = Set<String>()
        var used: [(String, JSONValue)] = []
        var generated: [(String, JSONValue)] = []
        var associated: [(String, JSONValue)] = []
        func qualified(_ name: String) -> JSONValue {
            .object([("$", .string(name)), ("type", .string("prov:QUALIFIED_NAME"))])
        }
        var ids: [String: String] = [:]
        for node in graph.nodes {
            switch node.type {
            case .data:
                let id = "knitdata:" + (node.knitId ?? "")
                ids[node.id] = id
                let tags = (node.tags ?? TagSet()).map { JSONValue.string($0.description) }
                entities.append(
                    (
                        id,
                        .object([
                            ("prov:type", qualified("knit:Data")),
                            ("knit:knitId", .string(node.knitId ?? "")),
                            ("knit:tags", .array(tags)),
                        ])
                    )
                )
            case .run:
                let id = "knitrun:" + (node.runId ?? "")
                ids[node.id] = id
                let status = node.status ?? ""
                var fields: [(String, JSONValue)] = [
                    ("prov:type", qualified("knit:Run")),
                    ("knit:status", .string(status)),
                    ("knit:updatedAt", .string(node.updatedAt ?? "")),
                ]
                if let status = RunStatus(rawValue: status), !status.isProcessing, let end = node.updatedAt {
                    fields.append(("prov:endTime", .string(end)))
                }
                if let exit = node.exit {
                    fields.append(("knit:exitCode", .number(String(exit.code))))
                    fields.append(("knit:exitMessage", .string(exit.message)))
                }
                activities.append((id, .object(fields)))
                if let plan = node.plan {
                    let agent = "knitplan:" + plan.planId
                    if agentIds.insert(agent).inserted {
                        var attributes: [(String, JSONValue)] = [("prov:type", qualified("prov:SoftwareAgent"))]
                        if let image = plan.image { attributes.append(("knit:image", .string(image))) }
                        if let name = plan.name { attributes.append(("knit:name", .string(name))) }
                        if let annotations = plan.annotations, !annotations.isEmpty {
                            attributes.append(("knit:annotations", .array(annotations.map(JSONValue.string))))
                        }
                        agents.append((agent, .object(attributes)))
                    }
                    associated.append(
                        (
                            "_:assoc\(associated.count + 1)",
                            .object([("prov:activity", .string(id)), ("prov:agent", .string(agent))])
                        )
                    )
                }
            default:
                continue
            }
        }
        for edge in graph.edges {
            switch edge.type {
            case .input:
                guard let entity = ids[edge.from], let activity = ids[edge.to] else { continue }
                used.append(
                    (
                        "_:use\(used.count + 1)",
                        .object([
                            ("prov:activity", .string(activity)), ("prov:entity", .string(entity)),
                            ("prov:role", .string(edge.label ?? "")),
                        ])
                    )
                )
            case .output, .log:
                guard let activity = ids[edge.from], let entity = ids[edge.to] else { continue }
                generated.append(
                    (
                        "_:gen\(generated.count + 1)",
                        .object([
                            ("prov:entity", .string(entity)), ("prov:activity", .string(activity)),
                            ("prov:role", .string(edge.type == .log ? "(log)" : edge.label ?? "")),
                        ])
                    )
                )
            default:
                continue
            }
        }
        var document: [(String, JSONValue)] = [
            (
                "prefix",
                .object([
                    ("knit", .string("urn:knit:")),
                    ("knitdata", .string("urn:knit:data:")),
                    ("knitrun", .string("urn:knit:run:")),
                    ("knitplan", .string("urn:knit:plan:")),
                ])
            )
        ]
        if !entities.isEmpty { document.append(("entity", .object(entities))) }
        if !activities.isEmpty { document.append(("activity", .object(activities))) }
        if !agents.isEmpty { document.append(("agent", .object(agents))) }
        if !used.isEmpty { document.append(("used", .object(used))) }
        if !generated.isEmpty { document.append(("wasGeneratedBy", .object(generated))) }
        if !associated.isEmpty { document.append(("wasAssociatedWith", .object(associated))) }
        return .object(document)
    }
}
