import Dispatch
import Foundation
import KnitCore
import KnitTesting
import Synchronization
import Testing

/// One row of `knitadm usage`.
private struct UsageRow: Decodable {
    struct Limits: Decodable {
        var bytes: Int64?
        var data: Int64?
        var runs: Int64?
    }
    var user: String
    var bytes: Int64
    var data: Int64
    var plans: Int64
    var runs: [String: Int64]
    var quota: Limits
}

private func usage(_ knit: KnitInstance, _ user: String) throws -> UsageRow {
    let shown = knit.knitadm(["usage"])
    try #require(shown.status == 0, "knitadm usage: \(shown.stderr)")
    let rows = try JSONDecoder().decode([UsageRow].self, from: shown.stdout)
    return try #require(rows.first { $0.user == user }, "no usage row for \(user): \(shown.stdoutText)")
}

private func setQuota(_ knit: KnitInstance, _ args: [String]) throws {
    let set = knit.knitadm(["quota", "set"] + args)
    try #require(set.status == 0, "knitadm quota set \(args): \(set.stderr)")
}

private func stagingEntries(_ knit: KnitInstance) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: knit.home + "/staging")
}

extension Live {
    /// Quotas through the real knitadm, knit, nginx, knitd and (for Runs) knit-scheduler with podman.
    @Suite(.knitInstance())
    struct QuotaLive {
        @Test func aPushBeyondTheQuotaFailsWithTheQuotaNamedAndStoresNothing() throws {
            let knit = try LiveKnit.instance()
            // Relative to what alice holds already: the suite's tests share one instance.
            let base = try usage(knit, "alice")
            let limit = base.bytes + (1 << 20)
            try setQuota(knit, ["alice", "--bytes", String(limit)])
            let shown = knit.knitadm(["quota", "show", "alice"])
            #expect(shown.status == 0)
            #expect(shown.stdoutText.contains("\"bytes\":\(limit)"), "\(shown.stdoutText)")

            let small = try makeScratchDirectory(knit, "small")
            try writeRandomFile(small + "/f", bytes: 300_000)
            _ = try push(knit, small, tags: ["q:small"])
            let before = try allKnitIds(knit)

            let big = try makeScratchDirectory(knit, "big")
            try writeRandomFile(big + "/f", bytes: 4 << 20)
            let refused = knit.runKnit(["data", "push", "-t", "q:big", big])
            #expect(refused.status != 0)
            #expect(
                refused.stderr.contains(
                    "quota exceeded: user alice holds \(base.bytes + 300_000) bytes of a bytes quota of \(limit) bytes"
                ),
                "\(refused.stderr)"
            )
            #expect(try allKnitIds(knit) == before, "nothing was stored")
            #expect(try stagingEntries(knit).isEmpty)
            let row = try usage(knit, "alice")
            #expect(row.bytes == base.bytes + 300_000)
            #expect(row.data == base.data + 1)
            #expect(row.quota.bytes == limit)

            // A Data count: the next push is refused before its body is read.
            try setQuota(knit, ["alice", "--data", String(row.data)])
            let counted = knit.runKnit(["data", "push", "-t", "q:count", small])
            #expect(counted.status != 0)
            #expect(
                counted.stderr.contains("holds \(row.data) Data of a data quota of \(row.data) Data"),
                "\(counted.stderr)"
            )
            #expect(try allKnitIds(knit) == before)
            try setQuota(knit, ["alice", "--data", "none", "--bytes", "none"])
            _ = try push(knit, big, tags: ["q:big"])
        }

        @Test func parallelPushesOfOneUserTogetherStayWithinTheQuota() throws {
            let knit = try LiveKnit.instance()
            let before = try usage(knit, "alice").bytes
            // Room for two more pushes of 400 kB, not three.
            try setQuota(knit, ["alice", "--bytes", String(before + 1_000_000)])
            let dirs = try (0..<4).map { index in
                let dir = try makeScratchDirectory(knit, "parallel\(index)")
                try writeRandomFile(dir + "/f", bytes: 400_000)
                return dir
            }
            let results = Mutex<[(status: Int32, stderr: String)]>([])
            let group = DispatchGroup()
            for dir in dirs {
                DispatchQueue.global().async(group: group) {
                    let pushed = knit.runKnit(["data", "push", "-t", "q:parallel", dir])
                    results.withLock { $0.append((pushed.status, pushed.stderr)) }
                }
            }
            group.wait()
            let all = results.withLock { $0 }
            #expect(all.filter { $0.status == 0 }.count == 2, "\(all)")
            for failed in all where failed.status != 0 {
                #expect(failed.stderr.contains("quota exceeded: user alice"), "\(failed.stderr)")
            }
            let after = try usage(knit, "alice").bytes
            #expect(after == before + 800_000)
            #expect(try stagingEntries(knit).isEmpty)
            try setQuota(knit, ["alice", "--bytes", "none"])
        }

        @Test(.enabled(if: podmanAvailable, "needs podman"))
        func theSchedulerRunsAtMostTheRunsQuotaOfOneUsersRunsAtOnce() throws {
            let knit = try LiveKnit.instance()
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            try setQuota(knit, ["alice", "--runs", "1"])
            let key = uniqueKey("runq")
            let plan = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "sleep 2; cat /in/v > /out/v",
                    inputs: [("/in", ["\(key):in"])],
                    outputs: [("/out", ["\(key):out"])]
                )
            )
            for value in ["a", "b", "c"] { _ = try pushValue(knit, value, tags: ["\(key):in"]) }

            // Every look while they run: never two of alice's Runs in flight, and the others wait.
            var mostInFlight = 0
            var sawOthersWaiting = false
            let inFlight: Set<String> = ["ready", "starting", "running", "completing", "aborting"]
            let finished = eventually(timeout: 120) {
                let runs = findRuns(knit, plans: [plan.planId])
                let flying = runs.filter { inFlight.contains($0.status) }.count
                mostInFlight = max(mostInFlight, flying)
                if flying == 1, runs.filter({ $0.status == "waiting" }).count >= 1 { sawOthersWaiting = true }
                return runs.count == 3 && runs.allSatisfy { $0.status == "done" }
            }
            #expect(finished, "\(findRuns(knit, plans: [plan.planId]).map(\.status))\n\(scheduler.logTail())")
            #expect(mostInFlight == 1, "alice had \(mostInFlight) Runs in flight at once")
            #expect(sawOthersWaiting)
            // podman's own record: three containers started, none overlapping is what the statuses showed.
            #expect(scheduler.containerStarts().count == 3)
            let row = try usage(knit, "alice")
            #expect(row.runs["done"] == 3)
            #expect(row.plans >= 1)
            #expect(row.quota.runs == 1)
            try setQuota(knit, ["alice", "--runs", "none"])
        }
    }
}
