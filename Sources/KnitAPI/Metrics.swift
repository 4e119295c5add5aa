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
/// Each route has a slot (an index, so nothing is hashed on the way), and the slots live in a few shards,
/// each behind its own `Mutex`, picked by thread: knitd's worker threads rarely meet on one lock, and a
/// request holds it for a few array updates. Body bytes, counted per read and per written chunk, are
/// atomics so a multi-GiB transfer never takes a lock. A scrape merges the shards.
final class APIMetrics: Sendable {
    /// Upper bounds of the latency histogram, in seconds: from a cached find to a slow upload's answer.
    static let latencyBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
    /// Method labels of requests no route took; any method the API does not serve is `other`.
    static let methodLabels = ["GET", "HEAD", "POST", "PUT", "DELETE", "other"]
    /// A power of two (the shard is the top bits of a hash of the thread).
    static let shardCount = 8

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

        mutating func add(_ other: Latency) {
            for index in counts.indices { counts[index] += other.counts[index] }
            sumNanoseconds &+= other.sumNanoseconds
            count += other.count
        }
    }

    struct Slot {
        var codes: [Int: UInt64] = [:]
        var latency = Latency()
    }

    private final class Shard: Sendable {
        let slots: Mutex<[Slot]>
        init(count: Int) { slots = Mutex([Slot](repeating: Slot(), count: count)) }
    }

    /// The labels of each slot: per route of the table, as listed and as HEAD (which every GET route
    /// answers), then the `other` route of each method label.
    let keys: [RouteKey]
    private let routeCount: Int
    private let shards: [Shard]
    private let bodyBytesIn = Atomic<UInt64>(0)
    private let bodyBytesOut = Atomic<UInt64>(0)

    init(routes: [Route]) {
        var keys: [RouteKey] = []
        for route in routes {
            keys.append(RouteKey(method: route.method, route: route.path))
            keys.append(RouteKey(method: "HEAD", route: route.path))
        }
        for method in Self.methodLabels { keys.append(RouteKey(method: method, route: "other")) }
        self.keys = keys
        routeCount = routes.count
        let count = keys.count
        shards = (0..<Self.shardCount).map { _ in Shard(count: count) }
    }

    /// The slot of a request: its route's (`route`: the index in the table), or the `other` route of its
    /// method.
    func slot(method: String, route: Int?) -> Int {
        if let route { return route * 2 + (method == "HEAD" ? 1 : 0) }
        return routeCount * 2 + (Self.methodLabels.firstIndex(of: method) ?? Self.methodLabels.count - 1)
    }

    func record(slot: Int, status: Int, nanoseconds: UInt64) {
        let seconds = Double(nanoseconds) / 1e9
        let bucket = Self.latencyBuckets.firstIndex { seconds <= $0 } ?? Self.latencyBuckets.count
        // Fibonacci hashing of the thread's id: its top bits pick the shard.
        let thread = UInt64(pthread_self())
        let shard = shards[Int((thread &* 0x9E37_79B9_7F4A_7C15) >> UInt64(64 - Self.shardCount.trailingZeroBitCount))]
        shard.slots.withLock { slots in
            slots[slot].codes[status, default: 0] += 1
            slots[slot].latency.add(bucket: bucket, nanoseconds: nanoseconds)
        }
    }

    func received(_ bytes: Int) {
        if bytes > 0 { bodyBytesIn.add(UInt64(bytes), ordering: .relaxed) }
    }

    func sent(_ bytes: Int) {
        if bytes > 0 { bodyBytesOut.add(UInt64(bytes), ordering: .relaxed) }
    }

    /// Every shard merged: the routes that answered at least once.
    func snapshot() -> MetricsSnapshot {
        var requests: [RouteKey: [Int: UInt64]] = [:]
        var latency: [RouteKey: Latency] = [:]
        for shard in shards {
            let slots = shard.slots.withLock { $0 }
            for (index, slot) in slots.enumerated() where slot.latency.count > 0 {
                let key = keys[index]
                requests[key, default: [:]].merge(slot.codes, uniquingKeysWith: +)
                latency[key, default: Latency()].add(slot.latency)
            }
        }
        return MetricsSnapshot(
            requests: requests,
            latency: latency,
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
        out.family("knit_hook_outbox_events", "gauge", "Lifecycle after-hook deliveries not yet answered 2xx.")
        out.sample("knit_hook_outbox_events", store.hookOutbox)
        return out.text
    }
}

extension KnitAPI {
    /// `GET /metrics` (admins only): Prometheus text.
    func metricsResponse() throws -> APIResponse {
        let store = self.store
        let statistics = try storeCall { () throws(StoreError) in try store.statistics() }
        let text = MetricsExposition.render(metrics.snapshot(), store: statistics, transfersInFlight: transfersInFlight)
        return APIResponse(
            status: 200,
            headers: [("Content-Type", MetricsExposition.contentType)],
            body: .bytes(Array(text.utf8))
        )
    }
}
