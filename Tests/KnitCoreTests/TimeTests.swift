import KnitTestSupport
import Testing

@testable import KnitCore

@Suite struct KnitTimeTests {
    @Test(arguments: [
        ("2024-11-19T05:24:36.964+00:00", "2024-11-19T05:24:36.964+00:00"),
        ("2024-11-19T05:24:36.960Z", "2024-11-19T05:24:36.96+00:00"),
        ("2024-11-19T05:24:36Z", "2024-11-19T05:24:36+00:00"),
        ("2024-11-19T14:24:36.5+09:00", "2024-11-19T05:24:36.5+00:00"),
        ("2000-02-29T23:59:59.999-01:30", "2000-03-01T01:29:59.999+00:00"),
        ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.5+00:00"),
        ("2024-05-17 04:19:33.325123+00:00", "2024-05-17T04:19:33.325+00:00"),
    ])
    func rendersKnitfabFormat(input: String, expected: String) throws {
        #expect(try KnitTime(rfc3339: input).description == expected)
    }

    @Test func roundTripsEpochAndOrdering() throws {
        #expect(KnitTime(milliseconds: 0).description == "1970-01-01T00:00:00+00:00")
        let a = try KnitTime(rfc3339: "2024-01-01T00:00:00Z")
        let b = try KnitTime(rfc3339: "2024-01-01T09:00:00+09:00")
        #expect(a == b)
        #expect(try KnitTime(rfc3339: a.description) == a)
    }

    @Test(arguments: [
        "2024-13-01T00:00:00Z", "2023-02-29T00:00:00Z", "2024-01-01", "yesterday", "2024-01-01T00:00:00",
        "2024-01-01T25:00:00Z", "",
    ])
    func rejectsInvalidRFC3339(text: String) {
        #expect(throws: TimeParseError.self) { try KnitTime(rfc3339: text) }
    }

    @Test func looseFormsUseDefaultOffset() throws {
        let utc = try #require(KnitTime.parseLoose("2024-01-01", defaultOffsetMinutes: 0))
        #expect(utc.description == "2024-01-01T00:00:00+00:00")
        let hour = try #require(KnitTime.parseLoose("2024-01-01 12", defaultOffsetMinutes: 60))
        #expect(hour.description == "2024-01-01T11:00:00+00:00")
        #expect(
            KnitTime.parseLoose("2024-01-01T12:30", defaultOffsetMinutes: 0)?.description == "2024-01-01T12:30:00+00:00"
        )
        #expect(
            KnitTime.parseLoose("2024-01-01T12:30Z", defaultOffsetMinutes: 600)?.description
                == "2024-01-01T12:30:00+00:00"
        )
        #expect(KnitTime.parseLoose("soon", defaultOffsetMinutes: 0) == nil)
    }

    @Test func goDurations() {
        #expect(parseGoDuration("300ms") == 300)
        #expect(parseGoDuration("1.5h") == 5_400_000)
        #expect(parseGoDuration("2h45m") == 9_900_000)
        #expect(parseGoDuration("0") == 0)
        #expect(parseGoDuration("1500us") == 1)
        #expect(parseGoDuration("-1h") == nil)
        #expect(parseGoDuration("1d") == nil)
        #expect(parseGoDuration("h") == nil)
        #expect(parseGoDuration("") == nil)
    }

    @Test func fastRenderingMatchesGeneralRendering() {
        var samples: [Int64] = [
            0, 1, 10, 100, 120, 999, 1000, -1, -999, -1000, -1001, 951_782_400_000, 1_715_919_573_325,
            1_715_919_573_300, 1_715_919_573_000, 253_402_300_799_999, 253_402_300_800_000, -62_167_219_200_000,
            -62_167_219_200_001, 4_102_444_800_000, 68_169_600_000, 951_868_799_999,
        ]
        var state: UInt64 = 0x1234_5678_9ABC_DEF1
        for _ in 0..<20_000 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            samples.append(Int64(bitPattern: state % 400_000_000_000_000) - 100_000_000_000_000)
        }
        for milliseconds in samples {
            for offset in [0, 540, -90] {
                let time = KnitTime(milliseconds: milliseconds)
                let expected = time.renderGeneral(offsetMinutes: offset)
                let got = time.render(offsetMinutes: offset)
                if got != expected {
                    Issue.record("\(milliseconds)@\(offset): \(got) != \(expected)")
                    return
                }
            }
        }
        #expect(KnitTime(milliseconds: 1_715_919_573_320).description == "2024-05-17T04:19:33.32+00:00")
        #expect(KnitTime(milliseconds: 1_715_919_573_000).description == "2024-05-17T04:19:33+00:00")
    }
}
