import KnitStore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// knitd's request counters, kept in memory for `GET /metrics` (they start from zero with every knitd).
///
/// Labels are bounded by construction: the route is the route table's pattern (`/api/data/{knitId}`), never
/// the request's path; a path the table does not know is `other`, and so is a method the API does not
/// serve. The status code is the one the API answered (a few dozen at most).
///
/// One `Mutex` guards the per-route figures: a request takes it once, for well under a microsecond,
/// against the milliseconds of the request itself. Body bytes, counted per read and per written chunk,
/// are atomics so a multi-GiB transfer never takes the lock.
final class APIMetrics: Sendable {
    /// Upper bounds of the latency histogram, in seconds: from a cached find to a slow upload's answer.
    static let latencyBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
    /// Methods with a label of their own; any other is `other`.
    static let knownMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "DELETE"]

    struct RouteKey: Hashable, Comparable {
        var method: String
        var route: String

        static func < (lhs: RouteKey, rhs: RouteKey) -> Bool { (lhs.route, lhs.method) < (rhs.route, rhs.method) }
    }

    struct Latency {
        /// Per bucket, not cumulative (the exposition accumulates); the last one is `+Inf`.
        var counts = [UInt64](repeating: 0, count: APIMetrics.latencyBuckets.count + 1)
        var sumNanoseconds: UInt64 = 0
        var count: UInt64 = 0

        mutating func add(bucket: Int, nanoseconds: UInt64) {
            counts[bucket] += 1
            sumNanoseconds &+= nanoseconds
            count += 1
        }
    }

    struct Figures {
        var requests: [RouteKey: [Int: UInt64]] = [:]
        var latency: [RouteKey: Latency] = [:]
    }

    private let figures = Mutex(Figures())
    private let bodyBytesIn = Atomic<UInt64>(0)
    private let bodyBytesOut = Atomic<UInt64>(0)

    static func key(method: String, route: String?) -> RouteKey {
        RouteKey(method: knownMethods.contains(method) ? method : "other", route: route ?? "other")
    }

    func record(_ key: RouteKey, status: Int, nanoseconds: UInt64) {
        let seconds = Double(nanoseconds) / 1e9
        let bucket = Self.latencyBuckets.firstIndex { seconds <= $0 } ?? Self.latencyBuckets.count
        figures.withLock { figures in
            figures.requests[key, default: [:]][status, default: 0] += 1
            figures.latency[key, default: Latency()].add(bucket: bucket, nanoseconds: nanoseconds)
        }
    }

    func received(_ bytes: Int) {
        if bytes > 0 { bodyBytesIn.add(UInt64(bytes), ordering: .relaxed) }
    }

    func sent(_ bytes: Int) {
        if bytes > 0 { bodyBytesOut.add(UInt64(bytes), ordering: .relaxed) }
    }

    /// A copy of everything, taken under the lock once, so one scrape is consistent in itself.
    func snapshot() -> MetricsSnapshot {
        let figures = self.figures.withLock { $0 }
        return MetricsSnapshot(
            requests: figures.requests,
            latency: figures.latency,
            bodyBytesIn: bodyBytesIn.load(ordering: .relaxed),
            bodyBytesOut: bodyBytesOut.load(ordering: .relaxed)
        )
    }

    /// Nanoseconds of the monotonic clock (`CLOCK_MONOTONIC`: a wall-clock step never makes a request
    /// look negative or hours long).
    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}

struct MetricsSnapshot {
    var requests: [APIMetrics.RouteKey: [Int: UInt64]]
    var latency: [APIMetrics.RouteKey: APIMetrics.Latency]
    var bodyBytesIn: UInt64
    var bodyBytesOut: UInt64
}

/// Prometheus' text exposition format, version 0.0.4: `# HELP` and `# TYPE` before each family, one sample
/// per line, label values escaped, histograms as cumulative `_bucket{le=…}` plus `_sum` and `_count`.
struct MetricsExposition {
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    private(set) var text = ""

    mutating func family(_ name: String, _ type: String, _ help: String) {
        text += "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) \(type)\n"
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: String) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.0)=\"\(Self.escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
        }
        text += " \(value)\n"
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: some BinaryInteger) {
        sample(name, labels, "\(value)")
    }

    mutating func sample(_ name: String, _ value: some BinaryInteger) { sample(name, [], "\(value)") }

    /// `+Inf`, or the shortest decimal that reads back as the same double.
    static func format(_ value: Double) -> String {
        value.isInfinite ? (value > 0 ? "+Inf" : "-Inf") : "\(value)"
    }

    static func escapeLabel(_ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    static func escapeHelp(_ value: String) -> String {
        value.replacing("\\", with: "\\\\").replacing("\n", with: "\\n")
    }

    /// Everything `GET /metrics` answers: knitd's counters and the store's figures of this moment.
    static func render(_ metrics: MetricsSnapshot, store: StoreStatistics, transfersInFlight: Int) -> String {
        var out = MetricsExposition()
        out.family("knit_build_info", "gauge", "Always 1; the version of the knitd answering.")
        out.sample("knit_build_info", [("version", KnitAPI.version)], 1)

        out.family(
            "knit_http_requests_total",
            "counter",
            "API requests answered, by method, route pattern and status code (counted when the response head is ready)."
        )
        for key in metrics.requests.keys.sorted() {
            for (code, count) in metrics.requests[key]!.sorted(by: { $0.key < $1.key }) {
                out.sample(
                    "knit_http_requests_total",
                    [("method", key.method), ("route", key.route), ("code", "\(code)")],
                    count
                )
            }
        }

        out.family(
            "knit_http_request_duration_seconds",
            "histogram",
            "Time from the request reaching the API to its response head being ready, by method and route pattern; a streamed body (a download, a followed log) is sent after it."
        )
        for key in metrics.latency.keys.sorted() {
            let latency = metrics.latency[key]!
            let labels = [("method", key.method), ("route", key.route)]
            var cumulative: UInt64 = 0
            for (index, count) in latency.counts.enumerated() {
                cumulative += count
                let bound = index < APIMetrics.latencyBuckets.count ? APIMetrics.latencyBuckets[index] : .infinity
                out.sample("knit_http_request_duration_seconds_bucket", labels + [("le", format(bound))], cumulative)
            }
            out.sample(
                "knit_http_request_duration_seconds_sum",
                labels,
                format(Double(latency.sumNanoseconds) / 1e9)
            )
            out.sample("knit_http_request_duration_seconds_count", labels, latency.count)
        }

        out.family("knit_http_request_body_bytes_total", "counter", "Request body bytes the API read (uploads, JSON).")
        out.sample("knit_http_request_body_bytes_total", metrics.bodyBytesIn)
        out.family(
            "knit_http_response_body_bytes_total",
            "counter",
            "Response body bytes the API produced (downloads, logs, JSON), streamed ones as they were written."
        )
        out.sample("knit_http_response_body_bytes_total", metrics.bodyBytesOut)
        out.family("knit_transfers_in_flight", "gauge", "Uploads and downloads holding a transfer slot now.")
        out.sample("knit_transfers_in_flight", transfersInFlight)

        out.family("knit_runs", "gauge", "Runs by status, uploads included.")
        for (status, count) in store.runsByStatus.sorted(by: { $0.key < $1.key }) {
            out.sample("knit_runs", [("status", status)], count)
        }
        out.family("knit_scheduler_queue_runs", "gauge", "Runs waiting for the scheduler to start them.")
        out.sample("knit_scheduler_queue_runs", store.runsWaiting)
        out.family("knit_store_data", "gauge", "Data records (finished, processing and failed).")
        out.sample("knit_store_data", store.data)
        out.family("knit_store_plans", "gauge", "Plans registered.")
        out.sample("knit_store_plans", store.plans)
        out.family("knit_store_users", "gauge", "User records, disabled and deleted users included.")
        out.sample("knit_store_users", store.users)
        out.family("knit_lmdb_map_size_bytes", "gauge", "The LMDB map size: the most the database may grow to.")
        out.sample("knit_lmdb_map_size_bytes", store.mapSizeBytes)
        out.family("knit_lmdb_map_used_bytes", "gauge", "LMDB pages in use (up to the highest) times the page size.")
        out.sample("knit_lmdb_map_used_bytes", store.mapUsedBytes)
        out.family("knit_lmdb_readers", "gauge", "LMDB reader slots in use.")
        out.sample("knit_lmdb_readers", store.readersInUse)
        out.family("knit_lmdb_max_readers", "gauge", "LMDB reader slots there are.")
        out.sample("knit_lmdb_max_readers", store.maxReaders)
        return out.text
    }
}

extension KnitAPI {
    /// `GET /metrics` (admins only): Prometheus text.
    func metricsResponse() throws -> APIResponse {
        let store = self.store
        let statistics = try storeCall { () throws(StoreError) in try store.statistics() }
        let text = MetricsExposition.render(metrics.snapshot(), store: statistics, transfersInFlight: transfersInFlight)
        return APIResponse(status: 200, headers: [("Content-Type", MetricsExposition.contentType)], body: .bytes(Array(text.utf8)))
    }
}
