import KnitCore
import KnitStore

// `knit-bench-store nominate`: what one push costs the store when many plans are registered.
//
// A push becomes usable in `finishUpload`: one write transaction publishes the Data and nominates it to
// every plan input it matches (projection), creating the Runs. That transaction is what grows with the
// number of plans, so it is timed alone (the staging directory and the empty upload are made before the
// clock starts). Plans look like a real multi-project server: every input asks for `type:dataset` (which
// every plan shares) and `project:p<i>` (which one plan has), and every push carries both tags, so the
// shared tag's index lists all plans while exactly one input matches.
#if canImport(Glibc)
    import Glibc
#endif

struct NominationBenchmark {
    let store: KnitStore
    let plans: Int
    let pushes: Int

    /// Registers `plans` plans (timed in total), then times `pushes` uploads against them.
    func run(baselineStore: KnitStore) throws {
        let baseline = try timePushes(into: baselineStore, label: "no_plans", creating: 0)
        // The scale benchmark registers these plans into a store that already has others (its lineage chain).
        let plansBefore = try store.findPlans().count

        let started = nowNanoseconds()
        var lastRegistrations: [UInt64] = []
        for i in 0..<plans {
            let before = nowNanoseconds()
            defer { if i >= plans - 100 { lastRegistrations.append(nowNanoseconds() - before) } }
            let spec = PlanSpecJSON(
                image: "localhost/bench:1",
                inputs: [MountpointJSON(path: "/in/data", tags: TagSet([datasetTag, projectTag(i)]))],
                outputs: [MountpointJSON(path: "/out/model", tags: TagSet([Tag(key: "type", value: "model")]))]
            )
            _ = try store.registerPlan(spec, creator: "bench")
        }
        let seconds = Double(nowNanoseconds() - started) / 1e9
        lastRegistrations.sort()
        print(
            "plans_registered=\(plans) register_seconds=\(format(seconds)) "
                + "last_register_ms_p50=\(format(percentile(lastRegistrations, 50) / 1000))"
        )

        // `plan find` without filters: every Plan Detail, each with its upstreams and downstreams.
        var findTimes: [UInt64] = []
        for _ in 0..<3 {
            let before = nowNanoseconds()
            let found = try store.findPlans()
            findTimes.append(nowNanoseconds() - before)
            guard found.count == plansBefore + plans else {
                fail("plan find returned \(found.count) plans, expected \(plansBefore + plans)")
            }
        }
        findTimes.sort()
        print("find_all_plans_ms_p50=\(format(percentile(findTimes, 50) / 1000))")

        let loaded = try timePushes(into: store, label: "with_plans", creating: 1)
        print("push_cost_ratio=\(format(loaded / max(baseline, 0.001)))")
    }

    private let datasetTag = Tag(key: "type", value: "dataset")
    private func projectTag(_ i: Int) -> Tag { Tag(key: "project", value: "p\(i)") }

    /// Times `finishUpload` for `pushes` empty uploads tagged like a dataset of a random project and
    /// checks that each created `creating` Runs. Prints percentiles in µs; returns the p50.
    private func timePushes(into store: KnitStore, label: String, creating runsPerPush: Int) throws -> Double {
        var random = XorShift(seed: 7)
        var samples: [UInt64] = []
        let runsBefore = try store.runIds(status: .waiting).count
        for _ in 0..<pushes {
            let ticket = try store.beginUpload(creator: "bench")
            let project = projectTag(random.below(max(plans, 1)))
            let before = nowNanoseconds()
            _ = try store.finishUpload(ticket, tags: [datasetTag, project], sizeBytes: 0)
            samples.append(nowNanoseconds() - before)
        }
        let created = try store.runIds(status: .waiting).count - runsBefore
        guard created == pushes * runsPerPush else {
            fail("\(label): expected \(pushes * runsPerPush) new runs, the store has \(created)")
        }
        samples.sort()
        let p50 = percentile(samples, 50)
        print(
            "\(label)_push_p50_us=\(format(p50)) \(label)_push_p95_us=\(format(percentile(samples, 95))) "
                + "\(label)_push_p99_us=\(format(percentile(samples, 99))) \(label)_runs_created=\(created)"
        )
        return p50
    }
}
