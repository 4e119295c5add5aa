import KnitCore
import KnitTestSupport
import Testing

@Suite struct PlanNominationTests {
    private func input(_ texts: String...) throws -> PlanInput {
        let tags = TagSet(texts.map { try! KnitCore.Tag(parsing: $0) })
        return try Plan(validating: makeSpec { $0.inputs = [MountpointJSON(path: "/in", tags: tags)] }).inputs[0]
    }

    private let time = KnitTime(milliseconds: 1_715_919_573_325)

    @Test func userTagsMustBeASubset() throws {
        let wanted = try input("type:dataset", "mode:train")
        let data = tagSet("type:dataset", "mode:train", "extra:1")
        #expect(isAssignable(dataTags: data, knitId: "k", timestamp: time, producerDone: true, to: wanted))
        #expect(
            !isAssignable(
                dataTags: tagSet("type:dataset"),
                knitId: "k",
                timestamp: time,
                producerDone: true,
                to: wanted
            )
        )
        #expect(
            !isAssignable(
                dataTags: tagSet("type:dataset", "mode:test"),
                knitId: "k",
                timestamp: nil,
                producerDone: true,
                to: wanted
            )
        )
        // Data whose Run is not done is never assigned.
        #expect(!isAssignable(dataTags: data, knitId: "k", timestamp: nil, producerDone: false, to: wanted))
    }

    @Test func systemTagRequirements() throws {
        let byId = try input("knit#id:k1")
        #expect(isAssignable(dataTags: [], knitId: "k1", timestamp: time, producerDone: true, to: byId))
        #expect(!isAssignable(dataTags: [], knitId: "k2", timestamp: time, producerDone: true, to: byId))
        // Knit requires a done producer for system-tag-only inputs too (Knitfab quirk 15 does not).
        #expect(!isAssignable(dataTags: [], knitId: "k1", timestamp: nil, producerDone: false, to: byId))

        let byTime = try input("knit#timestamp:2024-05-17T13:19:33.325+09:00", "type:x")
        #expect(isAssignable(dataTags: tagSet("type:x"), knitId: "a", timestamp: time, producerDone: true, to: byTime))
        let later = KnitTime(milliseconds: time.milliseconds + 1)
        #expect(
            !isAssignable(dataTags: tagSet("type:x"), knitId: "a", timestamp: later, producerDone: true, to: byTime)
        )
        #expect(!isAssignable(dataTags: tagSet("type:x"), knitId: "a", timestamp: nil, producerDone: true, to: byTime))
        #expect(!isAssignable(dataTags: tagSet("type:y"), knitId: "a", timestamp: time, producerDone: true, to: byTime))
    }

    @Test(arguments: [(1, 1), (2, 3), (3, 2), (5, 4), (1, 7)])
    func twoInputsGiveNTimesMCombinations(n: Int, m: Int) {
        let left = (0..<n).map { "l\($0)" }
        let right = (0..<m).map { "r\($0)" }
        // Feed nominations one at a time, as the store does: each new Data is the trigger, the others are
        // what was already known. Every pair appears exactly once.
        var known: [[String]] = [[], []]
        var made: [[String]] = []
        for step in 0..<max(n, m) {
            if step < n {
                made += Projection.combinations(triggerInput: 0, triggerKnitId: left[step], known: known)
                known[0].append(left[step])
            }
            if step < m {
                made += Projection.combinations(triggerInput: 1, triggerKnitId: right[step], known: known)
                known[1].append(right[step])
            }
        }
        #expect(made.count == n * m)
        #expect(Set(made).count == n * m)
        #expect(made.allSatisfy { $0.count == 2 && $0[0].hasPrefix("l") && $0[1].hasPrefix("r") })
    }

    @Test func combinationsOfThreeInputs() {
        let made = Projection.combinations(
            triggerInput: 1,
            triggerKnitId: "new",
            known: [["a", "b"], ["ignored"], ["x", "y", "z"]]
        )
        #expect(made.count == 6)
        #expect(made.first == ["a", "new", "x"])
        #expect(made.last == ["b", "new", "z"])
        #expect(Projection.combinations(triggerInput: 0, triggerKnitId: "n", known: [[], ["a"], []]).isEmpty)
        #expect(Projection.combinations(triggerInput: 0, triggerKnitId: "n", known: [[]]) == [["n"]])
    }

    @Test func combinationKeysDiffer() {
        #expect(
            Projection.combinationKey(planId: "p", knitIds: ["ab", "c"])
                != Projection.combinationKey(planId: "p", knitIds: ["a", "bc"])
        )
        #expect(
            Projection.combinationKey(planId: "p", knitIds: ["a", "b"])
                != Projection.combinationKey(planId: "p", knitIds: ["b", "a"])
        )
        #expect(
            Projection.combinationKey(planId: "p", knitIds: ["a"])
                == Projection.combinationKey(planId: "p", knitIds: ["a"])
        )
    }
}
