// knit-bench-store: loads a Knit store with many Data records and measures tag queries in-process.
//
//   knit-bench-store load  --home H [--count 1000000] [--shards 100000]
//   knit-bench-store query --home H [--queries 20000] [--shards 100000] [--seed 1]
//
// Data i gets the tags shard:<i % shards> and batch:<i / 1000>, so one shard tag matches count/shards Data.
// Output lines of the form `key=value` are read by bench/query.sh; everything else is for people.
#if canImport(Glibc)
import Glibc
#endif
import KnitCore
import KnitStore
import Logging

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

/// Runs `queries` (prepared before timing) and prints percentiles under `label`.
func measure(_ label: String, store: KnitStore, queries: [[Tag]]) throws {
    var samples: [UInt64] = []
    samples.reserveCapacity(queries.count)
    var results = 0
    let started = nowNanoseconds()
    for tags in queries {
        let before = nowNanoseconds()
        let found = try store.findData(tags: tags, since: nil, durationMs: nil)
        samples.append(nowNanoseconds() - before)
        results += found.count
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

let arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else { fail("usage: knit-bench-store load|query --home DIR [options]") }
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
    let started = nowNanoseconds()
    do {
        try store.bulkInsertForBenchmark(count: count) { i in
            [Tag(key: "shard", value: String(i % shards)), Tag(key: "batch", value: String(i / 1000))]
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
        try measure("miss", store: store, queries: misses)
        try measure("pair", store: store, queries: pairs)
    } catch { fail("query failed: \(error)") }

default:
    fail("unknown command '\(command)' (load or query)")
}
