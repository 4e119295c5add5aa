import Testing

@testable import KnitScheduler

// The hooks file: both layouts, and every way it can be wrong named by file, line and column.

@Suite struct LifecycleHookConfigurationTests {
    @Test func knitsAndKnitfabsLayoutsReadTheSame() throws {
        let expected = LifecycleHookConfiguration(
            before: ["http://gate.example:8080/check", "https://audit.example/before"],
            after: ["http://127.0.0.1:9000/after"]
        )
        let knit = """
            before:
              - http://gate.example:8080/check
              - https://audit.example/before
            after: ["http://127.0.0.1:9000/after"]
            """
        let knitfab = """
            hooks:
              lifecycle-hooks:
                before: [http://gate.example:8080/check, https://audit.example/before]
                after:
                  - http://127.0.0.1:9000/after
            """
        #expect(try LifecycleHookConfiguration.parse(knit, file: "h.yaml") == expected)
        #expect(try LifecycleHookConfiguration.parse(knitfab, file: "h.yaml") == expected)
        let inner = "lifecycle-hooks:\n  after: [http://127.0.0.1:9000/after]\n"
        #expect(try LifecycleHookConfiguration.parse(inner, file: "h.yaml").after == expected.after)
        #expect(try LifecycleHookConfiguration.parse("", file: "h.yaml").isEmpty)
        #expect(try LifecycleHookConfiguration.parse("before:\nafter: []\n", file: "h.yaml").isEmpty)
    }

    @Test(arguments: [
        (
            "before:\n  - http://ok.example/\n  - ftp://x/\n",
            "h.yaml:3:5: error: 'ftp://x/' is not an http:// or https:// URL"
        ),
        ("after: [http:///path]\n", "h.yaml:1:9: error: 'http:///path' has no host"),
        ("after: [\"http://a b/\"]\n", "h.yaml:1:9: error: 'http://a b/' contains a space or a control character"),
        ("before: http://x/\n", "h.yaml:1:9: error: expected a list of URLs, found a scalar"),
        ("befor: []\n", "h.yaml:1:1: error: unknown key 'befor' (expected 'before' or 'after')"),
        ("hooks:\n  lifecycle-hooks: {}\nextra: 1\n", "h.yaml:3:1: error: unknown key 'extra' beside 'hooks'"),
        ("before: [\n", "h.yaml:2:1: error: "),
        ("- http://x/\n", "h.yaml:1:1: error: expected a mapping with 'before' and 'after', found a sequence"),
    ])
    func aBadFileNamesTheLine(text: String, message: String) {
        let error = #expect(throws: LifecycleHookConfigurationError.self) {
            try LifecycleHookConfiguration.parse(text, file: "h.yaml")
        }
        #expect(error?.description.hasPrefix(message) == true, "\(String(describing: error))")
    }

    /// Knitfab's env answer; anything that is not JSON or has no such member gives nothing; a name or value the
    /// container cannot take is a problem (the change is then refused), not silently dropped.
    @Test func theEnvironmentOfAnAnswer() {
        func env(_ type: String?, _ text: String) -> Result<[String: String], HTTPRunHooks.EnvironmentProblem> {
            HTTPRunHooks.environment(contentType: type, body: Array(text.utf8))
        }
        let answer = #"{"knitfabExtension":{"env":{"A":"1","B_2":"x y"}},"other":3}"#
        #expect((try? env("application/json; charset=utf-8", answer).get()) == ["A": "1", "B_2": "x y"])
        #expect((try? env("text/plain", answer).get()) == [:])
        #expect((try? env(nil, answer).get()) == [:])
        #expect((try? env("application/json", "{}").get()) == [:])
        #expect((try? env("application/json", "not json").get()) == [:])
        for (bad, problem) in [
            (#"{"knitfabExtension":{"env":{"A-B":"1"}}}"#, "environment variable name \"A-B\" is not usable"),
            (#"{"knitfabExtension":{"env":{"A":1}}}"#, "environment variable A is not a string"),
            (#"{"knitfabExtension":{"env":["A"]}}"#, "knitfabExtension.env is not an object"),
        ] {
            guard case .failure(let error) = env("application/json", bad) else {
                Issue.record("accepted \(bad)")
                continue
            }
            #expect(error.description == problem)
        }
    }

    @Test func environmentNamesAreShellNames() {
        for good in ["A", "_x", "HOOK_VAR_2"] { #expect(HTTPRunHooks.isVariableName(good), "\(good)") }
        for bad in ["", "2X", "A-B", "A=B", "Ä", "A B"] { #expect(!HTTPRunHooks.isVariableName(bad), "\(bad)") }
    }
}
