import KnitCore
import KnitTestSupport
import Testing

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

enum JSONDecoderShim {
    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }
}

@Suite struct JSONTests {
    @Test func encoderKeepsDeclarationOrderAndOmitsNil() throws {
        let detail = DataDetailJSON(
            knitId: "k",
            tags: TagSet([KnitCore.Tag(key: "b", value: "2"), KnitCore.Tag(key: "a", value: "1/x")]),
            upstream: DataUpstreamJSON(
                mountpoint: MountpointJSON(path: "/upload", tags: []),
                run: RunSummaryJSON(
                    runId: "r",
                    status: "done",
                    updatedAt: "t",
                    plan: PlanSummaryJSON(planId: "p", name: "knit#uploaded")
                )
            )
        )
        let text = String(decoding: try KnitJSON.encode(detail), as: UTF8.self)
        #expect(
            text
                == #"{"knitId":"k","tags":["a:1/x","b:2"],"upstream":{"mountpoint":{"path":"/upload","tags":[]},"run":{"runId":"r","status":"done","updatedAt":"t","plan":{"planId":"p","name":"knit#uploaded"}}},"downstreams":[],"nomination":[]}"#
        )
        let decoded = try JSONDecoderShim.decode(DataDetailJSON.self, text)
        #expect(decoded == detail)
    }

    @Test func prettyPrintsWithFourSpaces() throws {
        let value = try #require(JSONValue.parse(Array(#"{"a":[1,{"b":"x\ny"}],"c":{},"d":[]}"#.utf8)))
        #expect(
            value.rendered(indent: 4) == """
                {
                    "a": [
                        1,
                        {
                            "b": "x\\ny"
                        }
                    ],
                    "c": {},
                    "d": []
                }
                """
        )
    }

    @Test func parserRejectsInvalidAndHandlesEscapes() throws {
        #expect(JSONValue.parse(Array("{".utf8)) == nil)
        #expect(JSONValue.parse(Array("[1,]".utf8)) == nil)
        #expect(JSONValue.parse(Array("\"a".utf8)) == nil)
        #expect(JSONValue.parse(Array("1 2".utf8)) == nil)
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(JSONValue.parse(Array(deep.utf8)) == nil)
        let unicode = try #require(JSONValue.parse(Array(#""\u00e9\ud83d\ude00""#.utf8)))
        #expect(unicode.stringValue == "é😀")
    }

    @Test func apiErrorBodyCarriesMessageAndParts() throws {
        let error = KnitAPIError.conflict("there are equivalent plan", see: "plan-1")
        let text = String(decoding: try KnitJSON.encode(error.body), as: UTF8.self)
        #expect(text == #"{"message":"there are equivalent plan","reason":"there are equivalent plan","see":"plan-1"}"#)
    }

    @Test func tagChangeUsesSnakeCaseKey() throws {
        let change = try JSONDecoderShim.decode(TagChangeJSON.self, #"{"remove_key":["a"],"add":["b:1"]}"#)
        #expect(change.removeKey == ["a"])
        #expect(change.add == [KnitCore.Tag(key: "b", value: "1")])
        #expect(change.remove.isEmpty)
    }
}
