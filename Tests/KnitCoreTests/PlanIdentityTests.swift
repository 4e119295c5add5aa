import KnitCore
import KnitTestSupport
import Testing

@Suite struct PlanIdentityTests {
    private func identity(_ change: (inout PlanSpecJSON) -> Void) throws -> Plan {
        try Plan(
            validating: makeSpec {
                $0.entrypoint = ["python", "train.py"]
                $0.args = ["--epochs", "3"]
                $0.onNode = OnNodeJSON(may: ["a=1"], must: ["gpu=yes"])
                $0.inputs = [mount("/in/a", "type:a", "p:1"), mount("/in/b", "type:b")]
                $0.outputs = [mount("/out/x", "type:x"), mount("/out/y", "type:y")]
                change(&$0)
            }
        )
    }

    private func expectSame(_ change: (inout PlanSpecJSON) -> Void, sourceLocation: SourceLocation = #_sourceLocation)
        throws
    {
        let base = try identity { _ in }
        let other = try identity(change)
        #expect(base.sameIdentity(as: other), sourceLocation: sourceLocation)
        #expect(base.identityBytes == other.identityBytes, sourceLocation: sourceLocation)
    }

    private func expectDifferent(
        _ change: (inout PlanSpecJSON) -> Void,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let base = try identity { _ in }
        let other = try identity(change)
        #expect(!base.sameIdentity(as: other), sourceLocation: sourceLocation)
        #expect(base.identityBytes != other.identityBytes, sourceLocation: sourceLocation)
    }

    @Test func mutableFieldsAreNotPartOfIdentity() throws {
        try expectSame { $0.active = false }
        try expectSame { $0.resources = ["cpu": "4", "memory": "8Gi"] }
        try expectSame { $0.annotations = ["owner=bob"] }
        try expectSame { $0.serviceAccount = "robot" }
    }

    @Test func orderAndSpellingDoNotMatter() throws {
        try expectSame { $0.inputs = [mount("/in/b", "type:b"), mount("/in/a", "p:1", "type:a", "p:1")] }
        try expectSame { $0.outputs = [mount("/out/y/", "type:y"), mount("/out/x", "type:x")] }
        try expectSame { $0.onNode = OnNodeJSON(may: ["a=1", "a=1"], must: ["gpu=yes"]) }
        try expectSame { $0.log = LogPointJSON(tags: tagSet("type:log", "type:log")) }
        // knit#timestamp requirements compare by instant.
        let utc = try identity { $0.inputs[1] = mount("/in/b", "knit#timestamp:2024-01-01T00:00:00Z") }
        let tokyo = try identity { $0.inputs[1] = mount("/in/b", "knit#timestamp:2024-01-01T09:00:00.000+09:00") }
        #expect(utc.sameIdentity(as: tokyo))
        #expect(utc.identityBytes == tokyo.identityBytes)
    }

    @Test func emptyEntrypointAndArgsEqualAbsent() throws {
        let absent = try identity {
            $0.entrypoint = nil
            $0.args = nil
        }
        let empty = try identity {
            $0.entrypoint = []
            $0.args = []
        }
        #expect(absent.sameIdentity(as: empty))
        #expect(absent.identityBytes == empty.identityBytes)
    }

    @Test func everyIdentityFieldMatters() throws {
        try expectDifferent { $0.image = "localhost:30503/train:v1.1" }
        try expectDifferent { $0.image = "localhost:30503/other:v1.0" }
        try expectDifferent { $0.entrypoint = ["python", "-u", "train.py"] }
        try expectDifferent { $0.entrypoint = nil }
        try expectDifferent { $0.args = ["--epochs", "4"] }
        // Same items, moved from entrypoint to args: argument order and placement are meaningful.
        try expectDifferent {
            $0.entrypoint = ["python"]
            $0.args = ["train.py", "--epochs", "3"]
        }
        try expectDifferent { $0.args = ["3", "--epochs"] }
        try expectDifferent { $0.inputs[0] = mount("/in/a", "type:a") }
        try expectDifferent { $0.inputs[0] = mount("/in/c", "type:a", "p:1") }
        try expectDifferent { $0.inputs.append(mount("/in/c", "type:c")) }
        try expectDifferent { $0.outputs.removeLast() }
        try expectDifferent { $0.outputs[0] = mount("/out/x", "type:x", "extra:1") }
        try expectDifferent { $0.log = nil }
        try expectDifferent { $0.log = LogPointJSON(tags: []) }
        try expectDifferent { $0.log = LogPointJSON(tags: tagSet("type:other")) }
        try expectDifferent { $0.onNode = nil }
        try expectDifferent { $0.onNode = OnNodeJSON(prefer: ["a=1"], must: ["gpu=yes"]) }
        // An input moved to the outputs with the same path and tags is a different plan.
        try expectDifferent {
            $0.inputs = [mount("/in/a", "type:a", "p:1")]
            $0.outputs = [mount("/in/b", "type:b"), mount("/out/x", "type:x"), mount("/out/y", "type:y")]
        }
    }

    @Test func identityBytesAreUnambiguous() throws {
        // Strings that would concatenate alike are told apart by their lengths.
        let a = try identity { $0.args = ["ab", "c"] }
        let b = try identity { $0.args = ["a", "bc"] }
        #expect(a.identityBytes != b.identityBytes)
        let c = try identity {
            $0.entrypoint = ["x"]; $0.args = []
        }
        let d = try identity {
            $0.entrypoint = []; $0.args = ["x"]
        }
        #expect(c.identityBytes != d.identityBytes)
    }
}
