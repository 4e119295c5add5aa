import Glibc
import KnitSystem
import KnitTestSupport
import Testing

/// The machine-wide cluster lock of `.kubernetesCluster`, without a cluster.
struct ClusterLockTests {
    /// More waiters than the cooperative pool has threads, as when several suites of this target start at once:
    /// work on the pool must still run while they wait, and each gets the lock in turn. With the waiting inside
    /// `flock` this test (like the suites before it) hangs instead.
    @Test func waitersForTheClusterLockHoldNoThread() async throws {
        let directory = try makeTemporaryDirectory(prefix: "knit-cluster-lock-")
        defer { try? removeTree(directory) }
        let path = directory + "/lock"
        let held = try await KubernetesTestCluster.lockMachineWide(path)
        let waiters = (0..<(2 * Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) + 2)).map { _ in
            Task {
                let lock = try await KubernetesTestCluster.lockMachineWide(path)
                KubernetesTestCluster.unlock(lock)
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(await Task { 6 * 7 }.value == 42)
        // A second holder at the same time is refused while the first holds it.
        let other = open(path, O_RDWR | O_CLOEXEC)
        defer { close(other) }
        #expect(flock(other, LOCK_EX | LOCK_NB) != 0)
        KubernetesTestCluster.unlock(held)
        for waiter in waiters { try await waiter.value }
    }
}
