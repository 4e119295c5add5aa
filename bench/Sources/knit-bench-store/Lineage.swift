import KnitCore
@_spi(Benchmark) import KnitStore

// `knit-bench-store lineage`: time to a lineage graph and its dot text, next to one `data find`.
//
// Two stores: a chain of `--chain` plans (stage:i → stage:i+1) each run to done, so the last Data has a
// 1,000-deep upstream; and a fan-out where one Data is an input of `--fanout` Runs (a two-input plan crossed
// with that many Data on the other input, made by bulk insert and one plan registration). Each measurement is
// the store's one read transaction plus KnitCore's dot rendering, repeated `--repeat` times (median printed).
#if canImport(Glibc)
    import Glibc
#endif

struct LineageBenchmark {
    let chainStore: KnitStore
    let fanoutStore: KnitStore
    let chain: Int
    let fanout: Int
    let repeats: Int

    func run() throws {
        var started = nowNanoseconds()
        let last = try buildChain()
        print("chain_setup_seconds=\(format(Double(nowNanoseconds() - started) / 1e9)) chain=\(chain)")
        started = nowNanoseconds()
        let hub = try buildFanout()
        print("fanout_setup_seconds=\(format(Double(nowNanoseconds() - started) / 1e9)) fanout=\(fanout)")

        try time("chain_lineage", store: chainStore, knitId: last, upstream: true, downstream: false)
        try time("fanout_lineage", store: fanoutStore, knitId: hub, upstream: false, downstream: true)
        // The baseline: one `GET /api/data?tag=knit#id:…` in-process, what each step of Knitfab's client walk costs.
        var samples: [UInt64] = []
        for _ in 0..<max(repeats, 50) {
            let before = nowNanoseconds()
            _ = try chainStore.findData(tags: [Tag(key: SystemTag.id, value: last)], since: nil, durationMs: nil)
            samples.append(nowNanoseconds() - before)
        }
        samples.sort()
        print("find_one_us_p50=\(format(percentile(samples, 50)))")
    }

    private func time(_ label: String, store: KnitStore, knitId: String, upstream: Bool, downstream: Bool) throws {
        var graphTimes: [UInt64] = []
        var dotTimes: [UInt64] = []
        var nodes = 0
        var bytes = 0
        for _ in 0..<repeats {
            let before = nowNanoseconds()
            let graph = try store.lineage(knitId: knitId, upstream: upstream, downstream: downstream, depth: .all)
            let built = nowNanoseconds()
            let dot = graph.dot()
            let done = nowNanoseconds()
            graphTimes.append(built - before)
            dotTimes.append(done - built)
            nodes = graph.nodes.count
            bytes = dot.utf8.count
        }
        graphTimes.sort()
        dotTimes.sort()
        let total = zip(graphTimes, dotTimes).map { $0 + $1 }.sorted()
        print(
            "\(label)_nodes=\(nodes) \(label)_dot_bytes=\(bytes) \(label)_graph_ms_p50=\(format(percentile(graphTimes, 50) / 1000)) "
                + "\(label)_dot_ms_p50=\(format(percentile(dotTimes, 50) / 1000)) \(label)_total_ms_p50=\(format(percentile(total, 50) / 1000))"
        )
    }

    /// Registers the chain's plans, uploads stage:0 and walks every Run to done; returns the last output.
    private func buildChain() throws -> String {
        for i in 0..<chain {
            let spec = PlanSpecJSON(
                image: "localhost/stage:\(i)",
                inputs: [MountpointJSON(path: "/in", tags: TagSet([Tag(key: "stage", value: String(i))]))],
                outputs: [MountpointJSON(path: "/out", tags: TagSet([Tag(key: "stage", value: String(i + 1))]))]
            )
            _ = try chainStore.registerPlan(spec, creator: "bench")
        }
        let ticket = try chainStore.beginUpload(creator: "bench")
        _ = try chainStore.finishUpload(ticket, tags: [Tag(key: "stage", value: "0")], sizeBytes: 0)
        var last = ""
        for _ in 0..<chain {
            guard let runId = try chainStore.runIds(status: .waiting).first else { break }
            _ = try chainStore.markReady(runId: runId)
            _ = try chainStore.markStarting(runId: runId)
            _ = try chainStore.markRunning(runId: runId)
            _ = try chainStore.finishRun(runId: runId, exit: RunExitJSON(code: 0, message: ""), succeeded: true)
            last = try chainStore.runDetail(runId: runId).outputs[0].knitId
        }
        return last
    }

    /// One Data tagged side:hub and `fanout` tagged side:other, then a plan taking one of each.
    private func buildFanout() throws -> String {
        try fanoutStore.bulkInsertForBenchmark(count: 1) { _ in [Tag(key: "side", value: "hub")] }
        try fanoutStore.bulkInsertForBenchmark(count: fanout) { _ in [Tag(key: "side", value: "other")] }
        let spec = PlanSpecJSON(
            image: "localhost/fan:1",
            inputs: [
                MountpointJSON(path: "/in/hub", tags: TagSet([Tag(key: "side", value: "hub")])),
                MountpointJSON(path: "/in/other", tags: TagSet([Tag(key: "side", value: "other")])),
            ],
            outputs: [MountpointJSON(path: "/out", tags: TagSet([Tag(key: "kind", value: "fanned")]))]
        )
        _ = try fanoutStore.registerPlan(spec, creator: "bench")
        let hub = try fanoutStore.findData(tags: [Tag(key: "side", value: "hub")], since: nil, durationMs: nil)
        guard let id = hub.first?.knitId else { fail("fan-out hub Data missing") }
        return id
    }
}
