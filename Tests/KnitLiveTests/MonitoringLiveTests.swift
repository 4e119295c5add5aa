import Foundation
import KnitCore
import KnitTestSupport
import KnitTesting
import Testing

/// `knitadm status` as JSON.
private struct Status: Decodable {
    struct Component: Decodable {
        var up: Bool
        var socket: String
        var pid: Int32?
        var version: String?
        var error: String?
    }
    struct Store: Decodable {
        var data: Int
        var plans: Int
        var users: Int
        var usersByState: [String: Int]
        var runsByStatus: [String: Int]
        var runsWaiting: Int
        var mapSizeBytes: Int64
        var mapUsedBytes: Int64
    }
    var ok: Bool
    var knitd: Component
    var scheduler: Component
    var store: Store?
}

private func status(_ knit: KnitInstance) throws -> (exit: Int32, status: Status) {
    let result = knit.knitadm(["status"])
    let decoded = try JSONDecoder().decode(Status.self, from: result.stdout)
    return (result.status, decoded)
}

/// `GET /metrics` through nginx with `user`'s token.
private func scrape(_ knit: KnitInstance, as user: String = "admin") throws -> (PrometheusText, Int) {
    let response = knit.request("GET", "/metrics", user: user)
    try #require(response.status == 200, "\(response.status): \(response.text)")
    return (try PrometheusText(parsing: response.text), response.body.count)
}

extension Live {
    /// The scrape target through the real nginx and knitd: what it counts between two scrapes, and who may read it.
    @Suite(.knitInstance())
    struct MetricsLive {
        @Test func twoScrapesThroughNginxDifferByExactlyTheRequestsBetweenThem() throws {
            let knit = try LiveKnit.instance()
            let archive = knit.root + "/metrics-upload.tar.gz"
            try makeValidArchive(knit, archive, bytes: 300_000)
            let archiveSize = try FileManager.default.attributesOfItem(atPath: archive)[.size] as! Int

            let (before, firstScrapeBytes) = try scrape(knit)
            var bodies = firstScrapeBytes
            let upload = knit.request(
                "POST",
                "/api/data/",
                headers: ["Content-Type: application/tar+gzip"],
                bodyFile: archive
            )
            try #require(upload.status == 200, "\(upload.text)")
            bodies += upload.body.count
            let knitId = try decodeDetail(upload.body).knitId
            for _ in 0..<3 {
                let found = knit.request("GET", "/api/data/?tag=knit%23id:\(knitId)")
                #expect(found.status == 200)
                bodies += found.body.count
            }
            let download = knit.request("GET", "/api/data/\(knitId)/")
            #expect(download.status == 200)
            bodies += download.body.count
            let missing = knit.request("GET", "/api/nope")
            #expect(missing.status == 404)
            bodies += missing.body.count
            let reader = knit.request("GET", "/metrics", user: "rita")
            #expect(reader.status == 403)
            bodies += reader.body.count
            let user = knit.request("GET", "/metrics", user: "alice")
            #expect(user.status == 403)
            bodies += user.body.count
            let anonymous = knit.request("GET", "/metrics", user: nil)
            #expect(anonymous.status == 401)
            bodies += anonymous.body.count
            let (after, _) = try scrape(knit)

            func moved(_ method: String, _ route: String, _ code: Int) -> Double {
                let labels = ["method": method, "route": route, "code": "\(code)"]
                return after.value("knit_http_requests_total", labels)
                    - before.value("knit_http_requests_total", labels)
            }
            #expect(moved("POST", "/api/data", 200) == 1)
            #expect(moved("GET", "/api/data", 200) == 3)
            #expect(moved("GET", "/api/data/{knitId}", 200) == 1)
            #expect(moved("GET", "other", 404) == 1)
            #expect(moved("GET", "/metrics", 200) == 1)
            #expect(moved("GET", "/metrics", 403) == 2)
            #expect(moved("GET", "/metrics", 401) == 1)
            let total =
                after.samples("knit_http_requests_total").map(\.value).reduce(0, +)
                - before.samples("knit_http_requests_total").map(\.value).reduce(0, +)
            #expect(total == 10)
            let inBytes =
                after.value("knit_http_request_body_bytes_total")
                - before.value("knit_http_request_body_bytes_total")
            #expect(inBytes == Double(archiveSize))
            // Every body curl received came from knitd unchanged (nginx adds none of its own here).
            let outBytes =
                after.value("knit_http_response_body_bytes_total")
                - before.value("knit_http_response_body_bytes_total")
            #expect(outBytes == Double(bodies))
            #expect(after.histogramProblems() == nil, "\(after.histogramProblems() ?? "")")
            let latency = ["method": "GET", "route": "/api/data"]
            #expect(
                after.value("knit_http_request_duration_seconds_count", latency)
                    - before.value("knit_http_request_duration_seconds_count", latency) == 3
            )
            #expect(after.value("knit_store_data") - before.value("knit_store_data") == 1)
            #expect(after.value("knit_runs", ["status": "done"]) - before.value("knit_runs", ["status": "done"]) == 1)
            #expect(after.value("knit_lmdb_map_used_bytes") >= before.value("knit_lmdb_map_used_bytes"))
            #expect(after.value("knit_store_users") == 3)
        }
    }

    /// `knitadm status` against a real knitd and knit-scheduler: up, one down, the other down.
    /// One id per request from nginx to the client and into knitd's log (the journal under systemd).
    @Suite(.knitInstance())
    struct RequestIDLive {
        @Test func theRequestIdTheClientGetsIsTheOneKnitdLogsAndNginxWrites() throws {
            let knit = try LiveKnit.instance()
            let archive = knit.root + "/request-id-upload.tar.gz"
            try makeValidArchive(knit, archive, bytes: 10_000)
            let headersFile = knit.root + "/request-id-headers.txt"
            let upload = knit.curl([
                "-f", "-o", "/dev/null", "-D", headersFile, "-X", "POST",
                "-H", "Authorization: Bearer \(knit.token(for: "alice"))",
                "-H", "Content-Type: application/tar+gzip",
                // A client's own X-Request-Id must not become the id: nginx's is the one every log shares.
                "-H", "X-Request-Id: client-chosen",
                "--data-binary", "@" + archive, knit.baseURL + "/api/data/",
            ])
            try #require(upload.status == 0, "\(upload.stderr)")
            let headers = try String(contentsOfFile: headersFile, encoding: .utf8)
            let ids = headers.split(separator: "\r\n").compactMap { line -> String? in
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2, parts[0].lowercased() == "x-request-id" else { return nil }
                return parts[1].trimmingCharacters(in: .whitespaces)
            }
            try #require(ids.count == 1, "X-Request-Id headers: \(ids) in \(headers)")
            let id = ids[0]
            #expect(id.count == 32 && id.allSatisfy(\.isHexDigit), "not nginx's $request_id: \(id)")
            // Both logs are written once the response is on its way, so the client may read them a moment early.
            var knitdLog = ""
            var audited: [Substring] = []
            _ = eventually(timeout: 5) {
                knitdLog = (try? String(contentsOfFile: knit.knitdLogPath, encoding: .utf8)) ?? ""
                audited = knitdLog.split(separator: "\n").filter {
                    $0.contains("request.id=\(id)") && $0.contains("audit.user=alice")
                }
                return !audited.isEmpty
            }
            #expect(audited.count == 1, "knitd log lines with request.id=\(id): \(audited)")
            #expect(!knitdLog.contains("client-chosen"))
            var accessLog = ""
            _ = eventually(timeout: 5) {
                accessLog = (try? String(contentsOfFile: knit.root + "/log/nginx-access.log", encoding: .utf8)) ?? ""
                return accessLog.contains(id)
            }
            #expect(accessLog.contains(id), "nginx's access log has no line with \(id)")
        }
    }

    @Suite(.knitInstance())
    struct StatusLive {
        @Test func knitadmStatusReportsEachComponentAndExitsNonZeroWhileOneIsDown() throws {
            let knit = try LiveKnit.instance()
            // knitd up, no scheduler yet.
            var (exit, report) = try status(knit)
            #expect(exit == 1)
            #expect(!report.ok)
            #expect(report.knitd.up)
            #expect(report.knitd.version == "0.1.0")
            #expect(!report.scheduler.up)
            #expect(report.scheduler.error != nil)
            let store = try #require(report.store)
            #expect(store.users == 3 && store.usersByState == ["enabled": 3])
            #expect(store.data == 0 && store.runsWaiting == 0)
            #expect(store.mapUsedBytes > 0 && store.mapUsedBytes < store.mapSizeBytes)

            let schedulerPath = String(knit.knitdPath.dropLast("knitd".count)) + "knit-scheduler"
            let label = "knit-live-\(UUID().uuidString.prefix(8).lowercased())"
            _ = try knit.background(
                schedulerPath,
                [
                    "--home", knit.home, "--containers-conf", knit.packageRoot + "/containers/containers.conf",
                    "--instance", label,
                ],
                name: "knit-scheduler"
            )
            let dir = try makeScratchDirectory(knit, "status")
            try "x\n".write(toFile: dir + "/x.txt", atomically: true, encoding: .utf8)
            _ = try push(knit, dir, tags: ["kind:status"])
            #expect(eventually(timeout: 30) { (try? status(knit))?.exit == 0 }, "\(knit.logTails())")
            (exit, report) = try status(knit)
            #expect(exit == 0 && report.ok && report.knitd.up && report.scheduler.up)
            #expect(report.store?.data == 1)
            #expect(report.store?.runsByStatus["done"] == 1)
            // On a terminal (script(1) gives it one): the short table instead of JSON.
            let table = knit.run(
                "/usr/bin/script",
                ["-qec", "\(knit.knitadmPath) --home \(knit.home) status", "/dev/null"]
            )
            #expect(table.status == 0, "\(table.stderr)")
            #expect(table.stdoutText.contains("knitd       up"), "\(table.stdoutText)")
            #expect(table.stdoutText.contains("runs        done 1"), "\(table.stdoutText)")
            #expect(!table.stdoutText.contains("{"), "\(table.stdoutText)")

            // knitd killed: down (its socket refuses), while the store still reads and the scheduler runs.
            try #require(knit.killKnitd() != nil)
            (exit, report) = try status(knit)
            #expect(exit == 1)
            #expect(!report.ok && !report.knitd.up && report.scheduler.up)
            #expect(report.knitd.error?.contains(knit.socketPath) == true, "\(report.knitd.error ?? "")")
            #expect(report.store?.data == 1)

            try knit.restartKnitd()
            #expect(try status(knit).exit == 0)
        }
    }
}
