import KnitArchive
import KnitCore
import KnitStore
import KnitTestSupport
import Testing

@testable import KnitAPI

#if canImport(Dispatch)
    import Dispatch
#endif

// `GET /metrics`: Prometheus text that reads back well formed, counters that move by exactly the requests
// made (labelled by the route table's pattern, never the raw path), the store's figures, and who may read it.

private func scrape(_ harness: APIHarness, as user: String = "root") throws -> PrometheusText {
    let response = harness.request("GET", "/metrics", as: user)
    try #require(response.status == 200)
    #expect(response.headers.contains { $0 == ("Content-Type", "text/plain; version=0.0.4; charset=utf-8") })
    return try PrometheusText(parsing: String(decoding: try response.collectBody(), as: UTF8.self))
}

private func requests(_ text: PrometheusText, _ method: String, _ route: String, _ code: Int) -> Double {
    text.value("knit_http_requests_total", ["method": method, "route": route, "code": "\(code)"])
}

private func latencyCount(_ text: PrometheusText, _ method: String, _ route: String) -> Double {
    text.value("knit_http_request_duration_seconds_count", ["method": method, "route": route])
}

@Suite struct MetricsAPITests {
    @Test func theExpositionReadsBackWellFormedWithCumulativeHistograms() throws {
        let harness = try APIHarness()
        let archive = try makeArchive(format: .tarGzip, files: ["a.txt": "alpha"])
        #expect(harness.request("POST", "/api/data/", body: archive).status == 200)
        #expect(harness.request("GET", "/api/data/").status == 200)
        #expect(harness.request("GET", "/api/nope").status == 404)
        #expect(harness.request("GET", "/api/data/", as: nil).status == 401)
        let text = try scrape(harness)

        #expect(text.histogramProblems() == nil, "\(text.histogramProblems() ?? "")")
        for family in text.types.keys { #expect(text.help[family] != nil, "\(family) has no HELP") }
        #expect(text.types["knit_http_requests_total"] == "counter")
        #expect(text.types["knit_http_request_duration_seconds"] == "histogram")
        #expect(text.types["knit_lmdb_map_used_bytes"] == "gauge")
        // 4 label sets (POST and GET of /api/data, and the 404 and the 401 as GET "other" and GET /api/data).
        let buckets = text.samples("knit_http_request_duration_seconds_bucket")
        #expect(buckets.count == 3 * (APIMetrics.latencyBuckets.count + 1), "\(buckets.map(\.labels))")
        #expect(text.value("knit_build_info", ["version": KnitAPI.version]) == 1)
    }

    @Test func labelValuesAreEscapedAndReadBackUnchanged() throws {
        let odd = "/api/\"quoted\"\\back\nline"
        let key = APIMetrics.RouteKey(method: "GET", route: odd)
        var latency = APIMetrics.Latency()
        latency.add(bucket: 0, nanoseconds: 1_000)
        latency.add(bucket: APIMetrics.latencyBuckets.count, nanoseconds: 60_000_000_000)
        let snapshot = MetricsSnapshot(
            requests: [key: [200: 2]],
            latency: [key: latency],
            bodyBytesIn: 5,
            bodyBytesOut: 7
        )
        let statistics = StoreStatistics(
            data: 1,
            plans: 0,
            users: 2,
            runsByStatus: ["done": 1],
            mapSizeBytes: 1 << 30,
            mapUsedBytes: 4096 * 9,
            pageSize: 4096,
            readersInUse: 1,
            maxReaders: 512,
            hookOutbox: 3
        )
        let text = try PrometheusText(
            parsing: MetricsExposition.render(snapshot, store: statistics, transfersInFlight: 0)
        )
        #expect(requests(text, "GET", odd, 200) == 2)
        #expect(text.histogramProblems() == nil)
        let labels = ["method": "GET", "route": odd]
        #expect(text.value("knit_http_request_duration_seconds_bucket", labels.merging(["le": "0.001"]) { $1 }) == 1)
        #expect(text.value("knit_http_request_duration_seconds_bucket", labels.merging(["le": "30.0"]) { $1 }) == 1)
        #expect(text.value("knit_http_request_duration_seconds_bucket", labels.merging(["le": "+Inf"]) { $1 }) == 2)
        #expect(text.value("knit_http_request_duration_seconds_sum", labels) == 60.000001)
        #expect(text.value("knit_http_request_body_bytes_total") == 5)
        #expect(text.value("knit_http_response_body_bytes_total") == 7)
        #expect(text.value("knit_hook_outbox_events") == 3)
    }

    @Test func countersMoveByExactlyTheRequestsMade() throws {
        let harness = try APIHarness()
        let before = try scrape(harness)

        let archive = try makeArchive(format: .tarGzip, files: ["a.txt": "alpha", "b.txt": "beta"])
        let upload = harness.request("POST", "/api/data/", body: archive)
        #expect(upload.status == 200)
        let uploadBody = try upload.collectBody()
        let knitId = try #require(try json(upload)["knitId"]?.stringValue)
        for _ in 0..<3 { #expect(harness.request("GET", "/api/data/").status == 200) }
        let download = try harness.request("GET", "/api/data/\(knitId)/").collectBody()
        #expect(harness.request("GET", "/api/data/no-such-data/").status == 404)
        #expect(harness.request("GET", "/api/whoami", as: "rita").status == 200)
        #expect(harness.request("DELETE", "/api/data/").status == 405)
        #expect(harness.request("BREW", "/api/data/\(knitId)").status == 405)
        #expect(harness.request("GET", "/api/runs/x/y/z").status == 404)

        let after = try scrape(harness)
        func moved(_ method: String, _ route: String, _ code: Int) -> Double {
            requests(after, method, route, code) - requests(before, method, route, code)
        }
        #expect(moved("POST", "/api/data", 200) == 1)
        #expect(moved("GET", "/api/data", 200) == 3)
        #expect(moved("GET", "/api/data/{knitId}", 200) == 1)
        #expect(moved("GET", "/api/data/{knitId}", 404) == 1)
        #expect(moved("GET", "/api/whoami", 200) == 1)
        #expect(moved("GET", "/metrics", 200) == 1, "the first scrape, not the second")
        // A 405 and an unknown path have no route; an unknown method is not a label of its own.
        #expect(moved("DELETE", "other", 405) == 1)
        #expect(moved("other", "other", 405) == 1)
        #expect(moved("GET", "other", 404) == 1)
        let total =
            after.samples("knit_http_requests_total").map(\.value).reduce(0, +)
            - before.samples("knit_http_requests_total").map(\.value).reduce(0, +)
        #expect(total == 11)
        // No raw path, no id: every route label is a pattern of the table or `other`.
        let routes = Set(after.samples("knit_http_requests_total").compactMap { $0.labels["route"] })
        #expect(!routes.contains { $0.contains(knitId) || $0.contains("no-such-data") }, "\(routes)")
        #expect(latencyCount(after, "GET", "/api/data") - latencyCount(before, "GET", "/api/data") == 3)

        // Bodies: the upload's archive in; the answers' bytes out (the scrape's own answer included).
        let bytesIn =
            after.value("knit_http_request_body_bytes_total")
            - before.value("knit_http_request_body_bytes_total")
        #expect(bytesIn == Double(archive.count))
        let bytesOut =
            after.value("knit_http_response_body_bytes_total")
            - before.value("knit_http_response_body_bytes_total")
        #expect(bytesOut > Double(uploadBody.count + download.count))
    }

    /// Requests on many threads at once (knitd's workers) land in different shards; none is lost.
    @Test func concurrentRequestsAreAllCountedAndHeadHasItsOwnLabel() throws {
        let harness = try APIHarness()
        let before = try scrape(harness)
        let api = harness.api
        let authorization = "Bearer \(harness.tokens["rita"]!)"
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            let method = worker.isMultiple(of: 2) ? "GET" : "HEAD"
            for _ in 0..<250 {
                let request = APIRequest(method: method, uri: "/api/whoami", headers: ["authorization": authorization])!
                _ = api.handle(request) { _ in 0 }
            }
        }
        let after = try scrape(harness)
        #expect(requests(after, "GET", "/api/whoami", 200) - requests(before, "GET", "/api/whoami", 200) == 1000)
        #expect(requests(after, "HEAD", "/api/whoami", 200) - requests(before, "HEAD", "/api/whoami", 200) == 1000)
        #expect(latencyCount(after, "HEAD", "/api/whoami") - latencyCount(before, "HEAD", "/api/whoami") == 1000)
    }

    @Test func storeFiguresCountDataRunsByStatusTheQueueAndMapUse() throws {
        let harness = try APIHarness()
        let empty = try scrape(harness)
        #expect(empty.value("knit_store_data") == 0)
        #expect(empty.value("knit_store_users") == 4)
        #expect(empty.value("knit_scheduler_queue_runs") == 0)
        let mapSize = empty.value("knit_lmdb_map_size_bytes")
        let used = empty.value("knit_lmdb_map_used_bytes")
        #expect(mapSize == Double(64 << 30))
        #expect(used > 0 && used < mapSize)
        #expect(
            Set(empty.samples("knit_runs").compactMap { $0.labels["status"] })
                == Set(RunStatus.allCases.map(\.rawValue))
        )

        let spec = """
            {"image":"repo/train:v1","inputs":[{"path":"/in/data","tags":["type:dataset"]}],
             "outputs":[{"path":"/out/model","tags":["type:model"]}]}
            """
        #expect(
            harness.request(
                "POST",
                "/api/plans/",
                headers: ["content-type": "application/json"],
                body: Array(spec.utf8)
            )
            .status == 200
        )
        for n in 0..<2 {
            let archive = try makeArchive(format: .tarGzip, files: ["n": "\(n)"])
            let upload = harness.request("POST", "/api/data/?tag=type:dataset", body: archive)
            #expect(upload.status == 200)
        }
        let after = try scrape(harness)
        // Two uploads (done Runs of knit#uploaded) and the two Runs they made waiting, each with one output.
        #expect(after.value("knit_runs", ["status": "done"]) == 2)
        #expect(after.value("knit_runs", ["status": "waiting"]) == 2)
        #expect(after.value("knit_scheduler_queue_runs") == 2)
        #expect(after.value("knit_store_data") == 4)
        #expect(after.value("knit_store_plans") == 1)
        #expect(after.value("knit_lmdb_map_used_bytes") > used)
    }

    @Test func onlyAnAdminMayReadIt() throws {
        let harness = try APIHarness()
        let anonymous = harness.request("GET", "/metrics", as: nil)
        #expect(anonymous.status == 401)
        #expect(anonymous.headers.contains { $0.0 == "WWW-Authenticate" && $0.1.hasPrefix("Bearer") })
        for user in ["alice", "rita"] {
            let refused = harness.request("GET", "/metrics", as: user)
            #expect(refused.status == 403, "\(user)")
            #expect(!String(decoding: try refused.collectBody(), as: UTF8.self).contains("knit_"), "\(user)")
        }
        #expect(harness.request("GET", "/metrics", as: "root").status == 200)
        #expect(harness.request("HEAD", "/metrics", as: "root").status == 200)
        #expect(harness.request("GET", "/metrics/", as: "root").status == 200)
        // The text names no user, not even to an admin: labels are routes, methods, codes and statuses.
        let body = String(decoding: try harness.request("GET", "/metrics", as: "root").collectBody(), as: UTF8.self)
        for name in harness.tokens.keys { #expect(!body.contains(name), "\(name)") }
    }
}
