import KnitCore
import KnitTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

// Lineage and plan graphs built from in-memory Data and Runs, their dot text, and the provenance exports
// checked against the vendored schemas (Tests/Fixtures/Provenance) with python3-jsonschema.

private let uploadedPlan = PlanSummaryJSON(planId: "P0", name: "knit#uploaded")
private let trainPlan = PlanSummaryJSON(planId: "P1", image: "repo/train:v1")
private let at = "2024-05-17T04:19:33.325+00:00"

private func tags(_ texts: String...) -> TagSet { TagSet(texts.map { try! Tag(parsing: $0) }) }

/// An upload K0 (run R0), a training Run R1 reading K0 and making K1 plus log L1, and a failed Run R2 reading
/// K1 and making K2.
private struct World {
    var data: [String: LineageDataFacts] = [
        "K0": LineageDataFacts(
            knitId: "K0",
            tags: tags("knit#id:K0", "knit#timestamp:\(at)", "project:p & q"),
            producerRunId: "R0",
            consumerRunIds: ["R1"]
        ),
        "K1": LineageDataFacts(
            knitId: "K1",
            tags: tags("knit#id:K1", "type:model"),
            producerRunId: "R1",
            consumerRunIds: ["R2"]
        ),
        "L1": LineageDataFacts(
            knitId: "L1",
            tags: tags("knit#id:L1", "type:log"),
            producerRunId: "R1",
            consumerRunIds: []
        ),
        "K2": LineageDataFacts(
            knitId: "K2",
            tags: tags("knit#id:K2", "knit#transient:failed"),
            producerRunId: "R2",
            consumerRunIds: []
        ),
    ]
    var runs: [String: RunDetailJSON] = [
        "R0": RunDetailJSON(
            runId: "R0",
            status: "done",
            updatedAt: at,
            plan: uploadedPlan,
            outputs: [RunAssignmentJSON(path: "/upload", tags: [], knitId: "K0")]
        ),
        "R1": RunDetailJSON(
            runId: "R1",
            status: "done",
            updatedAt: at,
            exit: RunExitJSON(code: 0, message: ""),
            plan: trainPlan,
            inputs: [RunAssignmentJSON(path: "/in/data", tags: tags("project:p & q"), knitId: "K0")],
            outputs: [RunAssignmentJSON(path: "/out/model", tags: tags("type:model"), knitId: "K1")],
            log: RunLogJSON(tags: tags("type:log"), knitId: "L1")
        ),
        "R2": RunDetailJSON(
            runId: "R2",
            status: "failed",
            updatedAt: at,
            exit: RunExitJSON(code: 1, message: "boom"),
            plan: PlanSummaryJSON(planId: "P2", image: "repo/eval:v1"),
            inputs: [RunAssignmentJSON(path: "/in/model", tags: tags("type:model"), knitId: "K1")],
            outputs: [RunAssignmentJSON(path: "/out/score", tags: [], knitId: "K2")]
        ),
    ]

    func lineage(_ knitId: String, upstream: Bool = true, downstream: Bool = true, depth: GraphDepth = .default)
        throws -> KnitGraph
    {
        try LineageBuilder.build(
            knitId: knitId,
            upstream: upstream,
            downstream: downstream,
            depth: depth,
            data: { data[$0] },
            run: { runs[$0] }
        )
    }
}

/// Tests/Fixtures/Provenance/<name>, found from this file's path.
func provenanceFixture(_ name: String) -> String {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(2)
    return parts.joined(separator: "/") + "/Fixtures/Provenance/" + name
}

/// Validates JSON text against a vendored schema with python3-jsonschema (each element of an array when
/// `eachElement`, as an OpenLineage export is an array of RunEvents); returns the validator's complaint.
func schemaProblems(_ json: String, schema: String, eachElement: Bool = false) -> String? {
    let script = """
        import json, sys, jsonschema
        schema = json.load(open(sys.argv[1]))
        cls = jsonschema.validators.validator_for(schema)
        data = json.load(sys.stdin)
        items = data if sys.argv[2] == "each" else [data]
        if sys.argv[2] == "each" and not isinstance(data, list): items = [None]
        errors = sorted((e for item in items for e in cls(schema).iter_errors(item)), key=str)
        print("\\n".join(e.message for e in errors[:5]))
        sys.exit(1 if errors else 0)
        """
    let result = runProcess(
        ["/usr/bin/python3", "-c", script, provenanceFixture(schema), eachElement ? "each" : "whole"],
        input: json
    )
    return result.status == 0 ? nil : result.output
}

/// Reads a PROV-JSON document with the reference implementation of PROV-JSON (Debian's python3-prov, by
/// the format's author), which rejects what it cannot map to the PROV data model; returns the number of
/// records it read, or nil with its complaint.
func provLibraryRecords(_ json: String) -> (count: Int?, complaint: String) {
    let script = """
        import sys
        from prov.model import ProvDocument
        document = ProvDocument.deserialize(content=sys.stdin.read(), format="json")
        print(len(list(document.get_records())))
        """
    let result = runProcess(["/usr/bin/python3", "-c", script], input: json)
    let lines = result.output.split(separator: "\n")
    return (result.status == 0 ? lines.last.flatMap { Int($0) } : nil, result.output)
}

@Suite struct LineageTests {
    @Test func depthParsesLikeKnitfab() {
        #expect(GraphDepth(parsing: "3") == .default)
        #expect(GraphDepth(parsing: "all") == .all)
        #expect(GraphDepth(parsing: "0") == nil)
        #expect(GraphDepth(parsing: "-1") == nil)
        #expect(GraphDepth(parsing: "two") == nil)
        #expect(GraphDepth.all.description == "all")
    }

    @Test func singleUploadHasItsRunAndARoot() throws {
        let graph = try World().lineage("K0", downstream: false)
        #expect(graph.nodes.map(\.id) == ["dK0", "rR0", "root#0"])
        #expect(
            graph.edges == [
                GraphEdge(from: "rR0", to: "dK0", type: .output, label: "/upload"),
                GraphEdge(from: "root#0", to: "rR0", type: .root),
            ]
        )
        #expect(graph.start == "dK0")
        #expect(graph.node("dK0")?.start == true)
    }

    @Test func exactDotOfAnUpload() throws {
        let dot = try World().lineage("K0", downstream: false).dot(offsetMinutes: 540)
        let expected = """
            digraph G {
            \tnode [shape=record fontsize=10]
            \tedge [fontsize=10]

            \t"dK0"[
            \t\tshape=none
            \t\tcolor="#1c9930"
            \t\tlabel=<
            \t\t\t<TABLE CELLSPACING="0">
            \t\t\t\t<TR><TD BGCOLOR="#1c9930"><FONT COLOR="#FFFFFF"><B>Data</B></FONT></TD><TD BGCOLOR="#d4ecc6">knit#id: K0</TD></TR>
            \t\t\t\t<TR><TD COLSPAN="2"><FONT POINT-SIZE="8">2024-05-17T13:19:33.325+09:00</FONT></TD></TR>
            \t\t\t\t<TR><TD COLSPAN="2"><B>project</B>:p &amp; q</TD></TR>
            \t\t\t</TABLE>
            \t\t>
            \t];
            \t"rR0"[
            \t\tshape=none
            \t\tcolor="#FFA500"
            \t\tlabel=<
            \t\t\t<TABLE CELLSPACING="0">
            \t\t\t\t<TR><TD BGCOLOR="#FFA500"><FONT COLOR="#FFFFFF"><B>Run</B></FONT></TD><TD><FONT COLOR="#007700"><B>done</B></FONT></TD><TD>id: R0</TD></TR>
            \t\t\t\t<TR><TD COLSPAN="3"><FONT POINT-SIZE="8">last updated: 2024-05-17T13:19:33.325+09:00</FONT></TD></TR>
            \t\t\t\t<TR><TD COLSPAN="3">knit#uploaded</TD></TR>
            \t\t\t</TABLE>
            \t\t>
            \t];
            \t"root#0"[shape=Mdiamond];

            \t"rR0" -> "dK0" [label="/upload"];
            \t"root#0" -> "rR0";

            }

            """
        #expect(dot == expected)
    }

    @Test func downstreamStepAddsConsumersOutputsAndLog() throws {
        let graph = try World().lineage("K0", upstream: false, depth: GraphDepth(1))
        #expect(graph.nodes.map(\.id) == ["dK0", "rR1", "dK1", "dL1"])
        #expect(graph.edges.contains(GraphEdge(from: "rR1", to: "dL1", type: .log, label: "(log)")))
        #expect(graph.edges.contains(GraphEdge(from: "dK0", to: "rR1", type: .input, label: "/in/data")))
        let deeper = try World().lineage("K0", upstream: false, depth: .all)
        #expect(deeper.node("rR2")?.status == "failed")
        #expect(deeper.node("dK2") != nil)
    }

    @Test func upstreamDepthCountsDataRunDataHops() throws {
        let world = World()
        let one = try world.lineage("K2", downstream: false, depth: GraphDepth(1))
        #expect(Set(one.nodes.map(\.id)) == ["dK2", "rR2", "dK1"])
        let two = try world.lineage("K2", downstream: false, depth: GraphDepth(2))
        // The sibling log of K1 is shown, not expanded.
        #expect(Set(two.nodes.map(\.id)) == ["dK2", "rR2", "dK1", "rR1", "dL1", "dK0"])
        let all = try world.lineage("K2", downstream: false, depth: .all)
        #expect(all.nodes.contains { $0.type == .root })
        #expect(all.nodes.count == 8)
    }

    @Test func unknownDataIsNotFound() {
        #expect(throws: GraphError(.notFound, "data nope not found")) { try World().lineage("nope") }
    }

    @Test func hiddenRunsAreLeftOut() throws {
        var world = World()
        world.runs["R1"] = nil  // a tombstone: the lookup answers nothing
        let graph = try world.lineage("K0", depth: .all)
        #expect(graph.nodes.map(\.id) == ["dK0", "rR0", "root#0"])
    }

    @Test func graphvizAcceptsEveryDotOutput() throws {
        guard access("/usr/bin/dot", X_OK) == 0 else { return }
        let world = World()
        for id in ["K0", "K1", "L1", "K2"] {
            let dot = try world.lineage(id, depth: .all).dot(offsetMinutes: 0)
            let result = runProcess(["/usr/bin/dot", "-Tsvg"], input: dot)
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("<svg"))
        }
        let plans = try PlanGraphBuilder.build(planId: "A", upstream: true, downstream: true, depth: .all) {
            planDetails[$0]
        }
        let result = runProcess(["/usr/bin/dot", "-Tsvg"], input: plans.dot())
        #expect(result.status == 0, "\(result.output)")
    }

    /// F14: a control character in a tag (stored before such tags were refused) broke SVG rendering of
    /// every graph that held the Data.
    @Test func graphvizAcceptsControlCharactersInLabels() throws {
        guard access("/usr/bin/dot", X_OK) == 0 else { return }
        var world = World()
        world.data["K0"]?.tags = [
            KnitCore.Tag(key: SystemTag.id, value: "K0"), KnitCore.Tag(key: "c1", value: "a\u{01}b\u{1B}[0m\u{0}"),
            KnitCore.Tag(key: "c\u{7}", value: "<b>\"q\\"),
        ]
        let dot = try world.lineage("K1", depth: .all).dot(offsetMinutes: 0)
        #expect(dot.contains("a\\x01b\\x1B[0m\\x00"))
        #expect(!dot.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" && $0 != "\t" })
        let result = runProcess(["/usr/bin/dot", "-Tsvg"], input: dot)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("<svg"))
    }

    @Test func openLineageEventsMatchTheSpec() throws {
        let graph = try World().lineage("K1", depth: .all)
        let events = LineageExport.openLineage(graph, producer: "urn:knit:test")
        let text = events.rendered(indent: 2)
        #expect(schemaProblems(text, schema: "OpenLineage-2-0-2.json", eachElement: true) == nil)
        let items = try #require(events.arrayValue)
        #expect(items.count == 3)
        let byRun = Dictionary(
            items.map { ($0["run"]?["runId"]?.stringValue ?? "", $0) },
            uniquingKeysWith: { a, _ in a }
        )
        #expect(byRun["R1"]?["eventType"] == .string("COMPLETE"))
        #expect(byRun["R2"]?["eventType"] == .string("FAIL"))
        #expect(byRun["R1"]?["inputs"]?.arrayValue?.first?["name"] == .string("K0"))
        #expect(byRun["R1"]?["outputs"]?.arrayValue?.map { $0["name"]?.stringValue ?? "" } == ["K1", "L1"])
        #expect(
            byRun["R1"]?["inputs"]?.arrayValue?.first?["facets"]?["knit_tags"]?["tags"]?.arrayValue?.contains(
                .string("project:p & q")
            ) == true
        )
        #expect(byRun["R0"]?["job"]?["name"] == .string("P0"))
        #expect(LineageExport.eventType(status: "waiting") == "START")
        #expect(LineageExport.eventType(status: "running") == "RUNNING")
    }

    @Test func provDocumentMatchesTheSchema() throws {
        let graph = try World().lineage("K1", depth: .all)
        let document = LineageExport.prov(graph)
        #expect(schemaProblems(document.rendered(indent: 2), schema: "prov-json-schema.json") == nil)
        #expect(
            document["entity"]?["knitdata:K0"]?["knit:tags"]?.arrayValue?.contains(.string("project:p & q")) == true
        )
        #expect(document["activity"]?["knitrun:R2"]?["knit:status"] == .string("failed"))
        #expect(document["agent"]?["knitplan:P1"]?["knit:image"] == .string("repo/train:v1"))
        guard case .object(let used)? = document["used"] else { Issue.record("no used"); return }
        #expect(
            used.contains {
                $0.1["prov:entity"] == .string("knitdata:K0") && $0.1["prov:activity"] == .string("knitrun:R1")
            }
        )
        guard case .object(let generated)? = document["wasGeneratedBy"] else {
            Issue.record("no wasGeneratedBy"); return
        }
        #expect(
            generated.contains {
                $0.1["prov:entity"] == .string("knitdata:L1") && $0.1["prov:role"] == .string("(log)")
            }
        )
        guard case .object(let associated)? = document["wasAssociatedWith"] else { Issue.record("none"); return }
        #expect(associated.count == 3)
        // Every entity, activity, agent and relation is understood by the PROV reference implementation.
        let sections = ["entity", "activity", "agent", "used", "wasGeneratedBy", "wasAssociatedWith"]
        let expected = sections.compactMap { name -> Int? in
            if case .object(let members)? = document[name] { return members.count }
            return nil
        }.reduce(0, +)
        let parsed = provLibraryRecords(document.rendered(indent: 2))
        #expect(parsed.count == expected, "python3-prov: \(parsed.complaint)")
        #expect(provLibraryRecords(#"{"entity": {"no-prefix:x": {}}}"#).count == nil)
        // A broken document is caught, so the checks above mean something.
        #expect(schemaProblems(#"{"used": {"_:u": {"prov:entity": "x"}}}"#, schema: "prov-json-schema.json") != nil)
        #expect(
            schemaProblems(#"[{"eventType": "DONE"}]"#, schema: "OpenLineage-2-0-2.json", eachElement: true) != nil
        )
    }

    @Test func planGraphLinksOutputsToInputs() throws {
        let graph = try PlanGraphBuilder.build(planId: "A", upstream: true, downstream: true, depth: .default) {
            planDetails[$0]
        }
        #expect(graph.nodes.filter { $0.type == .plan }.map(\.planId) == ["A", "B"])
        #expect(graph.edges.contains(GraphEdge(from: "pA@/out", to: "pB@/in", type: .feeds)))
        #expect(graph.edges.contains(GraphEdge(from: "pA", to: "pA@log", type: .log, label: "(log)")))
        let dot = graph.dot()
        #expect(dot.contains("\"pA@/out\" -> \"pB@/in\";"))
        #expect(dot.contains("<TD BGCOLOR=\"#EDD9B4\">id: A</TD>"))
        #expect(dot.contains("<B>owner</B>=alice"))
        let upOnly = try PlanGraphBuilder.build(planId: "A", upstream: true, downstream: false, depth: .default) {
            planDetails[$0]
        }
        #expect(upOnly.nodes.filter { $0.type == .plan }.count == 1)
        #expect(throws: GraphError.self) {
            try PlanGraphBuilder.build(planId: "Z", upstream: true, downstream: true, depth: .all) { planDetails[$0] }
        }
    }
}

private let planDetails: [String: PlanDetailJSON] = [
    "A": PlanDetailJSON(
        planId: "A",
        image: "repo/a:v1",
        annotations: ["owner=alice"],
        inputs: [PlanInputJSON(path: "/in", tags: tags("x:1"))],
        outputs: [
            PlanOutputJSON(
                path: "/out",
                tags: tags("y:1"),
                downstreams: [
                    PlanDownstreamJSON(
                        plan: PlanSummaryJSON(planId: "B", image: "repo/b:v1"),
                        mountpoint: MountpointJSON(path: "/in", tags: tags("y:1"))
                    )
                ]
            )
        ],
        log: PlanLogJSON(tags: tags("type:log")),
        active: true,
        resources: ["cpu": "1"]
    ),
    "B": PlanDetailJSON(
        planId: "B",
        image: "repo/b:v1",
        inputs: [
            PlanInputJSON(
                path: "/in",
                tags: tags("y:1"),
                upstreams: [
                    PlanUpstreamJSON(
                        plan: PlanSummaryJSON(planId: "A", image: "repo/a:v1"),
                        mountpoint: MountpointJSON(path: "/out", tags: tags("y:1"))
                    )
                ]
            )
        ],
        outputs: [],
        active: false,
        resources: ["cpu": "1"]
    ),
]
