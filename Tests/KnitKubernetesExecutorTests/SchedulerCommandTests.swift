import Glibc
import KnitSystem
import KnitTestSupport
import Testing

/// `knit-scheduler --executor kubernetes` as a process, without a cluster: refusals at start, and an API
/// server that does not answer.
struct SchedulerCommandTests {
    @Test func aMissingKubeconfigOrBadVolumesEndsTheSchedulerWithExit2AndTheReason() async throws {
        let directory = scratchDirectory()
        defer { try? removeTree(directory) }
        let missing = try SchedulerProcess(["--executor", "kubernetes", "--kubeconfig", directory + "/absent"])
        #expect(try await missing.waitForExit() == KnitSystem.ExitStatus(code: 2))
        #expect(missing.log.contains("cannot use the Kubernetes cluster"), "\(missing.log)")
        #expect(missing.log.contains("--kubeconfig \(directory)/absent does not exist"), "\(missing.log)")

        let config = KubernetesSetupTests.kubeconfig(server: "https://127.0.0.1:1", in: directory)
        let badVolumes = try SchedulerProcess([
            "--executor", "kubernetes", "--kubeconfig", config, "--volumes", "nfs://server-only",
        ])
        #expect(try await badVolumes.waitForExit() == KnitSystem.ExitStatus(code: 2))
        #expect(badVolumes.log.contains("--volumes: volumes \"nfs://server-only\""), "\(badVolumes.log)")
    }

    @Test func kubernetesFlagsWithoutTheKubernetesExecutorAreAUsageError() async throws {
        let withPodman = try SchedulerProcess(["--namespace", "knit"])
        #expect(try await withPodman.waitForExit() == KnitSystem.ExitStatus(code: 64))
        #expect(withPodman.log.contains("--namespace needs --executor kubernetes"), "\(withPodman.log)")
        let badExecutor = try SchedulerProcess(["--executor", "docker"])
        #expect(try await badExecutor.waitForExit() == KnitSystem.ExitStatus(code: 64))
        #expect(badExecutor.log.contains("docker"), "\(badExecutor.log)")
    }

    /// `--cgroup-manager` (systemd under systemd, see installer/knit-up) is podman's only: a typo or a cluster
    /// executor stops the scheduler before it does anything.
    @Test func aCgroupManagerIsCgroupfsOrSystemdAndOnlyForPodman() async throws {
        let typo = try SchedulerProcess(["--cgroup-manager", "cgroupv2"])
        #expect(try await typo.waitForExit() == KnitSystem.ExitStatus(code: 64))
        #expect(typo.log.contains("--cgroup-manager must be cgroupfs or systemd, not 'cgroupv2'"), "\(typo.log)")
        let directory = scratchDirectory()
        defer { try? removeTree(directory) }
        let config = KubernetesSetupTests.kubeconfig(server: "https://127.0.0.1:1", in: directory)
        let onKubernetes = try SchedulerProcess([
            "--executor", "kubernetes", "--kubeconfig", config, "--cgroup-manager", "systemd",
        ])
        #expect(try await onKubernetes.waitForExit() == KnitSystem.ExitStatus(code: 64))
        #expect(onKubernetes.log.contains("--cgroup-manager needs --executor podman"), "\(onKubernetes.log)")
    }

    /// As with a podman that misbehaves, a cluster that is away is waited for, not a reason to exit; a stop
    /// signal still ends the wait at once.
    @Test func anAPIServerThatDoesNotAnswerIsAskedAgainUntilTheSchedulerIsStopped() async throws {
        let directory = scratchDirectory()
        defer { try? removeTree(directory) }
        let config = KubernetesSetupTests.kubeconfig(server: "https://127.0.0.1:1", in: directory)
        let scheduler = try SchedulerProcess(["--executor", "kubernetes", "--kubeconfig", config])
        let retried = await scheduler.waitForLog("retry.seconds=2")
        #expect(retried, "\(scheduler.log)")
        #expect(scheduler.log.contains("the Kubernetes API server does not answer; trying again"))
        #expect(!scheduler.log.contains("knit-scheduler running"))
        #expect(try await scheduler.stop() == KnitSystem.ExitStatus(code: 0))
        #expect(scheduler.log.contains("stopped before the Kubernetes API server answered"), "\(scheduler.log)")
    }
}
