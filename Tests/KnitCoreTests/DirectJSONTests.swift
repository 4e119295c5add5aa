import Testing

@testable import KnitCore

/// The hand-written writers of a tag query's answer must give exactly the bytes of the Codable path
/// (Knitfab's CLI and existing clients read them): compared over many varied values, every optional both
/// present and absent, empty and long lists, and strings that need escaping.
@Suite struct DirectJSONTests {
    /// SplitMix64: a fixed seed gives the same values on every run, so a failure can be reproduced.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let texts: [String] = [
        "", "plain", "a/b", "\"", "\\", "\"quoted\" and \\back\\slashed\\", "\n\r\t",
        "\u{0}\u{1}\u{8}\u{b}\u{c}\u{1f}\u{20}\u{7f}", "é", "日本語のタグ", "emoji 😀 mid", "\u{2028}\u{2029}",
        "e\u{301}", "tail escape\n", "mixé\"d\\\u{1}😀/", String(repeating: "long ", count: 300),
        "ci5e1c4b-7b1e-4c3e-9a57-2f4e1c0d9b11", "2026-12-05T14:41:09.123+00:00", "knit#uploaded",
    ]

    static func text(_ random: inout Generator) -> String {
        // Sometimes a Substring-backed or concatenated string, whose storage differs from a literal's.
        let base = texts.randomElement(using: &random)!
        switch random.next() % 3 {
        case 0: return base
        case 1: return String(Substring("x" + base).dropFirst())
        default: return base + texts.randomElement(using: &random)!
        }
    }

    static func maybe<T>(_ random: inout Generator, _ make: (inout Generator) -> T) -> T? {
        random.next() % 2 == 0 ? nil : make(&random)
    }

    static func list<T>(_ random: inout Generator, upTo limit: UInt64, _ make: (inout Generator) -> T) -> [T] {
        (0..<Int(random.next() % (limit + 1))).map { _ in make(&random) }
    }

    static func tags(_ random: inout Generator) -> TagSet {
        TagSet(list(&random, upTo: 5) { Tag(key: text(&$0), value: text(&$0)) })
    }

    static func plan(_ random: inout Generator) -> PlanSummaryJSON {
        PlanSummaryJSON(
            planId: text(&random),
            image: maybe(&random, text),
            name: maybe(&random, text),
            entrypoint: maybe(&random) { list(&$0, upTo: 3, text) },
            args: maybe(&random) { list(&$0, upTo: 3, text) },
            annotations: maybe(&random) { list(&$0, upTo: 3, text) }
        )
    }

    static func run(_ random: inout Generator) -> RunSummaryJSON {
        let codes = [0, 1, -1, 9, 10, 137, 255, Int.max, Int.min]
        return RunSummaryJSON(
            runId: text(&random),
            status: text(&random),
            updatedAt: text(&random),
            exit: maybe(&random) { RunExitJSON(code: codes.randomElement(using: &$0)!, message: text(&$0)) },
            plan: plan(&random)
        )
    }

    static func mountpoint(_ random: inout Generator) -> MountpointJSON {
        MountpointJSON(path: text(&random), tags: tags(&random))
    }

    static func detail(_ random: inout Generator) -> DataDetailJSON {
        DataDetailJSON(
            knitId: text(&random),
            tags: tags(&random),
            upstream: DataUpstreamJSON(
                mountpoint: maybe(&random, mountpoint),
                log: maybe(&random) { LogPointJSON(tags: tags(&$0)) },
                run: run(&random)
            ),
            downstreams: list(&random, upTo: 3) { DataDownstreamJSON(mountpoint: mountpoint(&$0), run: run(&$0)) },
            nomination: list(&random, upTo: 3) {
                NominationJSON(path: text(&$0), tags: tags(&$0), plan: plan(&$0))
            },
            creator: maybe(&random, text)
        )
    }

    @Test func aTagQueryAnswerIsByteIdenticalToTheCodablePath() throws {
        var random = Generator(state: 13)
        for size in [0, 1, 2, 10, 50] {
            for _ in 0..<40 {
                let answer = (0..<size).map { _ in Self.detail(&random) }
                let direct = try KnitJSON.encode(answer)
                let codable = try KnitJSON.encodeThroughCodable(answer)
                #expect(direct == codable, "\(String(decoding: codable, as: UTF8.self))")
            }
        }
        // Each embedded shape on its own, too (other answers may come to use them).
        for _ in 0..<200 {
            let detail = Self.detail(&random)
            #expect(try KnitJSON.encode(detail) == KnitJSON.encodeThroughCodable(detail))
            #expect(try KnitJSON.encode(detail.upstream) == KnitJSON.encodeThroughCodable(detail.upstream))
            #expect(try KnitJSON.encode(detail.upstream.run) == KnitJSON.encodeThroughCodable(detail.upstream.run))
        }
    }

    @Test func theQueryAnswerTakesTheDirectWriters() {
        var random = Generator(state: 1)
        #expect(([DataDetailJSON]() as Any) is any DirectJSON)
        #expect((Self.detail(&random) as Any) is any DirectJSON)
    }

    /// A stored property added to one of these types must be written by its writer and varied by the
    /// generator above; this count makes such an addition fail here until both are done.
    @Test func everyFieldOfTheWrittenShapesIsCovered() {
        var random = Generator(state: 7)
        let detail = Self.detail(&random)
        let counts: [(Any, Int)] = [
            (detail, 6), (detail.upstream, 3), (detail.upstream.run, 5), (detail.upstream.run.plan, 6),
            (RunExitJSON(code: 0, message: ""), 2), (MountpointJSON(path: "", tags: []), 2),
            (LogPointJSON(tags: []), 1),
            (DataDownstreamJSON(mountpoint: MountpointJSON(path: "", tags: []), run: detail.upstream.run), 2),
            (NominationJSON(path: "", tags: [], plan: detail.upstream.run.plan), 3),
        ]
        for (value, count) in counts {
            #expect(Mirror(reflecting: value).children.count == count, "\(type(of: value))")
        }
    }
}
