import KnitYAML
import Testing

@Suite struct YAMLTests {
    @Test func scalarsKeepTextStyleAndPosition() throws {
        let root = try #require(
            try parseYAML(
                """
                name: train
                count: 1024
                quoted: "1024"
                single: 'it''s'
                empty:
                tilde: ~
                """
            )
        )
        #expect(root.entries?.map(\.key) == ["name", "count", "quoted", "single", "empty", "tilde"])
        #expect(root["name"] == .scalar("train", plain: true, at: YAMLMark(line: 1, column: 7)))
        #expect(root["count"]?.scalar == "1024")
        #expect(root["quoted"] == .scalar("1024", plain: false, at: YAMLMark(line: 3, column: 9)))
        #expect(root["single"]?.scalar == "it's")
        #expect(root["empty"]?.isNull == true)
        #expect(root["tilde"]?.isNull == true)
        #expect(root["quoted"]?.isNull == false)
        #expect(root.entries?[2].keyMark == YAMLMark(line: 3, column: 1))
        #expect(root.mark == YAMLMark(line: 1, column: 1))
    }

    @Test func nestedMappingsAndSequences() throws {
        let root = try #require(
            try parseYAML(
                """
                inputs:
                  - path: /in/1
                    tags:
                      - "type:dataset"
                      - project:x
                  - path: /in/2
                    tags: []
                resources: {cpu: "1", memory: 1Gi}
                flow: [a, b, "c d"]
                """
            )
        )
        let inputs = try #require(root["inputs"]?.items)
        #expect(inputs.count == 2)
        #expect(inputs[0]["path"]?.scalar == "/in/1")
        #expect(inputs[0].mark == YAMLMark(line: 2, column: 5))
        #expect(inputs[0]["tags"]?.items?.compactMap(\.scalar) == ["type:dataset", "project:x"])
        #expect(inputs[0]["tags"]?.items?[1].mark == YAMLMark(line: 5, column: 9))
        #expect(inputs[1]["tags"]?.items?.isEmpty == true)
        #expect(root["resources"]?["cpu"]?.scalar == "1")
        #expect(root["resources"]?["memory"]?.scalar == "1Gi")
        #expect(root["flow"]?.items?.compactMap(\.scalar) == ["a", "b", "c d"])
        #expect(root["flow"]?.kindDescription == "a sequence")
        #expect(root["missing"] == nil)
    }

    @Test func emptyDocumentIsNil() throws {
        #expect(try parseYAML("") == nil)
        #expect(try parseYAML("# only a comment\n") == nil)
    }

    @Test func syntaxErrorNamesLineAndColumn() {
        let error = #expect(throws: YAMLError.self) { try parseYAML("a: [1, 2\nb: 3\n") }
        #expect(error?.code == .syntax)
        #expect(
            error?.description == "2:2: error: did not find expected ',' or ']' (while parsing a flow sequence at 1:4)"
        )
        #expect(
            error?.described(file: "plan.yaml")
                == "plan.yaml:2:2: error: did not find expected ',' or ']' (while parsing a flow sequence at 1:4)"
        )

        let tab = #expect(throws: YAMLError.self) { try parseYAML("a:\n\t- b\n") }
        #expect(tab?.mark.line == 2)
    }

    @Test func duplicateAndComplexKeysAreRejected() {
        let duplicate = #expect(throws: YAMLError.self) { try parseYAML("a: 1\nb: 2\na: 3\n") }
        #expect(duplicate?.description == "3:1: error: duplicate key 'a'")
        let complex = #expect(throws: YAMLError.self) { try parseYAML("? [a, b]\n: 1\n") }
        #expect(complex?.code == .nonScalarKey)
        #expect(complex?.description == "1:3: error: mapping keys must be scalars, not a sequence")
    }

    @Test func aliasesResolveAndUnknownOnesFail() throws {
        let root = try #require(try parseYAML("base: &b {cpu: \"1\"}\nplan: *b\n"))
        #expect(root["plan"]?["cpu"]?.scalar == "1")
        let unknown = #expect(throws: YAMLError.self) { try parseYAML("a: *nope\n") }
        #expect(unknown?.description == "1:4: error: unknown alias '*nope'")
    }

    @Test func aliasExpansionIsBounded() {
        // "Billion laughs": each level doubles ten times; the node budget stops it long before memory does.
        var text = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1...8 {
            let previous = "*l\(level - 1)"
            text += "l\(level): &l\(level) [\(Array(repeating: previous, count: 10).joined(separator: ", "))]\n"
        }
        let error = #expect(throws: YAMLError.self) { try parseYAML(text) }
        #expect(error?.code == .tooManyNodes)
        #expect(error?.problem == "document expands to more than 100000 nodes")
    }

    @Test func depthIsBounded() throws {
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        let error = #expect(throws: YAMLError.self) { try parseYAML(deep) }
        #expect(error?.code == .tooDeep)
        #expect(error?.description == "1:65: error: nesting is deeper than 64 levels")
        let fine = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(try parseYAML(fine) != nil)

        // An alias may not smuggle depth past the limit either.
        let shallow = YAMLLimits(maximumDepth: 3)
        #expect(try parseYAML("a: &x {b: {c: 1}}\n", limits: shallow) != nil)
        let viaAlias = #expect(throws: YAMLError.self) {
            try parseYAML("a: &x {b: 1}\nc: {d: *x}\n", limits: shallow)
        }
        #expect(viaAlias?.code == .tooDeep)
    }

    @Test func sizeIsBounded() {
        let error = #expect(throws: YAMLError.self) {
            try parseYAML(String(repeating: "a", count: 101), limits: YAMLLimits(maximumBytes: 100))
        }
        #expect(error?.code == .tooLarge)
        #expect(error?.description == "1:1: error: document is 101 bytes; the limit is 100")
    }

    @Test func multipleDocumentsAreRejected() {
        let error = #expect(throws: YAMLError.self) { try parseYAML("a: 1\n---\nb: 2\n") }
        #expect(error?.code == .multipleDocuments)
    }

    @Test func emitterOutputParsesBackToTheSameValues() throws {
        let value = YAMLValue.mapping([
            YAMLPair(
                "/home/me/project: x",
                .mapping([
                    YAMLPair("apiRoot", .string("https://127.0.0.1:30803/api")),
                    YAMLPair("cert", .mapping([YAMLPair("ca", .string("LS0tLS1CRUdJTi==\n\"quoted\" \\ tab\t é"))])),
                    YAMLPair(
                        "list",
                        .sequence([.string("no"), .string("1e3"), .string("# not a comment"), .sequence([])])
                    ),
                    YAMLPair("empty", .mapping([])),
                ])
            )
        ])
        let text = value.rendered()
        #expect(text.hasPrefix("\"/home/me/project: x\":\n  \"apiRoot\": \"https://127.0.0.1:30803/api\"\n"))
        let root = try #require(try parseYAML(text))
        let profile = try #require(root["/home/me/project: x"])
        #expect(profile["apiRoot"]?.scalar == "https://127.0.0.1:30803/api")
        #expect(profile["cert"]?["ca"]?.scalar == "LS0tLS1CRUdJTi==\n\"quoted\" \\ tab\t é")
        #expect(profile["list"]?.items?.compactMap(\.scalar) == ["no", "1e3", "# not a comment"])
        #expect(profile["list"]?.items?[3].items?.isEmpty == true)
        #expect(profile["empty"]?.entries?.isEmpty == true)
        #expect(YAMLValue.quoted("a\u{1}b") == "\"a\\u0001b\"")
    }
}
