import KnitCore
import KnitTestSupport
import Testing

/// KnitJSON.encode writes through a streaming encoder (falling back to the JSONValue tree for container use it
/// cannot stream); both must give exactly the text the tree renders.
@Suite struct JSONStreamTests {
    /// The escaping the renderer had before its byte fast path, one scalar at a time, as the reference.
    static func referenceQuoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    static func text<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try KnitJSON.encode(value), as: UTF8.self)
    }

    static func treeText<T: Encodable>(_ value: T) throws -> String {
        try KnitJSON.encodeValue(value).rendered(indent: 0)
    }

    static let awkwardStrings: [String] = [
        "", "plain", "a/b", "\"", "\\", "\"quoted\" and \\back\\slashed\\",
        "\n\r\t", "\u{0}\u{1}\u{8}\u{b}\u{c}\u{1f}\u{20}\u{7f}",
        "é", "日本語のタグ", "emoji 😀 mid", "😀", "\u{2028}\u{2029}", "e\u{301}",
        "tail escape\n", "\nhead escape", "mixé\"d\\\u{1}😀/",
        String(repeating: "long run of ascii ", count: 40) + "\"" + String(repeating: "é", count: 30),
    ]

    @Test func escapingMatchesTheScalarReference() throws {
        for string in Self.awkwardStrings {
            let expected = Self.referenceQuoted(string)
            #expect(JSONValue.quoted(string) == expected, "quoted \(Array(string.utf8))")
            #expect(try Self.text(string) == expected, "encode \(Array(string.utf8))")
            #expect(try Self.text([string]) == "[\(expected)]")
            #expect(try Self.text(String(Substring("x" + string).dropFirst())) == expected)
        }
        #expect(JSONValue.quoted("\u{1}\u{1f}") == #""\u0001\u001f""#)
        #expect(JSONValue.quoted("a/b") == #""a/b""#)
    }

    @Test func escapedStringsParseBack() throws {
        for string in Self.awkwardStrings {
            let parsed = try #require(JSONValue.parse(try KnitJSON.encode(string)))
            #expect(parsed.stringValue == string)
        }
    }

    @Test func tagsAreEscapedAsKeyColonValue() throws {
        let tags = TagSet([Tag(key: "q\"k", value: "v\\1\n"), Tag(key: "é", value: "😀:/x")])
        #expect(try Self.text(tags) == #"["q\"k:v\\1\n","é:😀:/x"]"#)
        #expect(try Self.text(tags) == Self.treeText(tags))
        #expect(try Self.text(Tag(key: "a", value: "b")) == #""a:b""#)
    }

    @Test func fullDetailMatchesTreeAndOmitsNil() throws {
        let plan = PlanSummaryJSON(
            planId: "p",
            image: "repo/image:1.0",
            entrypoint: ["python", "-c"],
            args: ["print(\"hi\")"],
            annotations: []
        )
        let run = RunSummaryJSON(
            runId: "r",
            status: "failed",
            updatedAt: "2024-05-17T04:19:33.325+00:00",
            exit: RunExitJSON(code: -1, message: "oom\tkilled"),
            plan: plan
        )
        let detail = DataDetailJSON(
            knitId: "k",
            tags: TagSet([Tag(key: "b", value: "2"), Tag(key: "a", value: "1/x")]),
            upstream: DataUpstreamJSON(log: LogPointJSON(tags: [Tag(key: "type", value: "log")]), run: run),
            downstreams: [DataDownstreamJSON(mountpoint: MountpointJSON(path: "/in", tags: []), run: run)],
            nomination: [NominationJSON(path: "/in/2", tags: [Tag(key: "a", value: "1/x")], plan: plan)]
        )
        let text = try Self.text([detail, detail])
        #expect(text == (try Self.treeText([detail, detail])))
        #expect(text.hasPrefix(#"[{"knitId":"k","tags":["a:1/x","b:2"],"upstream":{"log":{"tags":["type:log"]},"run""#))
        #expect(text.contains(#""exit":{"code":-1,"message":"oom\tkilled"}"#))
        #expect(text.contains(#""plan":{"planId":"p","image":"repo/image:1.0","entrypoint":["python","-c"],"#))
        #expect(!text.contains("mountpoint\":null") && !text.contains("\"name\""))
        #expect(try Self.text([DataDetailJSON]()) == "[]")
    }

    @Test func scalarsAndTopLevelValues() throws {
        #expect(try Self.text(42) == "42")
        #expect(try Self.text(-7 as Int64) == "-7")
        #expect(try Self.text(true) == "true")
        #expect(try Self.text(2.5) == "2.5")
        #expect(try Self.text(3.0) == "3")
        #expect(try Self.text(Double.infinity) == "null")
        #expect(try Self.text(UInt8(255)) == "255")
        #expect(try Self.text([Int?.none, 1]) == "[null,1]")
        #expect(try Self.text(["a": 1]) == (try Self.treeText(["a": 1])))
        #expect(try Self.text(Nothing()) == "null")
        #expect(try Self.text([Nothing()]) == "[{}]")
        #expect(try Self.text(Scalars()) == (try Self.treeText(Scalars())))
    }

    @Test func customContainersStreamOrFallBackToTheSameText() throws {
        for value in [
            Custom(mode: .nested), Custom(mode: .twice), Custom(mode: .interleaved), Custom(mode: .superEncoder),
            Custom(mode: .unkeyedNested), Custom(mode: .singleTwice),
        ] {
            let streamed = try Self.text(value)
            #expect(streamed == (try Self.treeText(value)), "\(value.mode)")
            #expect(streamed == (try Self.text([value, value])).dropFirst().prefix(streamed.count).description)
        }
        #expect(try Self.text(Custom(mode: .nested)) == #"{"a":1,"inner":{"x":"y","list":[1,[2]]},"b":true}"#)
        #expect(try Self.text(Custom(mode: .interleaved)) == #"{"inner":{"x":"y","late":2},"a":1}"#)
    }

    @Test func prettyRenderingEscapesLikeCompact() throws {
        let value = JSONValue.object([("k\"", .array([.string("é\n\u{1}"), .number("1"), .null, .bool(false)]))])
        #expect(
            value.rendered(indent: 4) == """
                {
                    "k\\"": [
                        "é\\n\\u0001",
                        1,
                        null,
                        false
                    ]
                }
                """
        )
        #expect(value.rendered(indent: 0) == #"{"k\"":["é\n\u0001",1,null,false]}"#)
        #expect(value.rendered(indent: 2).contains("\n  \"k"))
    }

    @Test func normalizedTagSetEqualsSortedOne() {
        let sorted = [Tag(key: "a", value: "1"), Tag(key: "a", value: "2"), Tag(key: "b", value: "")]
        #expect(TagSet(normalized: sorted) == TagSet(sorted.reversed()))
        #expect(TagSet(normalized: []) == TagSet())
    }
}

/// Encodes nothing at all.
private struct Nothing: Encodable {
    func encode(to encoder: any Encoder) throws {}
}

private struct Scalars: Encodable {
    var a: Int8 = -3
    var b: UInt32 = 7
    var c: Float = 0.5
    var d: Double = 1e300
    var e: String? = nil
    var f: Bool? = false
    var g: [Bool] = [true]
}

/// Uses containers the ways Codable allows but synthesized code never does.
private struct Custom: Encodable {
    enum Mode { case nested, twice, interleaved, superEncoder, unkeyedNested, singleTwice }
    let mode: Mode
    enum Keys: String, CodingKey { case a, b, inner, x, y, list, late }

    func encode(to encoder: any Encoder) throws {
        switch mode {
        case .nested:
            var outer = encoder.container(keyedBy: Keys.self)
            try outer.encode(1, forKey: .a)
            var inner = outer.nestedContainer(keyedBy: Keys.self, forKey: .inner)
            try inner.encode("y", forKey: .x)
            var list = inner.nestedUnkeyedContainer(forKey: .list)
            try list.encode(1)
            var deeper = list.nestedUnkeyedContainer()
            try deeper.encode(2)
            try outer.encode(true, forKey: .b)
        case .twice:
            var first = encoder.container(keyedBy: Keys.self)
            try first.encode(1, forKey: .a)
            var second = encoder.container(keyedBy: Keys.self)
            try second.encode(2, forKey: .b)
        case .interleaved:
            var outer = encoder.container(keyedBy: Keys.self)
            var inner = outer.nestedContainer(keyedBy: Keys.self, forKey: .inner)
            try inner.encode("y", forKey: .x)
            try outer.encode(1, forKey: .a)
            try inner.encode(2, forKey: .late)
        case .superEncoder:
            var outer = encoder.container(keyedBy: Keys.self)
            try outer.encode(1, forKey: .a)
            try "s".encode(to: outer.superEncoder(forKey: .b))
        case .unkeyedNested:
            var list = encoder.unkeyedContainer()
            var object = list.nestedContainer(keyedBy: Keys.self)
            try object.encodeNil(forKey: .a)
            try list.encode("after")
            _ = list.nestedUnkeyedContainer()
        case .singleTwice:
            var single = encoder.singleValueContainer()
            try single.encode(1)
            var again = encoder.singleValueContainer()
            try again.encode(2)
        }
    }
}
