import KnitAPI
import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

private let jsonHeaders = ["content-type": "application/json"]

private let trainSpec = """
    {"image":"repo/train:v1","inputs":[{"path":"/in/data","tags":["type:dataset","project:p"]}],
     "outputs":[{"path":"/out/model","tags":["type:model"]}],"log":{"tags":["type:log"]},
     "resources":{"cpu":0.5},"annotations":["owner=alice"],"active":null}
    """

private func post(
    _ harness: APIHarness,
    _ body: String,
    as user: String = "alice",
    headers: [String: String] = jsonHeaders
)
    -> APIResponse
{
    harness.request("POST", "/api/plans/", as: user, headers: headers, body: Array(body.utf8))
}

private func put(_ harness: APIHarness, _ uri: String, _ body: String, as user: String = "alice") -> APIResponse {
    harness.request("PUT", uri, as: user, headers: jsonHeaders, body: Array(body.utf8))
}

private func registered(_ harness: APIHarness, _ body: String = trainSpec) throws -> String {
    let response = post(harness, body)
    #expect(response.status == 200)
    return try #require(try json(response)["planId"]?.stringValue)
}

@Suite struct PlanAPITests {
    @Test func postRegistersAndGetShows() throws {
        let harness = try APIHarness()
        let response = post(harness, trainSpec)
        #expect(response.status == 200)
        let body = try json(response)
        let planId = try #require(body["planId"]?.stringValue)
        #expect(body["image"]?.stringValue == "repo/train:v1")
        #expect(body["active"] == .bool(true))
        #expect(body["resources"]?["cpu"]?.stringValue == "0.5")
        #expect(body["resources"]?["memory"]?.stringValue == "1Gi")
        #expect(body["annotations"]?.arrayValue?.compactMap(\.stringValue) == ["owner=alice"])
        #expect(body["log"]?["tags"]?.arrayValue?.compactMap(\.stringValue) == ["type:log"])
        #expect(body["inputs"]?.arrayValue?.first?["upstreams"]?.arrayValue?.isEmpty == true)

        for path in ["/api/plans/\(planId)", "/api/plans/\(planId)/"] {
            let shown = harness.request("GET", path, as: "rita")
            #expect(shown.status == 200)
            #expect(try json(shown)["planId"]?.stringValue == planId)
        }
        #expect(harness.request("GET", "/api/plans/nope/").status == 404)
    }

    @Test func postNeedsJSONContentType() throws {
        let harness = try APIHarness()
        for headers in [[:], ["content-type": "text/plain"], ["content-type": "application/yaml"]] {
            let response = post(harness, trainSpec, headers: headers)
            #expect(response.status == 400)
            #expect(try json(response)["reason"]?.stringValue?.contains("Content-Type") == true)
        }
        #expect(post(harness, trainSpec, headers: ["content-type": "application/json; charset=utf-8"]).status == 200)
    }

    @Test func badJSONAndInvalidSpecAre400WithAdvice() throws {
        let harness = try APIHarness()
        let broken = post(harness, "{not json")
        #expect(broken.status == 400)
        #expect(try json(broken)["reason"]?.stringValue?.hasPrefix("format error") == true)

        let invalid = post(
            harness,
            #"{"image":"repo/train","inputs":[{"path":"in","tags":["knit#transient:processing"]}],"outputs":[{"path":"/out","tags":["knit#id:x"]}]}"#
        )
        #expect(invalid.status == 400)
        let body = try json(invalid)
        #expect(body["reason"]?.stringValue == "invalid plan spec")
        let advice = try #require(body["advice"]?.stringValue)
        #expect(advice.contains("image:"))
        #expect(advice.contains("inputs[0].path"))
        #expect(advice.contains("inputs[0].tags"))
        #expect(advice.contains("outputs[0].tags"))
        #expect(body["message"]?.stringValue?.contains("inputs[0].path") == true)
    }

    @Test func equivalentPlanIs409WithSee() throws {
        let harness = try APIHarness()
        let planId = try registered(harness)
        let again = post(harness, trainSpec.split(separator: "owner=alice").joined(separator: "owner=bob"))
        #expect(again.status == 409)
        let body = try json(again)
        #expect(body["see"]?.stringValue == planId)
        #expect(body["reason"]?.stringValue == "there are equivalent plan")
    }

    @Test func cycleIs409() throws {
        let harness = try APIHarness()
        _ = try registered(harness)
        let cycle = post(
            harness,
            #"{"image":"repo/back:v1","inputs":[{"path":"/in","tags":["type:model"]}],"outputs":[{"path":"/out","tags":["type:dataset","project:p"]}]}"#
        )
        #expect(cycle.status == 409)
        let body = try json(cycle)
        #expect(body["reason"]?.stringValue == "plan spec conflicts with others")
        #expect(body["advice"]?.stringValue == "plan's tag dependency makes cycle")
        #expect(body["see"] == nil)
    }

    @Test func readersMayReadButNotWrite() throws {
        let harness = try APIHarness()
        let planId = try registered(harness)
        #expect(post(harness, trainSpec, as: "rita").status == 403)
        #expect(harness.request("PUT", "/api/plans/\(planId)/active", as: "rita").status == 403)
        #expect(harness.request("DELETE", "/api/plans/\(planId)/active", as: "rita").status == 403)
        #expect(put(harness, "/api/plans/\(planId)/resources", #"{"set":{"cpu":"2"}}"#, as: "rita").status == 403)
        #expect(put(harness, "/api/plans/\(planId)/annotations", #"{"add":["a=b"]}"#, as: "rita").status == 403)
        #expect(
            put(harness, "/api/plans/\(planId)/serviceaccount", #"{"service_account":"x"}"#, as: "rita").status == 403
        )
        #expect(harness.request("GET", "/api/plans/", as: "rita").status == 200)
        #expect(harness.request("GET", "/api/plans/", as: nil).status == 401)
    }

    @Test func findFiltersAndRejectsBadQueries() throws {
        let harness = try APIHarness()
        let train = try registered(harness)
        let other = try registered(
            harness,
            #"{"image":"localhost:5000/eval:v2","inputs":[{"path":"/in","tags":["type:model"]}],"outputs":[{"path":"/out","tags":["type:metrics"]}],"active":false}"#
        )
        func ids(_ uri: String) throws -> [String] {
            let response = harness.request("GET", uri)
            #expect(response.status == 200, "\(uri)")
            return try json(response).arrayValue?.compactMap { $0["planId"]?.stringValue } ?? []
        }
        let all = try ids("/api/plans")
        #expect(all.count == 3)
        #expect(all == all.sorted())
        #expect(try ids("/api/plans/?active=false") == [other])
        #expect(try ids("/api/plans/?active=true").contains(train))
        #expect(try ids("/api/plans/?image=localhost%3A5000%2Feval") == [other])
        #expect(try ids("/api/plans/?image=localhost:5000/eval:v2") == [other])
        #expect(try ids("/api/plans/?image=localhost:5000/eval:v1").isEmpty)
        #expect(try ids("/api/plans/?in_tag=type%3Amodel") == [other])
        #expect(try ids("/api/plans/?in_tag=type:dataset&in_tag=project:p") == [train])
        #expect(try ids("/api/plans/?out_tag=type:log") == [train])
        #expect(try ids("/api/plans/?out_tag=type:log&in_tag=type:model").isEmpty)

        // The detail of each answer links the two plans.
        let found = try json(harness.request("GET", "/api/plans/?in_tag=type:model"))
        let upstreams = found.arrayValue?.first?["inputs"]?.arrayValue?.first?["upstreams"]?.arrayValue ?? []
        #expect(upstreams.compactMap { $0["plan"]?["planId"]?.stringValue } == [train])

        for query in ["active=maybe", "in_tag=nocolon", "out_tag=%3Av"] {
            let response = harness.request("GET", "/api/plans/?" + query)
            #expect(response.status == 400, "\(query)")
            #expect(try json(response)["reason"]?.stringValue == "query specification is incorrect")
        }
    }

    @Test func mutationsAnswerPlanDetail() throws {
        let harness = try APIHarness()
        let planId = try registered(harness)
        let base = "/api/plans/\(planId)"

        let off = harness.request("DELETE", base + "/active")
        #expect(off.status == 200)
        #expect(try json(off)["active"] == .bool(false))
        let on = harness.request("PUT", base + "/active/")
        #expect(on.status == 200)
        #expect(try json(on)["active"] == .bool(true))

        let resources = put(harness, base + "/resources", #"{"set":{"cpu":"2","memory":"4Gi"},"unset":["memory"]}"#)
        #expect(resources.status == 200)
        let resourceMap = try json(resources)["resources"]
        #expect(resourceMap?["cpu"]?.stringValue == "2")
        #expect(resourceMap?["memory"] == nil)
        let badQuantity = put(harness, base + "/resources", #"{"set":{"cpu":"many"}}"#)
        #expect(badQuantity.status == 400)
        #expect(try json(badQuantity)["advice"]?.stringValue?.contains("resources.cpu") == true)

        let annotations = put(
            harness,
            base + "/annotations",
            #"{"add":["owner=bob","stage=1"],"remove":["owner=alice"],"remove_key":["nothing"]}"#
        )
        #expect(annotations.status == 200)
        #expect(
            try json(annotations)["annotations"]?.arrayValue?.compactMap(\.stringValue) == ["owner=bob", "stage=1"]
        )
        #expect(put(harness, base + "/annotations", #"{"add":["novalue"]}"#).status == 400)

        let account = put(harness, base + "/serviceaccount", #"{"service_account":"trainer"}"#)
        #expect(account.status == 200)
        #expect(try json(account)["service_account"]?.stringValue == "trainer")
        #expect(put(harness, base + "/serviceaccount", #"{"name":"x"}"#).status == 400)
        let removed = harness.request("DELETE", base + "/serviceaccount")
        #expect(removed.status == 200)
        #expect(try json(removed)["service_account"] == nil)

        let shown = try json(harness.request("GET", base))
        #expect(shown["resources"]?["cpu"]?.stringValue == "2")
        #expect(shown["annotations"]?.arrayValue?.count == 2)

        for (method, path) in [
            ("PUT", "/api/plans/nope/active"), ("DELETE", "/api/plans/nope/active"),
            ("DELETE", "/api/plans/nope/serviceaccount"),
        ] {
            #expect(harness.request(method, path).status == 404, "\(method) \(path)")
        }
        #expect(put(harness, "/api/plans/nope/resources", #"{"set":{"cpu":"1"}}"#).status == 404)
        #expect(harness.request("POST", base + "/active").status == 405)
        #expect(harness.request("DELETE", base).status == 405)
        #expect(harness.request("PUT", base + "/unknown").status == 404)
    }
}
