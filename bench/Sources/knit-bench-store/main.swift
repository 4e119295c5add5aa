import KnitCore
@_spi(Benchmark) import KnitStore
import Logging

// knit-bench-store: loads a Knit store with many Data records and measures tag queries in-process.
//
//   knit-bench-store load  --home H [--count 1000000] [--shards 100000] [--start 0]
//   knit-bench-store query --home H [--queries 20000] [--shards 100000] [--seed 1]
//   knit-bench-store json  [--iterations 20000]   (KnitJSON.encode of 10 DataDetailJSON, as GET /api/data sends)
//   knit-bench-store nominate --home H [--baseline-home B] [--plans 10000] [--pushes 300]
//                                 (finishUpload with many plans registered in H, none in B; without B, the
//                                 baseline is H itself before its plans are registered; Nomination.swift)
//   knit-bench-store lineage --home H --fanout-home F [--chain 1000] [--fanout 10000] [--repeat 5]
//                                 (lineage graph + dot of a deep chain and a wide fan-out; Lineage.swift)
//   knit-bench-store stats --home H   (the store's own statistics: Data, LMDB pages in use, bytes per Data)
//
// Data i gets the tags shard:<i % shards> and batch:<i / 1000>, so one shard tag matches count/shards Data.
// Output lines of the form `key=value` are read by bench/query.sh; everything else is for people.
#if canImport(Glibc)
    import Glibc
#endif

/// xorshift64*: deterministic, cheap, and free of per-call system entropy, so it does not disturb timing.
struct XorShift {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

func nowNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

func option(_ name: String, _ arguments: [String]) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

func intOption(_ name: String, _ arguments: [String], default value: Int) -> Int {
    guard let text = option(name, arguments) else { return value }
    guard let parsed = Int(text), parsed > 0 else { fail("\(name) needs a positive integer, got '\(text)'") }
    return parsed
}

func fail(_ message: String) -> Never {
    let line = Array("knit-bench-store: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}

/// Percentile by nearest rank over sorted nanoseconds, in microseconds.
func percentile(_ sorted: [UInt64], _ p: Double) -> Double {
    let rank = min(sorted.count - 1, max(0, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1))
    return Double(sorted[rank]) / 1000
}

func format(_ value: Double) -> String {
    let scaled = (value * 10).rounded() / 10
    return "\(scaled)"
}

func occurrences(of needle: [UInt8], in haystack: [UInt8]) -> Int {
    guard haystack.count >= needle.count else { return 0 }
    var count = 0
    for start in 0...(haystack.count - needle.count)
    where haystack[start..<start + needle.count].elementsEqual(needle) {
        count += 1
    }
    return count
}

/// Runs `queries` (prepared before timing) and prints percentiles under `label`: `findData` (the details), or
/// with `asAnswer` `findDataJSON` (the answer's bytes, as `GET /api/data` sends them; results counted by knitId).
func measure(_ label: String, store: KnitStore, queries: [[Tag]], asAnswer: Bool = false) throws {
    var samples: [UInt64] = []
    samples.reserveCapacity(queries.count)
    var results = 0
    let started = nowNanoseconds()
    for tags in queries {
        let before = nowNanoseconds()
        if asAnswer {
            let answer = try store.findDataJSON(tags: tags, since: nil, durationMs: nil)
            samples.append(nowNanoseconds() - before)
            results += occurrences(of: Array(#"{"knitId":"#.utf8), in: answer)
        } else {
            let found = try store.findData(tags: tags, since: nil, durationMs: nil)
            samples.append(nowNanoseconds() - before)
            results += found.count
        }
    }
    let total = Double(nowNanoseconds() - started) / 1e9
    samples.sort()
    let mean = Double(results) / Double(queries.count)
    print(
        "\(label)_p50_us=\(format(percentile(samples, 50))) \(label)_p90_us=\(format(percentile(samples, 90))) "
            + "\(label)_p99_us=\(format(percentile(samples, 99))) \(label)_qps=\(Int(Double(queries.count) / total)) "
            + "\(label)_results=\(format(mean))"
    )
}

/// Ten Data as one tag query returns them: uploaded, done, four tags each.
func sampleDetails() -> [DataDetailJSON] {
    (0..<10).map { i in
        let knitId = "3f1c2b9e-7d4a-4e8b-9c1d-\(String(100_000_000_000 + i))"
        return DataDetailJSON(
            knitId: knitId,
            tags: TagSet([
                Tag(key: "batch", value: "\(i)"), Tag(key: "knit#id", value: knitId),
                Tag(key: "knit#timestamp", value: "2024-05-17T04:19:33.325+00:00"),
                Tag(key: "shard", value: "\(i * 7)"),
            ]),
            upstream: DataUpstreamJSON(
                mountpoint: MountpointJSON(path: "/upload", tags: []),
                run: RunSummaryJSON(
                    runId: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6\(i)",
                    status: "done",
                    updatedAt: "2024-05-17T04:19:33.325+00:00",
                    plan: PlanSummaryJSON(planId: "0d1e2f3a-4b5c-4d6e-8f7a-8b9c0d1e2f3a", name: "knit#uploaded")
                )
            )
        )
    }
}

/// Times `KnitJSON.encode` of `sampleDetails()`, the response body of one tag query.
func measureJSON(iterations: Int) throws {
    let details = sampleDetails()
    var samples: [UInt64] = []
    samples.reserveCapacity(iterations)
    var bytes = 0
    for _ in 0..<2000 { bytes = try KnitJSON.encode(details).count }
    for _ in 0..<iterations {
        let before = nowNanoseconds()
        bytes = try KnitJSON.encode(details).count
        samples.append(nowNanoseconds() - before)
    }
    samples.sort()
    print(
        "json_p50_us=\(format(percentile(samples, 50))) json_p90_us=\(format(percentile(samples, 90))) "
            + "json_p99_us=\(format(percentile(samples, 99))) json_bytes=\(bytes)"
    )
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else { fail("usage: knit-bench-store load|query|json [options]") }
if command == "json" {
    do { try measureJSON(iterations: intOption("--iterations", arguments, default: 20_000)) } catch {
        fail("encoding failed: \(error)")
    }
    exit(0)
}
guard let home = option("--home", arguments) else { fail("--home DIR is required") }
let shards = intOption("--shards", arguments, default: 100_000)

var logger = Logger(label: "knit-bench-store")
logger.logLevel = .warning
let store: KnitStore
do { store = try KnitStore(home: home, logger: logger) } catch { fail("cannot open store \(home): \(error)") }
defer { store.close() }

switch command {
case "load":
    let count = intOption("--count", arguments, default: 1_000_000)
    // A load resumed on a store that already holds `--start` Data tags the new ones as if it had never stopped.
    let start = option("--start", arguments).flatMap { Int($0) } ?? 0
    let started = nowNanoseconds()
    do {
        try store.bulkInsertForBenchmark(count: count) { i in
            [
                Tag(key: "shard", value: String((start + i) % shards)),
                Tag(key: "batch", value: String((start + i) / 1000)),
            ]
        }
    } catch { fail("bulk insert failed: \(error)") }
    let seconds = Double(nowNanoseconds() - started) / 1e9
    print("load_count=\(count) load_seconds=\(format(seconds)) load_per_s=\(Int(Double(count) / seconds))")

case "query":
    let count = intOption("--queries", arguments, default: 20_000)
    let seed = UInt64(intOption("--seed", arguments, default: 1))
    var random = XorShift(seed: seed)
    let hits = (0..<count).map { _ in [Tag(key: "shard", value: String(random.below(shards)))] }
    // Same index lookup and read transaction, but an absent key: the fixed cost every query pays.
    let misses = (0..<count).map { _ in [Tag(key: "shard", value: "absent-\(random.below(shards))")] }
    // Two selective tags: the shortest duplicate list is read, the other tag is probed per candidate.
    // Built from an existing Data index so each pair matches exactly one Data.
    let loaded = intOption("--count", arguments, default: 1_000_000)
    let pairs = (0..<count).map { _ in
        let i = random.below(loaded)
        return [Tag(key: "shard", value: String(i % shards)), Tag(key: "batch", value: String(i / 1000))]
    }
    do {
        try measure("warmup", store: store, queries: Array(hits.prefix(2000)))
        try measure("hit", store: store, queries: hits)
        try measure("answer", store: store, queries: hits, asAnswer: true)
        try measure("miss", store: store, queries: misses)
        try measure("pair", store: store, queries: pairs)
    } catch { fail("query failed: \(error)") }

case "nominate":
    do {
        // Without a baseline home the pushes without plans go into the same store first, so both sides
        // carry the same Data (the scale benchmark's ten million).
        let baseline = try option("--baseline-home", arguments).map { try KnitStore(home: $0, logger: logger) }
        defer { baseline?.close() }
        try NominationBenchmark(
            store: store,
            plans: intOption("--plans", arguments, default: 10_000),
            pushes: intOption("--pushes", arguments, default: 300)
        ).run(baselineStore: baseline ?? store)
    } catch { fail("nomination benchmark failed: \(error)") }

case "stats":
    // What `GET /metrics` reports as knit_lmdb_*: mdb_env_info's last page in use times the page size.
    do {
        let stats = try store.statistics()
        let perData = stats.data > 0 ? Double(stats.mapUsedBytes) / Double(stats.data) : 0
        print(
            "data=\(stats.data) plans=\(stats.plans) map_used_bytes=\(stats.mapUsedBytes) "
                + "map_size_bytes=\(stats.mapSizeBytes) page_size=\(stats.pageSize) "
                + "lmdb_bytes_per_data=\(format(perData))"
        )
    } catch { fail("statistics failed: \(error)") }

case "lineage":
    guard let fanoutHome = option("--fanout-home", arguments) else { fail("--fanout-home DIR is required") }
    do {
        let fanoutStore = try KnitStore(home: fanoutHome, logger: logger)
        defer { fanoutStore.close() }
        try LineageBenchmark(
            chainStore: store,
            fanoutStore: fanoutStore,
            chain: intOption("--chain", arguments, default: 1000),
            fanout: intOption("--fanout", arguments, default: 10_000),
            repeats: intOption("--repeat", arguments, default: 5)
        ).run()
    } catch { fail("lineage benchmark failed: \(error)") }

default:
    fail("unknown command '\(command)' (load, query, json, nominate, lineage or stats)")
}
