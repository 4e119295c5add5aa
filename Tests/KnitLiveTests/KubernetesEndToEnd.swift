import Foundation
import KnitCore
import KnitTestSupport
import KnitTesting
import Testing

extension Live {
    /// The whole product on a real Kubernetes (issue 11): the real `knit` CLI → nginx → knitd → knit-scheduler
    /// `--executor kubernetes` → Jobs, PersistentVolumes and Claims over the store's own Data directories → the
    /// kubelet pulling the plan's image from Knit's registry through the pull Secret → results pulled back.
    /// Every test ends with nothing of the instance left in the cluster (the pull Secret aside).
    @Suite(
        .enabled(if: kubernetesTestsEnabled, "set KNIT_K8S_TESTS=1 to run against a real cluster"),
        .enabled(if: kubernetesEndToEndTools, "needs podman and docker-registry"),
        .kubernetesCluster,
        .kubernetesKnit,
        .serialized
    )
    struct KubernetesEndToEnd {
        /// The quickstart and a second stage over its output and a binary Data, on the cluster and on podman
        /// (a second instance, same inputs, same plans but the image's name): outputs byte for byte, tags,
        /// logs and the lineage graph must be the same, and match what the inputs say they must be.
        @Test func quickstartAndASecondStageGiveWhatPodmanGives() throws {
            let kube = try KubernetesKnit.instance()
            let words = ["one two three four\n", "five six\n"]
            let expectedWords = words.joined().split(whereSeparator: \.isWhitespace).count
            let blob = try makeScratchDirectory(kube.knit, "blob") + "/blob.bin"
            try writeRandomFile(blob, bytes: 300_000)
            let blobBytes = try Data(contentsOf: URL(fileURLWithPath: blob))

            let onCluster = try quickstartChain(kube.knit, image: kube.image, words: words, blob: blob) {
                kube.context()
            }
            let podmanKnit = try KnitInstance()
            defer { podmanKnit.stop() }
            let podman = try LiveScheduler(podmanKnit)
            defer { podman.stop() }
            let onPodman = try quickstartChain(podmanKnit, image: quickstartImage, words: words, blob: blob) {
                podman.logTail()
            }

            // What the inputs say.
            let counted = onCluster.files["count/words"].map { String(decoding: $0, as: UTF8.self) } ?? ""
            #expect(counted.trimmingCharacters(in: .whitespacesAndNewlines) == String(expectedWords))
            #expect(onCluster.files["result/blob.bin"] == blobBytes, "the binary Data came back changed")
            #expect(onCluster.files["result/words"] == onCluster.files["count/words"])
            #expect(onCluster.logs[0].contains("counted \(expectedWords) words"), "log: \(onCluster.logs[0])")
            #expect(onCluster.tags[0].contains("kind:count") && onCluster.tags[1].contains("kind:result"))
            // What podman says.
            #expect(onCluster.files == onPodman.files)
            #expect(onCluster.tags == onPodman.tags)
            #expect(onCluster.logs == onPodman.logs)
            #expect(onCluster.lineage == onPodman.lineage)
            #expect(onCluster.lineage.count >= 7, "lineage: \(onCluster.lineage)")

            // The real pull path: the node's containerd fetched the image from Knit's nginx (which answers 401
            // without credentials) with the scheduler's pull Secret, the scheduler acting as deploy/kubernetes's
            // ServiceAccount.
            #expect(kube.leastPrivilege, "no deploy/kubernetes/: the scheduler ran as the cluster admin")
            #expect(kube.objects(withPullSecret: true).contains("Secret/knit-registry"), "\(kube.objects())")
            let access = (try? String(contentsOfFile: kube.knit.root + "/log/nginx-access.log", encoding: .utf8)) ?? ""
            let registryLines = access.split(separator: "\n").filter { $0.contains(" /v2/") }
            let pulls = registryLines.filter {
                $0.contains("/v2/knit-quickstart/manifests/") && $0.contains(" 200 ") && $0.contains("containerd")
            }
            #expect(!pulls.isEmpty, "no manifest fetched by containerd: \(registryLines.suffix(20))")
            kube.expectNothingLeft()
        }

        /// Two inputs with several Data each: one Run per combination, each Run's Job made once, and tagging a
        /// Data again makes no Run.
        @Test func fanInRunsEveryCombinationExactlyOnce() throws {
            let kube = try KubernetesKnit.instance()
            let knit = kube.knit
            let key = uniqueKey("fan")
            let plan = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "cat /in/a/v /in/b/v > /out/v",
                    inputs: [("/in/a", ["\(key):a"]), ("/in/b", ["\(key):b"])],
                    outputs: [("/out", ["\(key):ab"])],
                    image: kube.image
                )
            )
            let a = try ["a1", "a2"].map { try pushValue(knit, $0, tags: ["\(key):a"]) }
            let b = try ["b1", "b2", "b3"].map { try pushValue(knit, $0, tags: ["\(key):b"]) }
            let runs = try awaitRuns(knit, plan: plan.planId, count: 6, timeout: 120, context: kube.context())
            let values = Dictionary(uniqueKeysWithValues: zip((a + b).map(\.knitId), ["a1", "a2", "b1", "b2", "b3"]))
            var combinations: Set<[String]> = []
            for run in runs {
                #expect(run.status == "done", "\(run.runId): \(String(describing: run.exit))")
                let pair = run.inputs.sorted { $0.path < $1.path }.map(\.knitId)
                combinations.insert(pair)
                let expected = pair.map { (values[$0] ?? "?") + "\n" }.joined()
                #expect(try pullText(knit, run.outputs[0].knitId) == expected)
                let history = kube.jobHistory(run.runId)
                #expect(history.jobUIDs.count == 1 && history.podsCreated == 1, "\(run.runId): \(history)")
            }
            #expect(combinations == Set(a.flatMap { x in b.map { [x.knitId, $0.knitId] } }))
            let tagged = knit.runKnit(["data", "tag", "--add", "\(key):a", a[0].knitId])
            #expect(tagged.status == 0, "\(tagged.stderr)")
            Thread.sleep(forTimeInterval: 3)
            #expect(findRuns(knit, plans: [plan.planId]).count == 6)
            kube.expectNothingLeft()
        }

        @Test func aRunExitingThreeFailsWithExitCodeThree() throws {
            let kube = try KubernetesKnit.instance()
            let key = uniqueKey("exit")
            let run = try singleRun(kube, key: key, script: "echo partial > /out/v; echo about to fail; exit 3")
            #expect(run.status == "failed")
            #expect(run.exit?.code == 3)
            #expect(run.exit?.message.contains("exited with code 3") == true, "\(String(describing: run.exit))")
            #expect(runLog(kube.knit, run.runId).contains("about to fail"))
            let output = try detail(kube.knit, run.outputs[0].knitId)
            #expect(output.tags.contains(try Tag(parsing: "knit#transient:failed")), "\(output.tags)")
            #expect(try pullText(kube.knit, output.knitId) == "partial\n", "a failed output keeps what it wrote")
            kube.expectNothingLeft()
        }

        /// A process over the plan's memory (16Mi): the kernel kills it, the Run fails with 137 and says OOMKilled.
        @Test func aRunOverItsMemoryLimitFailsOOMKilled137() throws {
            let kube = try KubernetesKnit.instance()
            let key = uniqueKey("oom")
            // tail keeps a line in memory until its end: /dev/zero has none.
            let run = try singleRun(kube, key: key, script: "echo allocating; exec tail /dev/zero", memory: "16Mi")
            #expect(run.status == "failed")
            #expect(run.exit?.code == 137, "\(String(describing: run.exit))")
            #expect(run.exit?.message.contains("OOMKilled") == true, "\(String(describing: run.exit))")
            #expect(runLog(kube.knit, run.runId).contains("allocating"))
            kube.expectNothingLeft()
        }

        /// An image the registry does not have: the kubelet cannot pull it, the Run fails 255 [ImageNotFound]
        /// once the scheduler's grace for pull failures is over.
        @Test func anImageTheRegistryLacksFails255ImageNotFound() throws {
            let kube = try KubernetesKnit.instance()
            let key = uniqueKey("noimg")
            let missing = "\(kube.knit.registryHost)/no-such-\(key):1"
            let clock = ContinuousClock()
            let started = clock.now
            let run = try singleRun(kube, key: key, script: "echo never", image: missing, timeout: 180)
            print("missing image: push → failed in \(clock.now - started)")
            // Not before the grace: a registry briefly away must not fail Runs.
            #expect(clock.now - started >= .seconds(KubernetesKnit.pullFailureGraceSeconds))
            #expect(run.status == "failed")
            #expect(run.exit?.code == 255, "\(String(describing: run.exit))")
            #expect(run.exit?.message.hasPrefix("[ImageNotFound]") == true, "\(String(describing: run.exit))")
            #expect(run.exit?.message.contains(missing) == true, "\(String(describing: run.exit))")
            kube.expectNothingLeft()
        }

        /// `knit run stop --fail` aborts (failed 253), `knit run stop` tears off (done 0, outputs kept).
        @Test func abortFailsARunningRunAndTearOffCompletesIt() throws {
            let kube = try KubernetesKnit.instance()
            let knit = kube.knit
            let key = uniqueKey("stop")
            let plan = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "trap 'exit 143' TERM; echo begin; echo kept > /out/v; sleep 120 & wait",
                    inputs: [("/in/x", ["\(key):in"])],
                    outputs: [("/out", ["\(key):out"])],
                    log: ["\(key):log"],
                    image: kube.image
                )
            )
            let data = try ["s1", "s2"].map { try pushValue(knit, $0, tags: ["\(key):in"]) }
            let running = try awaitRuns(
                knit,
                plan: plan.planId,
                count: 2,
                in: ["running"],
                timeout: 90,
                context: kube.context()
            )
            let toAbort = try #require(running.first { $0.inputs[0].knitId == data[0].knitId })
            let toTearOff = try #require(running.first { $0.inputs[0].knitId == data[1].knitId })
            // `running` is the container's process having started; the scripts' first lines are the sign they
            // are past setting their trap.
            let begun = eventually(timeout: 30) {
                runLog(knit, toAbort.runId).hasPrefix("begin") && runLog(knit, toTearOff.runId).hasPrefix("begin")
            }
            #expect(begun, "the Runs' logs never began\n\(kube.context())")

            let clock = ContinuousClock()
            let started = clock.now
            let abort = knit.runKnit(["run", "stop", "--fail", toAbort.runId])
            try #require(abort.status == 0, "knit run stop --fail: \(abort.stderr)")
            let tearOff = knit.runKnit(["run", "stop", toTearOff.runId])
            try #require(tearOff.status == 0, "knit run stop: \(tearOff.stderr)")
            let ended = try awaitRuns(knit, plan: plan.planId, count: 2, timeout: 90, context: kube.context())
            print("abort + tear-off: stop → both finished in \(clock.now - started)")
            let aborted = try #require(ended.first { $0.runId == toAbort.runId })
            let tornOff = try #require(ended.first { $0.runId == toTearOff.runId })
            #expect(aborted.status == "failed")
            #expect(aborted.exit == RunExitJSON(code: 253, message: "aborted by user"))
            #expect(tornOff.status == "done")
            #expect(tornOff.exit == RunExitJSON(code: 0, message: "stopped by user"))
            #expect(try pullText(knit, tornOff.outputs[0].knitId) == "kept\n")
            for run in [aborted, tornOff] { #expect(runLog(knit, run.runId).contains("begin"), "\(run.runId)") }
            kube.expectNothingLeft()
        }

        /// `knit run retry` runs a finished Run again on the cluster (a new Job, new outputs); `knit run rm`
        /// removes it and its outputs.
        @Test func retryRunsAgainAndRemoveDeletesTheRun() throws {
            let kube = try KubernetesKnit.instance()
            let knit = kube.knit
            let key = uniqueKey("retry")
            let first = try singleRun(kube, key: key, script: "cat /in/x/v > /out/v; echo copied")
            #expect(first.status == "done", "\(String(describing: first.exit))")
            let oldOutput = first.outputs[0].knitId
            let firstJob = kube.jobHistory(first.runId)
            #expect(firstJob.jobUIDs.count == 1, "\(firstJob)")

            let retried = knit.runKnit(["run", "retry", first.runId])
            try #require(retried.status == 0, "knit run retry: \(retried.stderr)")
            let again = try awaitRuns(knit, plan: first.plan.planId, count: 1, timeout: 90, context: kube.context())[0]
            #expect(again.runId == first.runId)
            #expect(again.status == "done", "\(String(describing: again.exit))")
            #expect(again.outputs[0].knitId != oldOutput)
            #expect(try pullText(knit, again.outputs[0].knitId) == "\(key)\n")
            #expect(knit.request("GET", "/api/data/\(oldOutput)/").status == 404)
            #expect(runLog(knit, again.runId).contains("copied"))
            let history = kube.jobHistory(first.runId)
            #expect(history.jobUIDs.count == 2 && history.jobUIDs.isSuperset(of: firstJob.jobUIDs), "\(history)")

            let removed = knit.runKnit(["run", "rm", again.runId])
            #expect(removed.status == 0, "knit run rm: \(removed.stderr)")
            #expect(knit.request("GET", "/api/runs/\(again.runId)/").status == 404)
            #expect(knit.request("GET", "/api/data/\(again.outputs[0].knitId)/").status == 404)
            kube.expectNothingLeft()
        }

        /// knit-scheduler SIGKILLed while the Run's pod runs, then started again: it adopts the Job (same uid,
        /// one pod, one Job ever), the Run completes, and its log holds every line once.
        @Test func aSchedulerKilledMidRunAdoptsTheJobAndTheRunCompletesOnce() throws {
            let kube = try KubernetesKnit.instance()
            let knit = kube.knit
            let key = uniqueKey("crash")
            let run = try singleRun(
                kube,
                key: key,
                script: "echo begin; for i in 1 2 3 4 5 6 7 8; do echo tick-$i; sleep 1; done; "
                    + "cat /in/x/v > /out/v; echo end",
                value: "survived",
                until: ["running"]
            )
            let plan = run.plan
            let job = try #require(kube.jobUID(run.runId), "no Job for \(run.runId): \(kube.objects())")
            let pods = kube.podUIDs(run.runId)
            #expect(pods.count == 1)

            try kube.killScheduler()
            Thread.sleep(forTimeInterval: 2)
            try kube.restartScheduler()
            defer { if !kube.scheduler.isRunning { try? kube.restartScheduler() } }
            // Adopted while it still runs: the same Job and pod, no second of either.
            #expect(kube.jobUID(run.runId) == job)
            #expect(kube.podUIDs(run.runId) == pods)

            let done = try awaitRuns(knit, plan: plan.planId, count: 1, timeout: 90, context: kube.context())[0]
            #expect(done.status == "done", "\(String(describing: done.exit))")
            #expect(try pullText(knit, done.outputs[0].knitId) == "survived\n")
            let expectedLog = (["begin"] + (1...8).map { "tick-\($0)" } + ["end"]).map { $0 + "\n" }.joined()
            #expect(runLog(knit, run.runId) == expectedLog)
            let history = kube.jobHistory(run.runId)
            #expect(history.jobUIDs == [job] && history.podsCreated == 1, "\(history)")
            kube.expectNothingLeft()
        }

        /// `knit run show --log -f` prints a running Run's lines as the pod writes them and ends with the Run,
        /// every line once.
        @Test func followingTheLogShowsLinesWhileTheRunRuns() throws {
            let kube = try KubernetesKnit.instance()
            let knit = kube.knit
            let key = uniqueKey("follow")
            let lines = (1...8).map { "line-\($0)" }
            let run = try singleRun(
                kube,
                key: key,
                script: "for i in 1 2 3 4 5 6 7 8; do echo line-$i; sleep 1; done",
                value: "x",
                withOutput: false,
                until: ["running"]
            )
            let plan = run.plan
            let follower = try knit.background(
                knit.knitPath,
                ["run", "show", "--log", "-f", run.runId],
                cwd: knit.projectDirectory("alice"),
                env: ["HOME": knit.userHome("alice")],
                name: "follow"
            )
            var statusWhenSeen = ""
            let seenEarly = eventually(timeout: 30) {
                guard follower.stdoutText.contains("line-1\n") else { return false }
                statusWhenSeen = (try? showRun(knit, run.runId).status) ?? "?"
                return true
            }
            #expect(seenEarly, "nothing followed: \(follower.stdoutText) \(follower.stderrText)")
            #expect(statusWhenSeen == "running", "the first line came only when the Run was \(statusWhenSeen)")
            #expect(follower.wait(timeout: 60), "the follower did not end with the Run")
            #expect(follower.exitStatus == 0, "\(follower.stderrText)")
            #expect(follower.stdoutText == lines.map { $0 + "\n" }.joined(), "followed: \(follower.stdoutText)")
            let done = try awaitRuns(knit, plan: plan.planId, count: 1, timeout: 60, context: kube.context())[0]
            #expect(done.status == "done")
            #expect(runLog(knit, run.runId) == lines.map { $0 + "\n" }.joined())
            kube.expectNothingLeft()
        }

        /// A Job deleted behind Knit's back (by hand with kubectl): the Run fails with 254.
        @Test func aJobDeletedByHandFailsTheRun254() throws {
            let kube = try KubernetesKnit.instance()
            let knit = kube.knit
            let run = try singleRun(
                kube,
                key: uniqueKey("gone"),
                script: "echo waiting; sleep 120",
                value: "x",
                until: ["running"]
            )
            let plan = run.plan
            let clock = ContinuousClock()
            let started = clock.now
            let deleted = kube.kubectlAdmin([
                "delete", "job", "knit-run-\(run.runId)", "-n", kube.namespace, "--wait=false",
            ])
            try #require(deleted.status == 0, "kubectl delete job: \(deleted.stderr)")
            let failed = try awaitRuns(knit, plan: plan.planId, count: 1, timeout: 90, context: kube.context())[0]
            print("Job deleted by hand: delete → Run failed in \(clock.now - started)")
            #expect(failed.status == "failed")
            #expect(failed.exit?.code == 254, "\(String(describing: failed.exit))")
            // Its claims, volumes and the pod being torn down go with the Run, not at the scheduler's next sweep
            // (every 60 s).
            kube.expectNothingLeft(timeout: 30)
        }

        /// A Run no node can take (more memory than the node has): it stays `starting` with the cluster's reason
        /// in `knit run show`, and aborting it still ends it and its objects.
        @Test func aRunNoNodeCanTakeStaysStartingWithTheReasonShown() throws {
            let kube = try KubernetesKnit.instance()
            let knit = kube.knit
            let key = uniqueKey("unsched")
            let plan = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "echo never",
                    inputs: [("/in/x", ["\(key):in"])],
                    outputs: [("/out", ["\(key):out"])],
                    image: kube.image,
                    memory: "4096Gi"
                )
            )
            _ = try pushValue(knit, "x", tags: ["\(key):in"])
            var shown: RunDetailJSON?
            let waiting = eventually(timeout: 90) {
                shown = findRuns(knit, plans: [plan.planId]).first
                return shown?.status == "starting" && shown?.waitingFor?.contains("Insufficient memory") == true
            }
            #expect(
                waiting,
                "\(String(describing: shown?.status)) \(String(describing: shown?.waitingFor))\n\(kube.context())"
            )
            let run = try #require(shown)
            let detailed = try showRun(knit, run.runId)
            #expect(detailed.waitingFor?.contains("Insufficient memory") == true, "\(String(describing: detailed))")
            let abort = knit.runKnit(["run", "stop", "--fail", run.runId])
            try #require(abort.status == 0, "knit run stop --fail: \(abort.stderr)")
            let ended = try awaitRuns(knit, plan: plan.planId, count: 1, timeout: 90, context: kube.context())[0]
            #expect(ended.status == "failed")
            #expect(ended.exit == RunExitJSON(code: 253, message: "aborted by user"))
            #expect(ended.waitingFor == nil)
            kube.expectNothingLeft()
        }

        /// A scheduler whose account may not create the Run's objects (a ServiceAccount bound to no role): the
        /// Run fails 255 [StartFailed] with the API server's refusal, naming who was refused what, and nothing of
        /// it is left behind (it stayed `starting` for good, the refusal only in the scheduler's log, before).
        @Test func anAccountRBACDeniesFailsTheRunWithTheRefusal() throws {
            let kube = try KubernetesKnit.instance()
            let knit = kube.knit
            let made = knit.run(
                knit.packageRoot + "/scripts/k8s-cluster",
                ["sa-kubeconfig", kube.cluster, kube.namespace, "knit-e2e-denied"]
            )
            try #require(made.status == 0, "k8s-cluster sa-kubeconfig: \(made.stderr)")
            let kubeconfig = try #require(made.stdoutText.split(separator: "\n").last.map(String.init))
            try kube.withScheduler(kubeconfig: kubeconfig) { denied in
                let run = try singleRun(kube, key: uniqueKey("denied"), script: "echo never")
                let exit = String(describing: run.exit)
                #expect(run.status == "failed", "\(exit)\n\(denied.stderrText.suffix(3000))")
                #expect(run.exit?.code == 255, "\(exit)")
                let message = run.exit?.message ?? ""
                #expect(message.contains("[StartFailed]"), "\(exit)")
                #expect(message.lowercased().contains("forbidden"), "\(exit)")
                // The server's words: who was refused what.
                #expect(message.contains("serviceaccount:\(kube.namespace):knit-e2e-denied\" cannot "), "\(exit)")
            }
            kube.expectNothingLeft()
        }

        // MARK: - Helpers

        /// One plan `key:in` → `/out` (`key:out`), one pushed Data whose `v` holds `key`; its Run once finished.
        /// A fresh plan over `KEY:in` (output `/out` tagged `KEY:out` unless `withOutput` is false, log `KEY:log`),
        /// one Data holding `value` (the key by default) pushed to it, and its one Run once its status is in
        /// `statuses` (finished by default).
        private func singleRun(
            _ kube: KubernetesKnit,
            key: String,
            script: String,
            value: String? = nil,
            withOutput: Bool = true,
            image: String? = nil,
            memory: String = "32Mi",
            until statuses: Set<String> = finishedRunStatuses,
            timeout: Double = 90
        ) throws -> RunDetailJSON {
            let plan = try applyPlan(
                kube.knit,
                quickstartPlanYAML(
                    script: script,
                    inputs: [("/in/x", ["\(key):in"])],
                    outputs: withOutput ? [("/out", ["\(key):out"])] : [],
                    log: ["\(key):log"],
                    image: image ?? kube.image,
                    memory: memory
                )
            )
            _ = try pushValue(kube.knit, value ?? key, tags: ["\(key):in"])
            return try awaitRuns(
                kube.knit,
                plan: plan.planId,
                count: 1,
                in: statuses,
                timeout: timeout,
                context: kube.context()
            )[0]
        }
    }
}

/// What the user sees of the quickstart chain on one instance, with nothing that differs between two
/// instances by design (ids, times, the image's registry).
private struct ChainResult: Equatable {
    /// `count/…` (the quickstart's output) and `result/…` (the second stage's), pulled.
    var files: [String: Data]
    /// Tags of the two outputs, sorted, with the values of knit#id and knit#timestamp left out.
    var tags: [[String]]
    var logs: [String]
    /// The final output's whole lineage graph, each node and edge described without ids.
    var lineage: [String]
}

private func quickstartChain(
    _ knit: KnitInstance,
    image: String,
    words: [String],
    blob: String,
    context: () -> String
) throws -> ChainResult {
    var quickstart = try String(contentsOfFile: knit.packageRoot + "/examples/quickstart/plan.yaml", encoding: .utf8)
    quickstart = quickstart.replacingOccurrences(of: "\"\(quickstartImage)\"", with: "\"\(image)\"")
    let first = try applyPlan(knit, quickstart)
    let second = try applyPlan(
        knit,
        quickstartPlanYAML(
            script: "cp /in/blob/blob.bin /out/result/blob.bin && cp /in/count/words /out/result/words && echo second",
            inputs: [("/in/count", ["kind:count"]), ("/in/blob", ["kind:blob"])],
            outputs: [("/out/result", ["kind:result"])],
            log: ["kind:result-log"],
            image: image
        )
    )
    let wordsDirectory = try makeScratchDirectory(knit, "words")
    for (index, text) in words.enumerated() {
        try text.write(toFile: wordsDirectory + "/\(index).txt", atomically: true, encoding: .utf8)
    }
    _ = try push(knit, wordsDirectory, tags: ["kind:words"])
    let blobDirectory = try makeScratchDirectory(knit, "blob-data")
    try FileManager.default.copyItem(atPath: blob, toPath: blobDirectory + "/blob.bin")
    _ = try push(knit, blobDirectory, tags: ["kind:blob"])

    let counted = try awaitRuns(knit, plan: first.planId, count: 1, timeout: 120, context: context())[0]
    let result = try awaitRuns(knit, plan: second.planId, count: 1, timeout: 120, context: context())[0]
    for run in [counted, result] {
        #expect(run.status == "done", "\(run.runId): \(String(describing: run.exit))\n\(context())")
    }
    var files: [String: Data] = [:]
    for (name, run) in [("count", counted), ("result", result)] {
        let knitId = run.outputs[0].knitId
        for file in try pulledFiles(knit, knitId) {
            let destination = try makeScratchDirectory(knit, "pulled")
            let pulled = knit.runKnit(["data", "pull", "-x", knitId, destination])
            try #require(pulled.status == 0, "knit data pull: \(pulled.stderr)")
            files["\(name)/\(file)"] = try Data(contentsOf: URL(fileURLWithPath: destination + "/\(knitId)/\(file)"))
        }
    }
    let tags = try [counted, result].map { run in
        try detail(knit, run.outputs[0].knitId).tags.map { tag in
            ["knit#id", "knit#timestamp"].contains(tag.key) ? tag.key : tag.description
        }.sorted()
    }
    let lineage = knit.runKnit(["data", "lineage", "-n", "all", "--format", "json", result.outputs[0].knitId])
    try #require(lineage.status == 0, "knit data lineage: \(lineage.stderr)")
    let graph = try jsonDecoder.decode(KnitGraph.self, from: lineage.stdout)
    return ChainResult(
        files: files,
        tags: tags,
        logs: [runLog(knit, counted.runId), runLog(knit, result.runId)],
        lineage: describeWithoutIds(graph, image: image)
    )
}

/// Each node and edge of a lineage graph as text, with node ids replaced by their position (the graph lists
/// them in discovery order) and ids, times and the image's name left out.
private func describeWithoutIds(_ graph: KnitGraph, image: String) -> [String] {
    let position = Dictionary(graph.nodes.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { first, _ in first })
    let nodes = graph.nodes.map { node in
        let tags = (node.tags.map { Array($0) } ?? []).map { tag in
            ["knit#id", "knit#timestamp"].contains(tag.key) ? tag.key : tag.description
        }.sorted()
        let plan = node.plan.map { plan in
            "\(plan.image.map { $0 == image ? "IMAGE" : $0 } ?? "-") \(plan.name ?? "-") \(plan.args ?? [])"
        }
        return "node \(node.type) start=\(node.start ?? false) tags=\(tags) status=\(node.status ?? "-") "
            + "exit=\(node.exit.map { "\($0.code) \($0.message)" } ?? "-") plan=\(plan ?? "-") path=\(node.path ?? "-")"
    }
    let edges = graph.edges.map { edge in
        "edge \(position[edge.from] ?? -1) → \(position[edge.to] ?? -1) \(edge.type) \(edge.label ?? "-")"
    }
    return nodes + edges
}

private let kubernetesEndToEndTools =
    FileManager.default.isExecutableFile(atPath: "/usr/bin/podman")
    && FileManager.default.isExecutableFile(atPath: "/usr/bin/docker-registry")
