import Foundation
import KnitCore
import KnitSystem
import Testing

@testable import KnitScheduler

private let pullRepositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// When a Run's image is not in the local store, the executor pulls names with a registry host and nothing
/// else. The successful pull through Knit's nginx + registry is in KnitLiveTests/RegistryLiveTests.swift (it
/// needs TLS and tokens); here the decision and the failure path, against real podman.
@Suite struct PodmanPullTests {
    @Test func onlyNamesWithARegistryHostArePulled() {
        #expect(PodmanExecutor.registryHost(of: "127.0.0.1:30803/train:v1") == "127.0.0.1:30803")
        #expect(PodmanExecutor.registryHost(of: "localhost:5000/a/b:1") == "localhost:5000")
        #expect(PodmanExecutor.registryHost(of: "registry.example.org/team/model:2") == "registry.example.org")
        // podman's own namespace for local builds and imports: never pulled.
        #expect(PodmanExecutor.registryHost(of: "localhost/knit-quickstart:1") == nil)
        // Short names would go through registries.conf search lists: never pulled.
        #expect(PodmanExecutor.registryHost(of: "busybox:1") == nil)
        #expect(PodmanExecutor.registryHost(of: "library/busybox") == nil)
    }

    @Test(.enabled(if: findExecutable("podman") != nil))
    func aFailedPullEndsTheStartAsImageNotFoundWithPodmansReason() async throws {
        let podman = try #require(findExecutable("podman"))
        let scratch = NSTemporaryDirectory() + "knit-pull-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        // A cert dir and an auth file as knit-up writes them; nothing listens on the port, so the pull fails
        // fast (connection refused) and the message must carry podman's reason.
        try FileManager.default.createDirectory(atPath: scratch + "/certs", withIntermediateDirectories: true)
        let authfile = scratch + "/auth.json"
        try #"{"auths":{"127.0.0.1:9":{"auth":"a25pdDp4"}}}"#.write(toFile: authfile, atomically: true, encoding: .utf8)
        let executor = PodmanExecutor(
            configuration: .init(
                podmanPath: podman,
                containersConf: pullRepositoryRoot + "/containers/containers.conf",
                instance: "knit-pull-tests",
                commandTimeout: .seconds(20),
                startTimeout: .seconds(30),
                runDirectory: scratch + "/executor",
                registryAuthFile: authfile,
                registryCertDirectory: scratch + "/certs",
                pullTimeout: .seconds(60)
            )
        )
        let runId = "pull-\(UUID().uuidString.prefix(8).lowercased())"
        let logPath = scratch + "/log"
        let launch = RunLaunch(
            ScheduledRun(
                runId: runId,
                planId: "test-plan",
                image: "127.0.0.1:9/knit-missing-\(runId):1",
                entrypoint: nil,
                args: ["true"],
                inputs: [],
                outputs: [],
                logPath: logPath,
                cpuMillis: nil,
                memoryBytes: nil
            )
        )
        let clock = ContinuousClock()
        let started = clock.now
        do {
            try await executor.start(launch)
            Issue.record("start succeeded for an image no registry has")
            try? await executor.cleanup(runId: runId)
        } catch let error as ExecutorError {
            #expect(error.code == .imageNotFound)
            #expect(error.message.contains("pulling it failed"), "\(error.message)")
            #expect(error.message.contains("127.0.0.1:9"), "\(error.message)")
        }
        #expect(clock.now - started < .seconds(60))
        // The failed attempts left nothing: no container, and podman's complaints are not in the Run's log.
        #expect(try await executor.list().contains(runId) == false)
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        #expect(log.isEmpty, "log: \(log)")
    }

    @Test(.enabled(if: findExecutable("podman") != nil))
    func aLocalNameThatIsMissingIsNotPulled() async throws {
        let podman = try #require(findExecutable("podman"))
        let scratch = NSTemporaryDirectory() + "knit-pull-tests-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let executor = PodmanExecutor(
            configuration: .init(
                podmanPath: podman,
                containersConf: pullRepositoryRoot + "/containers/containers.conf",
                instance: "knit-pull-tests",
                runDirectory: scratch
            )
        )
        let runId = "nopull-\(UUID().uuidString.prefix(8).lowercased())"
        let launch = RunLaunch(
            ScheduledRun(
                runId: runId,
                planId: "test-plan",
                image: "localhost/knit-never-built-\(runId):1",
                entrypoint: nil,
                args: nil,
                inputs: [],
                outputs: [],
                logPath: nil,
                cpuMillis: nil,
                memoryBytes: nil
            )
        )
        await #expect(throws: ExecutorError.self) { try await executor.start(launch) }
        do { try await executor.start(launch) } catch let error as ExecutorError {
            #expect(error.code == .imageNotFound)
            #expect(!error.message.contains("pulling it failed"), "\(error.message)")
        }
    }
}
