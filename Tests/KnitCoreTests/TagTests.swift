import KnitCore
import KnitTestSupport
import Testing

@Suite struct TagTests {
    @Test(arguments: [
        ("key:value", "key", "value"),
        ("many:colon:in:tag", "many", "colon:in:tag"),
        ("  spaced key :  spaced value  ", "spaced key", "spaced value"),
        ("\u{3000}全角 key\u{3000}:\u{A0}v e\u{301}\n", "全角 key", "v e\u{301}"),
        ("empty:", "empty", ""),
        ("description: 2 layer CNN + 2 layer Affine", "description", "2 layer CNN + 2 layer Affine"),
        ("データ:値", "データ", "値"),
    ])
    func parsesAtFirstColonAndTrims(text: String, key: String, value: String) throws {
        let tag = try KnitCore.Tag(parsing: text)
        #expect(tag.key == key)
        #expect(tag.value == value)
        #expect(tag.description == "\(key):\(value)")
    }

    @Test func rejectsMissingColonAndEmptyKey() {
        #expect(throws: TagError(text: "nocolon", problem: .missingColon)) { try KnitCore.Tag(parsing: "nocolon") }
        #expect(throws: TagError(text: " :v", problem: .emptyKey)) { try KnitCore.Tag(parsing: " :v") }
        let long = String(repeating: "k", count: KnitCore.Tag.maximumKeyLength + 1) + ":v"
        #expect(throws: TagError.self) { try KnitCore.Tag(parsing: long) }
    }

    /// The control-character check compares scalar values; it must refuse exactly what Unicode's tables call
    /// a control (general category Cc), in the key and in the value.
    @Test func refusesExactlyTheControlCharacters() {
        var refused = 0
        for value in UInt32(0)...0xFFFF {
            guard let scalar = Unicode.Scalar(value) else { continue }
            let isControl = scalar.properties.generalCategory == .control
            for text in ["k:a\(scalar)b", "a\(scalar)b:v"] {
                do {
                    _ = try KnitCore.Tag(parsing: text)
                    #expect(!isControl, "U+\(String(value, radix: 16)) accepted in \(text.debugDescription)")
                } catch {
                    #expect(isControl, "U+\(String(value, radix: 16)) refused: \(error)")
                    refused += 1
                }
            }
        }
        #expect(refused == 2 * 65)
    }

    @Test func caseSensitiveAndSystemKeys() throws {
        #expect(try KnitCore.Tag(parsing: "A:b") != KnitCore.Tag(parsing: "a:b"))
        #expect(try KnitCore.Tag(parsing: "knit#id:x").isSystem)
        #expect(try !KnitCore.Tag(parsing: "knit:x").isSystem)
    }

    @Test func tagSetSortsByteOrderAndDeduplicates() throws {
        let set = TagSet(
            try ["mode:x", "knit#id:1", "format:y", "mode:x", "Mode:z"].map { try KnitCore.Tag(parsing: $0) }
        )
        #expect(set.tags.map(\.description) == ["Mode:z", "format:y", "knit#id:1", "mode:x"])
        var copy = set
        copy.removeKey("mode")
        #expect(copy.count == 3)
        #expect(set.isSuperset(of: TagSet([try KnitCore.Tag(parsing: "format:y")])))
    }

    /// F14/F15: tags that could be stored but never found, removed or drawn are refused.
    @Test(arguments: ["c1:a\u{01}b", "c\u{0}1:x", "esc:\u{1B}[31m", "del:a\u{7F}", "c1:a\u{85}b", "new:line\nbreak"])
    func rejectsControlCharacters(text: String) {
        #expect(throws: TagError.self) { try KnitCore.Tag(parsing: text) }
    }

    @Test func lengthsAreCappedInBytesSoEveryTagCanBeQueried() throws {
        let key = String(repeating: "k", count: KnitCore.Tag.maximumKeyLength)
        let value = String(repeating: "é", count: KnitCore.Tag.maximumValueLength / 2)
        #expect(try KnitCore.Tag(parsing: key + ":" + value).value.utf8.count == KnitCore.Tag.maximumValueLength)
        #expect(throws: TagError.self) { try KnitCore.Tag(parsing: key + "k:v") }
        #expect(throws: TagError.self) { try KnitCore.Tag(parsing: "k:" + value + "é") }
        // 10 KB and 1 MB values were stored but a query for them never reached the server (414).
        #expect(throws: TagError.self) { try KnitCore.Tag(parsing: "k:" + String(repeating: "v", count: 10_000)) }
    }

    @Test func objectFormFollowsTheTextFormRules() throws {
        // {"key":"a:b","value":"c"} showed as a:b:c, which means key a, value b:c: unfindable, unremovable.
        #expect(throws: (any Error).self) {
            _ = try JSONDecoderShim.decode([KnitCore.Tag].self, #"[{"key": "a:b", "value": "c"}]"#)
        }
        #expect(throws: (any Error).self) {
            _ = try JSONDecoderShim.decode([KnitCore.Tag].self, #"[{"key": "c1", "value": "a\u0001b"}]"#)
        }
        let long = String(repeating: "v", count: KnitCore.Tag.maximumValueLength + 1)
        #expect(throws: (any Error).self) {
            _ = try JSONDecoderShim.decode([KnitCore.Tag].self, #"[{"key": "k", "value": "\#(long)"}]"#)
        }
        #expect(throws: TagError(text: "a:b:c", problem: .colonInKey)) {
            try KnitCore.Tag(validatingKey: "a:b", value: "c")
        }
        #expect(try KnitCore.Tag(validatingKey: " k ", value: " v ") == KnitCore.Tag(key: "k", value: "v"))
    }

    /// F4: a tag change is applied in one pass, with Knitfab's order: keys, then tags removed, then added.
    @Test func applyingAChangeMatchesOneByOneEdits() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            func randomTag() -> KnitCore.Tag {
                KnitCore.Tag(
                    key: "k\(Int.random(in: 0..<5, using: &rng))",
                    value: "v\(Int.random(in: 0..<8, using: &rng))"
                )
            }
            let start = TagSet((0..<Int.random(in: 0..<20, using: &rng)).map { _ in randomTag() })
            let removeKeys = (0..<Int.random(in: 0..<3, using: &rng)).map { _ in
                "k\(Int.random(in: 0..<6, using: &rng))"
            }
            let remove = (0..<Int.random(in: 0..<6, using: &rng)).map { _ in randomTag() }
            let add = (0..<Int.random(in: 0..<10, using: &rng)).map { _ in randomTag() }
            var expected = start
            for key in removeKeys { expected.removeKey(key) }
            for tag in remove { expected.remove(tag) }
            for tag in add { expected.insert(tag) }
            let applied = start.applying(removeKeys: removeKeys, remove: remove, add: add)
            #expect(applied == expected)
            #expect(applied.tags == applied.tags.sorted())
            #expect(Set(applied.tags).count == applied.count)
        }
    }

    @Test func decodesStringAndObjectForms() throws {
        let json = #"["a:1", {"key": " b ", "value": " 2 "}]"#
        let tags: [KnitCore.Tag] = try JSONDecoderShim.decode([KnitCore.Tag].self, json)
        #expect(tags == [KnitCore.Tag(key: "a", value: "1"), KnitCore.Tag(key: "b", value: "2")])
        #expect(throws: (any Error).self) { _ = try JSONDecoderShim.decode([KnitCore.Tag].self, #"["nocolon"]"#) }
    }
}

@Suite struct IdentifierTests {
    @Test func makesWellFormedDistinctIds() {
        let a = KnitIdentifier.make()
        let b = KnitIdentifier.make()
        #expect(a != b)
        #expect(KnitIdentifier.isWellFormed(a))
        #expect(a == a.lowercased())
        #expect(!KnitIdentifier.isWellFormed("not-an-id"))
        #expect(!KnitIdentifier.isWellFormed("../../../../etc/passwd/../../../../aaaa"))
    }
}
