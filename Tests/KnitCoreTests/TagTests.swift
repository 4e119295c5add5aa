import KnitCore
import Testing

@Suite struct TagTests {
    @Test(arguments: [
        ("key:value", "key", "value"),
        ("many:colon:in:tag", "many", "colon:in:tag"),
        ("  spaced key :  spaced value  ", "spaced key", "spaced value"),
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
