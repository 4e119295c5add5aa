import Foundation
import KnitSystem
import KnitTestSupport
import Testing

/// deploy/kubernetes/: what a cluster admin applies for knit-scheduler.
struct DeployManifestsTests {
    static let directory = repositoryRoot + "/deploy/kubernetes"
    static let files = [
        "namespace.yaml", "serviceaccount.yaml", "role.yaml", "rolebinding.yaml", "clusterrole.yaml",
        "clusterrolebinding.yaml",
    ]

    @Test func everyManifestPassesKubernetesValidateStrict() throws {
        let present = listDirectory(Self.directory).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(present == Self.files.sorted())
        #expect(try strictValidationFailures(files: Self.files.map { Self.directory + "/" + $0 }) == [])
    }

    @Test func theValidatorRejectsAManifestWithAnUnknownField() throws {
        let scratch = TemporaryDirectory()
        let role = try #require(readText(Self.directory + "/role.yaml"))
        scratch.write("role.yaml", role.replacingOccurrences(of: "verbs: [\"create\"]", with: "verb: [\"create\"]"))
        #expect(try strictValidationFailures(files: [scratch.file("role.yaml")]).count == 2)
    }
}
