import Glibc
import KnitSystem
public import Testing

/// Tests on a real single-node cluster (`scripts/k8s-cluster up`, about 10 s, root only) run only when asked
/// for: `KNIT_K8S_TESTS=1 swift test --filter …`.
public let kubernetesTestsEnabled = getenv("KNIT_K8S_TESTS").map { String(cString: $0) } == "1"

/// The repository's root, for its scripts.
public let repositoryRoot: String = {
    var path = #filePath
    for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
    return path
}()

/// Starts a cluster before the suite and always stops it after (only the one this trait started).
///
/// The cluster's bridge and ports are fixed, so only one can run per machine: the trait holds an exclusive
/// `flock` on ``lockPath`` from before `up` until after `down`, and suites of different test processes (or
/// worktrees) on one machine wait for each other instead of failing.
public struct KubernetesTestCluster: SuiteTrait, TestScoping {
    @TaskLocal public static var directory: String?

    public static let lockPath = "/run/lock/knit-k8s-cluster.lock"

    public init() {}

    public func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        let lock = try await Self.lockMachineWide(Self.lockPath)
        defer { Self.unlock(lock) }

        let directory = try makeTemporaryDirectory(prefix: "knit-k8s-cluster-")
        let script = repositoryRoot + "/scripts/k8s-cluster"
        var failure: (any Error)?
        do {
            let up = try await runCommand(
                [script, "up", directory],
                environment: Self.environment,
                directory: repositoryRoot,
                timeout: .seconds(900)
            )
            guard up.status == 0 else {
                throw TestFailure("k8s-cluster up failed (\(up.status)): \(up.stderr.suffix(2000))")
            }
            try await Self.$directory.withValue(directory) { try await function() }
        } catch {
            failure = error
        }
        _ = try? await runCommand(
            [script, "down", directory],
            environment: Self.environment,
            directory: repositoryRoot,
            timeout: .seconds(120)
        )
        if let failure { throw failure }
    }

    /// Takes an exclusive `flock` on `path` and answers the descriptor that holds it; while another holds it,
    /// waits asleep rather than inside `flock`. Several suites of one test process wait here at once, more of
    /// them than the cooperative pool has threads (one per core): waiting inside `flock` blocked every thread,
    /// left none to the suite holding the lock, and the whole process hung.
    public static func lockMachineWide(_ path: String) async throws -> Int32 {
        let lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw TestFailure("cannot open \(path): errno \(errno)") }
        while flock(lock, LOCK_EX | LOCK_NB) != 0 {
            let error = errno
            guard error == EWOULDBLOCK || error == EINTR else {
                close(lock)
                throw TestFailure("cannot lock \(path): errno \(error)")
            }
            do { try await Task.sleep(for: .milliseconds(200)) } catch {
                close(lock)
                throw error
            }
        }
        return lock
    }

    public static func unlock(_ lock: Int32) {
        flock(lock, LOCK_UN)
        close(lock)
    }

    public static var environment: [String] {
        var entries = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"]
        if let cache = getenv("KNIT_K8S_CACHE") { entries.append("KNIT_K8S_CACHE=" + String(cString: cache)) }
        return entries
    }
}

extension Trait where Self == KubernetesTestCluster {
    /// A real single-node cluster for the suite; see ``KubernetesTestCluster``.
    public static var kubernetesCluster: Self { Self() }
}
