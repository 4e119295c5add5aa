import KnitAPI
import KnitCore
import KnitSystem
import KnitTestSupport
import Testing

/// Every validation rule of a plan spec, one per case, sent to `POST /api/plans/`: each must answer 400
/// "invalid plan spec" with advice naming the field and the problem, and must register nothing.
@Suite struct PlanRejectionAPITests {
    struct Case: CustomTestStringConvertible, Sendable {
        let rule: String
        /// Plan fields replacing the valid ones below (raw JSON members).
        let fields: [String: String]
        /// Text the advice must contain.
        let advice: [String]
        var testDescription: String { rule }
    }

    static let valid: [String: String] = [
        "image": #""repo/train:v1""#,
        "inputs": #"[{"path":"/in/data","tags":["type:dataset"]}]"#,
        "outputs": #"[{"path":"/out/model","tags":["type:model"]}]"#,
    ]

    static let cases: [Case] = [
        Case(rule: "image missing", fields: ["image": #""""#], advice: ["image", "required"]),
        Case(rule: "image without tag", fields: ["image": #""repo/train""#], advice: ["image", "has no tag"]),
        Case(rule: "image with empty tag", fields: ["image": #""repo/train:""#], advice: ["image", "empty tag"]),
        Case(rule: "image with white space", fields: ["image": #""repo/tr ain:v1""#], advice: ["white space"]),
        Case(rule: "no inputs", fields: ["inputs": "[]"], advice: ["inputs", "at least one input"]),
        Case(
            rule: "input without tags",
            fields: ["inputs": #"[{"path":"/in/data","tags":[]}]"#],
            advice: ["inputs[0].tags", "at least one tag"]
        ),
        Case(
            rule: "relative path",
            fields: ["inputs": #"[{"path":"in/data","tags":["a:b"]}]"#],
            advice: ["inputs[0].path", "not absolute"]
        ),
        Case(
            rule: "root as a mount point",
            fields: ["outputs": #"[{"path":"/","tags":["a:b"]}]"#],
            advice: ["outputs[0].path", "root directory"]
        ),
        Case(
            rule: "the same path twice",
            fields: ["outputs": #"[{"path":"/in/data","tags":["a:b"]}]"#],
            advice: ["also used by"]
        ),
        Case(
            rule: "one mount point inside another",
            fields: ["outputs": #"[{"path":"/in/data/sub","tags":["a:b"]}]"#],
            advice: ["is inside"]
        ),
        Case(
            rule: "tag without a colon",
            fields: ["inputs": #"[{"path":"/in/data","tags":["dataset"]}]"#],
            advice: ["inputs[0].tags"]
        ),
        Case(
            rule: "system tag on an output",
            fields: ["outputs": #"[{"path":"/out/model","tags":["knit#id:x"]}]"#],
            advice: ["outputs[0].tags", "knit#id"]
        ),
        Case(
            rule: "transient system tag on an input",
            fields: ["inputs": #"[{"path":"/in/data","tags":["a:b","knit#transient:processing"]}]"#],
            advice: ["inputs[0].tags", "knit#transient"]
        ),
        Case(
            rule: "system tag on the log",
            fields: ["log": #"{"tags":["knit#timestamp:2024-01-01T00:00:00Z"]}"#],
            advice: ["log.tags"]
        ),
        Case(rule: "malformed resource", fields: ["resources": #"{"cpu":"lots"}"#], advice: ["resources"]),
        Case(rule: "negative resource", fields: ["resources": #"{"memory":"-1Gi"}"#], advice: ["resources"]),
        Case(rule: "annotation without =", fields: ["annotations": #"["owner"]"#], advice: ["annotations[0]"]),
        Case(
            rule: "on_node label with a bad key",
            fields: ["on_node": #"{"may":["bad key=v"]}"#],
            advice: ["on_node.may[0]"]
        ),
        // F8, F17: plans no container could run, or that would run without the limit they ask for.
        Case(
            rule: "F8 memory that overflows 64 bits",
            fields: ["resources": #"{"memory":"100Ei"}"#],
            advice: ["resources.memory", "too large"]
        ),
        Case(rule: "F17 memory 0", fields: ["resources": #"{"memory":"0"}"#], advice: ["resources.memory", "6Mi"]),
        Case(
            rule: "F17 memory below the runtime's 6 MiB",
            fields: ["resources": #"{"memory":"5Mi"}"#],
            advice: ["resources.memory", "at least 6Mi"]
        ),
        Case(rule: "F17 cpu 0", fields: ["resources": #"{"cpu":"0"}"#], advice: ["resources.cpu", "above 0"]),
        Case(
            rule: "F8 cpu that overflows",
            fields: ["resources": #"{"cpu":"9E"}"#],
            advice: ["resources.cpu", "too large"]
        ),
        Case(
            rule: "F17 input path with a colon",
            fields: ["inputs": #"[{"path":"/in:rw","tags":["a:b"]}]"#],
            advice: ["inputs[0].path", "':' or ','"]
        ),
        Case(
            rule: "F17 output path with a comma",
            fields: ["outputs": #"[{"path":"/out,z","tags":["a:b"]}]"#],
            advice: ["outputs[0].path", "':' or ','"]
        ),
        Case(
            rule: "F17 image starting with a dash",
            fields: ["image": #""--privileged:1""#],
            advice: ["image", "starts with '-'"]
        ),
        Case(
            rule: "service account name too long",
            fields: ["service_account": "\"" + String(repeating: "s", count: 300) + "\""],
            advice: ["service_account"]
        ),
    ]

    static func body(_ fields: [String: String]) -> String {
        let merged = valid.merging(fields) { _, replacement in replacement }
        return "{" + merged.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
    }

    @Test func theValidBaseIsAccepted() throws {
        let harness = try APIHarness()
        let response = harness.request(
            "POST",
            "/api/plans/",
            as: "alice",
            headers: ["content-type": "application/json"],
            body: Array(Self.body([:]).utf8)
        )
        let bytes = try response.collectBody()
        #expect(response.status == 200, "\(String(decoding: bytes, as: UTF8.self))")
    }

    @Test(arguments: cases)
    func eachRuleIsAClear400(_ rule: Case) throws {
        let harness = try APIHarness()
        let plansBefore = try json(harness.request("GET", "/api/plans/", as: "alice")).arrayValue?.count
        let response = harness.request(
            "POST",
            "/api/plans/",
            as: "alice",
            headers: ["content-type": "application/json"],
            body: Array(Self.body(rule.fields).utf8)
        )
        let bytes = try response.collectBody()
        #expect(response.status == 400, "\(rule.rule): \(String(decoding: bytes, as: UTF8.self))")
        let body = try #require(JSONValue.parse(bytes), "\(rule.rule): not JSON")
        #expect(body["reason"]?.stringValue == "invalid plan spec")
        let advice = body["advice"]?.stringValue ?? ""
        for expected in rule.advice {
            #expect(advice.contains(expected), "\(rule.rule): advice \(advice.debugDescription) lacks \(expected)")
        }
        let plansAfter = try json(harness.request("GET", "/api/plans/", as: "alice")).arrayValue?.count
        #expect(plansBefore != nil && plansAfter == plansBefore, "\(rule.rule): nothing may be registered")
    }

    /// `PUT /api/plans/{id}/resources` applies the same limits: refused with the field named, nothing changed.
    @Test(arguments: [
        (#"{"set":{"memory":"100Ei"}}"#, "resources.memory"), (#"{"set":{"memory":"0"}}"#, "resources.memory"),
        (#"{"set":{"cpu":"0"}}"#, "resources.cpu"),
    ])
    func F8F17ResourceChangesOutOfRangeAreRefused(body: String, field: String) throws {
        let harness = try APIHarness()
        let created = harness.request(
            "POST",
            "/api/plans/",
            as: "alice",
            headers: ["content-type": "application/json"],
            body: Array(Self.body(["resources": #"{"cpu":"500m","memory":"64Mi"}"#]).utf8)
        )
        let planId = try #require(try JSONValue.parse(created.collectBody())?["planId"]?.stringValue)
        let response = harness.request(
            "PUT",
            "/api/plans/\(planId)/resources",
            as: "alice",
            headers: ["content-type": "application/json"],
            body: Array(body.utf8)
        )
        let bytes = try response.collectBody()
        #expect(response.status == 400, "\(String(decoding: bytes, as: UTF8.self))")
        #expect(JSONValue.parse(bytes)?["advice"]?.stringValue?.contains(field) == true)
        let shown = try json(harness.request("GET", "/api/plans/\(planId)/", as: "alice"))
        #expect(shown["resources"]?["cpu"]?.stringValue == "500m")
        #expect(shown["resources"]?["memory"]?.stringValue == "64Mi")
    }
}
