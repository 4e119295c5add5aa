import Foundation
import KnitCore
import KnitTesting
import Testing

extension Live {
    /// `knitadm backup`, `restore` and `fsck` against a serving instance: real knitd, nginx, knit-scheduler with
    /// podman, and the real binaries.
    @Suite(.knitInstance(), .enabled(if: podmanAvailable))
    struct BackupLive {
        /// A chain is run, then backed up while uploads go on; the home's store is destroyed and restored, and
        /// every Data (bytes and detail), Plan, Run, log and lineage edge the API showed before is there again,
        /// identical; the restored instance goes on running the chain.
        @Test func backupUnderLoadRestoresEverythingIdentically() throws {
            let knit = try LiveKnit.instance()
            let scheduler = try LiveScheduler(knit)
            defer { scheduler.stop() }
            let key = uniqueKey("bak")
            let first = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script:
                        "echo \"first $(cat /in/x/v)\"; cat /in/x/v > /out/y/v; mkdir /out/y/d; echo z > /out/y/d/z",
                    inputs: [("/in/x", ["\(key):in"])],
                    outputs: [("/out/y", ["\(key):mid"])],
                    log: ["\(key):log1"]
                )
            )
            let second = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "echo second; echo \"$(cat /in/x/v)+b\" > /out/y/v",
                    inputs: [("/in/x", ["\(key):mid"])],
                    outputs: [("/out/y", ["\(key):final"])],
                    log: ["\(key):log2"]
                )
            )
            var pushed = try ["v1", "v2"].map { try pushValue(knit, $0, tags: ["\(key):in", "kind:value"]) }
            let bulkSource = try makeScratchDirectory(knit, "bulk")
            try writeRandomFile(bulkSource + "/payload.bin", bytes: 3 << 20)
            try FileManager.default.createSymbolicLink(atPath: bulkSource + "/link", withDestinationPath: "payload.bin")
            pushed.append(try push(knit, bulkSource, tags: ["kind:bulk"]))
            _ = try awaitRuns(knit, plan: first.planId, count: 2, timeout: 60, context: scheduler.logTail())
            _ = try awaitRuns(knit, plan: second.planId, count: 2, timeout: 60, context: scheduler.logTail())
            let before = try apiState(knit, plans: [first.planId, second.planId], data: pushed.map(\.knitId))
            #expect(before.runs.count == 4 + pushed.count, "4 plan Runs and one upload Run per push")
            let originals = try makeScratchDirectory(knit, "originals")
            for knitId in before.knitIds {
                let copied = knit.run("/bin/cp", ["-a", knit.home + "/data/" + knitId, originals + "/" + knitId])
                try #require(copied.status == 0, "cp: \(copied.stderr)")
            }

            // Uploads all through the backup: a slow one in progress from start to end, and quick ones.
            let slowBody = try makeScratchDirectory(knit, "slow") + "/body.tar.gz"
            try makeValidArchive(knit, slowBody, bytes: 256 << 10)
            let slow = try startSlowUpload(knit, bodyPath: slowBody, chunk: 4096, interval: 0.2)
            #expect(eventually(timeout: 15) { slow.stdoutText.contains("started") })
            let quick = QuickPushes(knit, key: key)
            quick.start()
            #expect(eventually(timeout: 30) { quick.finished >= 1 }, "no quick push finished")
            let backupDirectory = knit.root + "/backup-\(key)"
            let backedUp = knit.knitadm(["backup", backupDirectory])
            quick.stop()
            try #require(backedUp.status == 0, "knitadm backup: \(backedUp.stderr)")
            let report = try #require(jsonObject(backedUp), "\(backedUp.stdoutText)")
            let manifest = try readManifest(backupDirectory)
            let backedUpIds = Set(manifest.data.map(\.knitId))
            #expect(backedUpIds.isSuperset(of: before.knitIds))
            #expect(backedUpIds.isSuperset(of: quick.pushedBeforeBackup), "pushes that ended before the backup")
            #expect(manifest.missing.isEmpty)
            #expect((report["linkedFiles"] as? Int ?? 0) > 0, "Data are hard-linked: \(backedUp.stdoutText)")
            #expect(report["copiedFiles"] as? Int == 0, "nothing ended is copied on one file system")
            #expect(slow.isRunning, "the slow upload was in progress all through the backup")

            // Restoring into a home in use is refused, naming the process.
            let refused = knit.knitadm(["restore", backupDirectory])
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("in use by process \(knit.knitdPID ?? -1)"), "\(refused.stderr)")

            slow.stop(signal: SIGKILL, grace: 5)
            scheduler.stop()
            #expect(knit.killKnitd(signal: SIGTERM) != nil)
            for directory in ["db", "data", "staging"] {
                try FileManager.default.removeItem(atPath: knit.home + "/" + directory)
            }
            let restored = knit.knitadm(["restore", backupDirectory])
            try #require(restored.status == 0, "knitadm restore: \(restored.stderr)")
            try knit.restartKnitd()
            let after = try apiState(knit, plans: [first.planId, second.planId], data: pushed.map(\.knitId))
            // Besides the backup's Data, only Data of Runs that had not ended (the uploads that were in
            // progress are dropped by knitd's start-up recovery).
            let inFlightIds = Set(manifest.inFlight.map(\.knitId))
            let lost = backedUpIds.union(inFlightIds).subtracting(after.allKnitIds)
            #expect(lost.isEmpty, "lost: \(lost.map { "\($0) in flight: \(inFlightIds.contains($0))" })")
            let processing = Tag(key: "knit#transient", value: "processing")
            for knitId in after.allKnitIds.subtracting(backedUpIds) {
                let tags = try detail(knit, knitId).tags
                #expect(tags.contains(processing), "\(knitId) is in no backup, yet not processing: \(tags)")
            }
            for (knitId, detail) in before.details {
                #expect(after.details[knitId] == detail, "Data detail of \(knitId) (tags, lineage, nomination)")
            }
            for (path, body) in before.documents {
                #expect(after.documents[path] == body, "GET \(path) differs after restore")
            }
            for knitId in before.knitIds {
                #expect(
                    treeDifferences(knit, originals + "/" + knitId, knit.home + "/data/" + knitId) == nil,
                    "bytes of \(knitId)"
                )
            }
            for (index, value) in quick.values where backedUpIds.contains(index) {
                #expect(try pullText(knit, index) == value + "\n")
            }
            let fsck = knit.knitadm(["fsck"])
            #expect(fsck.status == 0, "fsck after restore: \(fsck.stdoutText)")

            // The restored instance goes on: a new input runs through both plans.
            try scheduler.restart()
            let fresh = try pushValue(knit, "v9", tags: ["\(key):in"])
            var final: RunDetailJSON?
            let chained = eventually(timeout: 90) {
                guard
                    let a = findRuns(knit, plans: [first.planId]).first(where: {
                        $0.inputs.map(\.knitId) == [fresh.knitId]
                    }),
                    a.status == "done"
                else { return false }
                final = findRuns(knit, plans: [second.planId]).first {
                    $0.inputs.map(\.knitId) == a.outputs.map(\.knitId) && $0.status == "done"
                }
                return final != nil
            }
            try #require(chained, "the chain did not run after the restore\n\(scheduler.logTail())")
            #expect(try pullText(knit, try #require(final).outputs[0].knitId) == "v9+b\n")
        }

        /// kill -9 at many moments of a backup leaves DIR holding a backup that restores (fingerprints checked)
        /// and is clean by fsck; the run after the interruptions copies only what DIR still lacks.
        @Test func killedBackupLeavesTheOlderBackupRestorable() throws {
            let knit = try LiveKnit.instance()
            let key = uniqueKey("kill")
            for index in 0..<3 { _ = try pushValue(knit, "old\(index)", tags: ["\(key):old"]) }
            let directory = knit.root + "/backup-\(key)"
            let firstRun = knit.knitadm(["backup", directory])
            try #require(firstRun.status == 0, "knitadm backup: \(firstRun.stderr)")
            let older = try readManifest(directory)
            var big: [String] = []
            for index in 0..<12 {
                let source = try makeScratchDirectory(knit, "big")
                try writeRandomFile(source + "/payload.bin", bytes: 4 << 20)
                big.append(try push(knit, source, tags: ["\(key):new\(index)"]).knitId)
            }
            var outcomes: [String] = []
            for delay in [0.05, 0.15, 0.3, 0.5, 0.8] {
                let backup = try knit.background(
                    knit.knitadmPath,
                    ["--home", knit.home, "backup", directory],
                    name: "knitadm-backup"
                )
                usleep(UInt32(delay * 1_000_000))
                backup.signal(SIGKILL)
                #expect(backup.wait(timeout: 30))
                let current = try readManifest(directory)
                outcomes.append(current.id == older.id ? "older" : "newer")
                let home = try makeScratchDirectory(knit, "restored")
                let restored = knit.run(knit.knitadmPath, ["restore", directory, "--home", home])
                #expect(restored.status == 0, "restore after kill at \(delay) s: \(restored.stderr)")
                let fsck = knit.run(knit.knitadmPath, ["--home", home, "fsck"])
                #expect(fsck.status == 0, "fsck of the restore after kill at \(delay) s: \(fsck.stdoutText)")
                let records = jsonObject(fsck)?["dataRecords"] as? Int
                // Data of Runs not yet started (no directory) are records the manifest does not list.
                #expect((records ?? 0) >= current.data.count + current.inFlight.count)
            }
            #expect(outcomes.contains("older"), "no kill landed inside a backup: \(outcomes)")
            // A second backup into a directory another one is writing is refused (here the lock is held by a
            // stand-in process), and changes nothing.
            let holder = try knit.background(
                "/usr/bin/python3",
                [
                    "-c",
                    "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.lockf(f, fcntl.LOCK_EX); "
                        + "print('locked', flush=True); time.sleep(120)",
                    directory + "/.lock",
                ],
                name: "lock-holder"
            )
            #expect(eventually(timeout: 15) { holder.stdoutText.contains("locked") })
            let manifestBefore = try readManifest(directory).id
            let concurrent = knit.knitadm(["backup", directory])
            holder.stop(signal: SIGKILL, grace: 5)
            #expect(concurrent.status == 1)
            #expect(concurrent.stderr.contains("another backup is writing into \(directory)"), "\(concurrent.stderr)")
            #expect(try readManifest(directory).id == manifestBefore)

            let finalRun = knit.knitadm(["backup", directory])
            try #require(finalRun.status == 0, "knitadm backup: \(finalRun.stderr)")
            let report = try #require(jsonObject(finalRun))
            #expect((report["reused"] as? Int ?? 0) >= older.data.count, "\(finalRun.stdoutText)")
            #expect(try readManifest(directory).data.count == older.data.count + 12)

            // A backed-up file changed behind the backup's back (replaced, not written in place: it is a hard
            // link to the live Data) is refused by restore, which leaves the target home as it was.
            let victim = try #require(big.last)
            let path = directory + "/data/" + victim + "/payload.bin"
            try "tampered\n".write(toFile: path + ".new", atomically: false, encoding: .utf8)
            try #require(rename(path + ".new", path) == 0)
            let target = try makeScratchDirectory(knit, "refused")
            let refused = knit.run(knit.knitadmPath, ["restore", directory, "--home", target])
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("Data \(victim) does not match its fingerprint"), "\(refused.stderr)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: target).isEmpty, "nothing restored or left")
        }

        /// Data deleted while a backup copies them, and one whose directory the store lost: the backup still
        /// succeeds, takes its snapshot again (4 times in all) looking for the lost one, and lists it as missing;
        /// the restore holds exactly that inconsistency (fsck reports that record and nothing else) and every
        /// other restored Data is byte-identical to what was pushed.
        @Test func dataLostOrDeletedDuringABackup() throws {
            let knit = try LiveKnit.instance()
            let key = uniqueKey("del")
            var uploads: [(knitId: String, runId: String, value: String)] = []
            for index in 0..<40 {
                let data = try pushValue(knit, "d\(index)", tags: ["\(key):v"])
                uploads.append((data.knitId, data.upstream.run.runId, "d\(index)"))
            }
            let lost = uploads[0]
            let aside = try makeScratchDirectory(knit, "lost") + "/data"
            try FileManager.default.moveItem(atPath: knit.home + "/data/" + lost.knitId, toPath: aside)
            defer { try? FileManager.default.moveItem(atPath: aside, toPath: knit.home + "/data/" + lost.knitId) }
            let directory = knit.root + "/backup-\(key)"
            let backup = try knit.background(
                knit.knitadmPath,
                ["--home", knit.home, "backup", directory],
                name: "knitadm-backup"
            )
            for upload in uploads.dropFirst().reversed() where backup.isRunning {
                let rm = knit.runKnit(["run", "rm", upload.runId])
                #expect(rm.status == 0, "knit run rm: \(rm.stderr)")
            }
            #expect(backup.wait(timeout: 120))
            #expect(backup.exitStatus == 0, "knitadm backup: \(backup.stderrText)")
            #expect(backup.stderrText.contains("1 Data have no directory in the store; see knitadm fsck"))
            let report = try #require(
                try JSONSerialization.jsonObject(with: Data(backup.stdoutText.utf8)) as? [String: Any],
                "\(backup.stdoutText)"
            )
            #expect(report["missing"] as? [String] == [lost.knitId])
            #expect(report["snapshots"] as? Int == 4)
            let manifest = try readManifest(directory)
            #expect(manifest.missing == [lost.knitId])

            let home = try makeScratchDirectory(knit, "restored")
            let restored = knit.run(knit.knitadmPath, ["restore", directory, "--home", home])
            try #require(restored.status == 0, "knitadm restore: \(restored.stderr)")
            let fsck = knit.run(knit.knitadmPath, ["--home", home, "fsck"])
            #expect(fsck.status == 2)
            let found = try #require(jsonObject(fsck), "\(fsck.stdoutText)")
            let missing = found["recordsWithoutDirectory"] as? [[String: Any]] ?? []
            #expect(missing.map { $0["knitId"] as? String } == [lost.knitId])
            #expect(found["directoriesWithoutRecord"] as? [String] == [])
            let backedUp = Set(manifest.data.map(\.knitId))
            #expect((found["dataRecords"] as? Int ?? 0) >= backedUp.count + 1)
            for upload in uploads where backedUp.contains(upload.knitId) {
                let text = try String(contentsOfFile: home + "/data/\(upload.knitId)/v", encoding: .utf8)
                #expect(text == upload.value + "\n")
            }
            // The remaining uploads go, so the suite's other tests see none of these.
            try FileManager.default.moveItem(atPath: aside, toPath: knit.home + "/data/" + lost.knitId)
            for upload in uploads { _ = knit.runKnit(["run", "rm", upload.runId]) }
        }

        /// fsck reports a directory without a record and a record whose directory was removed (exit 2, JSON);
        /// --repair deletes the first and leaves the second reported.
        @Test func fsckFindsAndRepairsOrphans() throws {
            let knit = try LiveKnit.instance()
            let clean = knit.knitadm(["fsck"])
            #expect(clean.status == 0, "\(clean.stdoutText)")
            let victim = try pushValue(knit, "victim", tags: ["fsck:victim"])
            let orphan = knit.home + "/data/" + KnitIdentifier.make()
            try FileManager.default.createDirectory(atPath: orphan + "/sub", withIntermediateDirectories: true)
            try "stray\n".write(toFile: orphan + "/sub/f", atomically: true, encoding: .utf8)
            let aside = try makeScratchDirectory(knit, "aside") + "/victim"
            try FileManager.default.moveItem(atPath: knit.home + "/data/" + victim.knitId, toPath: aside)
            defer { try? FileManager.default.moveItem(atPath: aside, toPath: knit.home + "/data/" + victim.knitId) }
            let orphanName = String(orphan.split(separator: "/").last!)

            let found = knit.knitadm(["fsck"])
            #expect(found.status == 2)
            let report = try #require(jsonObject(found), "\(found.stdoutText)")
            #expect(report["directoriesWithoutRecord"] as? [String] == [orphanName])
            let missing = report["recordsWithoutDirectory"] as? [[String: Any]] ?? []
            #expect(missing.map { $0["knitId"] as? String } == [victim.knitId])
            #expect(missing.first?["runStatus"] as? String == "done")
            #expect(FileManager.default.fileExists(atPath: orphan), "fsck without --repair changes nothing")

            let repaired = knit.knitadm(["fsck", "--repair"])
            #expect(repaired.status == 2, "problems were found")
            let repairReport = try #require(jsonObject(repaired), "\(repaired.stdoutText)")
            #expect(repairReport["removedDirectories"] as? [String] == [orphanName])
            #expect(!FileManager.default.fileExists(atPath: orphan))
            #expect(repaired.stderr.contains("knitadm fsck --repair"), "an audit line: \(repaired.stderr)")
            let again = knit.knitadm(["fsck"])
            let againReport = try #require(jsonObject(again))
            #expect(againReport["directoriesWithoutRecord"] as? [String] == [])
            #expect((againReport["recordsWithoutDirectory"] as? [[String: Any]])?.count == 1, "never dropped")
            #expect(try detail(knit, victim.knitId).knitId == victim.knitId, "the record stays")

            try FileManager.default.moveItem(atPath: aside, toPath: knit.home + "/data/" + victim.knitId)
            #expect(knit.knitadm(["fsck"]).status == 0)
        }
    }
}

/// What the API shows of Data, Plans, Runs, logs and lineage, as raw response bodies keyed by path.
private struct APIState {
    var documents: [String: Data] = [:]
    /// Data of the plans' Runs and the uploads feeding them.
    var knitIds: Set<String> = []
    /// Every Data the API lists.
    var allKnitIds: Set<String> = []
    var runs: [String] = []
    var details: [String: DataDetailJSON] = [:]
}

private func apiState(_ knit: KnitInstance, plans: [String], data: [String] = []) throws -> APIState {
    var state = APIState()
    state.knitIds.formUnion(data)
    /// Lists grow with the uploads that go on meanwhile, so only the documents of single things are kept.
    func get(_ path: String, keep: Bool = true) throws -> Data {
        let response = knit.request("GET", path, user: "admin")
        try #require(response.status == 200, "GET \(path): \(response.status) \(response.text)")
        if keep { state.documents[path] = response.body }
        return response.body
    }
    let details = try decodeDetails(try get("/api/data/", keep: false))
    state.allKnitIds = Set(details.map(\.knitId))
    _ = try get("/api/plans/")
    var runIds: Set<String> = []
    for planId in plans {
        _ = try get("/api/plans/\(planId)")
        _ = try get("/api/plans/\(planId)/graph")
        for run in try jsonDecoder.decode([RunDetailJSON].self, from: try get("/api/runs/?plan=\(planId)", keep: false))
        {
            runIds.insert(run.runId)
            if run.log != nil, finishedRunStatuses.contains(run.status) { _ = try get("/api/runs/\(run.runId)/log") }
            for knitId in run.inputs.map(\.knitId) + run.outputs.map(\.knitId) + [run.log?.knitId].compactMap({ $0 }) {
                state.knitIds.insert(knitId)
            }
        }
    }
    for knitId in state.knitIds {
        // GET /api/data/ID is the download (its deterministic archive), so the bytes are compared too.
        _ = try get("/api/data/\(knitId)")
        let detail = try #require(details.first { $0.knitId == knitId })
        state.details[knitId] = detail
        runIds.insert(detail.upstream.run.runId)
        _ = try get("/api/data/\(knitId)/lineage")
    }
    for runId in runIds.sorted() {
        _ = try get("/api/runs/\(runId)")
    }
    state.runs = runIds.sorted()
    return state
}

private func readManifest(_ directory: String) throws -> BackupManifestJSON {
    let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/manifest.json"))
    return try jsonDecoder.decode(BackupManifestJSON.self, from: data)
}

/// The parts of `manifest.json` the tests read.
private struct BackupManifestJSON: Decodable {
    struct Entry: Decodable { var knitId: String }
    var id: String
    var data: [Entry]
    var inFlight: [Entry]
    var missing: [String]
}

/// Pushes small Data one after another on a thread of its own until stopped, remembering each value and
/// which pushes had ended before `stop()`'s caller's backup began.
private final class QuickPushes: @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`.
    private let lock = NSLock()
    private let knit: KnitInstance
    private let key: String
    private var stopped = false
    private var pushedIds: [String: String] = [:]
    private var count = 0
    private var thread: Thread?
    private var snapshotAtStop: Set<String>?
    private let done = DispatchSemaphore(value: 0)

    init(_ knit: KnitInstance, key: String) {
        self.knit = knit
        self.key = key
    }

    var finished: Int { lock.withLock { count } }
    /// knitId → value of every push that succeeded.
    var values: [String: String] { lock.withLock { pushedIds } }
    /// Pushes that had ended when the backup was started (the first one, awaited before it).
    private(set) var pushedBeforeBackup: Set<String> = []

    func start() {
        let thread = Thread { [self] in
            var index = 0
            while !lock.withLock({ stopped }) {
                index += 1
                let value = "q\(index)"
                if let data = Self.push(knit, value, tag: "\(key):in") {
                    lock.withLock {
                        pushedIds[data.knitId] = value
                        count += 1
                        if count == 1 { pushedBeforeBackup = [data.knitId] }
                    }
                }
            }
            done.signal()
        }
        self.thread = thread
        thread.start()
    }

    func stop() {
        lock.withLock { stopped = true }
        done.wait()
    }

    /// `knit data push` without `#require`, which has no test to report to on this thread.
    private static func push(_ knit: KnitInstance, _ value: String, tag: String) -> DataDetailJSON? {
        let dir = knit.root + "/scratch/quick-\(UUID().uuidString.prefix(8))"
        guard (try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)) != nil,
            (try? (value + "\n").write(toFile: dir + "/v", atomically: true, encoding: .utf8)) != nil
        else { return nil }
        let result = knit.runKnit(["data", "push", "-t", tag, dir])
        guard result.status == 0 else { return nil }
        return try? jsonDecoder.decode(DataDetailJSON.self, from: result.stdout)
    }
}

private func jsonObject(_ result: ProcessResult) -> [String: Any]? {
    try? JSONSerialization.jsonObject(with: result.stdout) as? [String: Any]
}

extension Live {
    /// The image registry's storage is part of a backup: after the home's store and registry are destroyed and
    /// restored, an image pushed before answers with the same manifest and its blobs.
    @Suite(
        .knitInstance(.init(registry: true)),
        .enabled(if: podmanAvailable && FileManager.default.isExecutableFile(atPath: "/usr/bin/docker-registry"))
    )
    struct BackupRegistryLive {
        @Test func registryImagesComeBackWithTheStore() throws {
            let knit = try LiveKnit.instance()
            try buildQuickstartImage(knit)
            let repository = uniqueKey("bak")
            let name = "\(knit.registryHost)/\(repository):1"
            var env = ProcessInfo.processInfo.environment
            env["CONTAINERS_CONF"] = knit.packageRoot + "/containers/containers.conf"
            let tagged = knit.run("/usr/bin/podman", ["tag", quickstartImage, name], environment: env)
            try #require(tagged.status == 0, "podman tag: \(tagged.stderr)")
            defer { _ = knit.run("/usr/bin/podman", ["rmi", name], environment: env) }
            let pushed = knit.run(
                "/usr/bin/podman",
                [
                    "push", "--quiet", "--cert-dir", knit.registryCertDirectory, "--creds",
                    "alice:\(knit.token(for: "alice"))", name,
                ],
                environment: env
            )
            try #require(pushed.status == 0, "podman push: \(pushed.stderr)")
            func get(_ path: String) -> ProcessResult {
                knit.curl([
                    "-f", "-u", "alice:\(knit.token(for: "alice"))", "-H",
                    "Accept: application/vnd.oci.image.manifest.v1+json, "
                        + "application/vnd.docker.distribution.manifest.v2+json",
                    knit.baseURL + path,
                ])
            }
            let before = get("/v2/\(repository)/manifests/1")
            try #require(before.status == 0, "GET manifest: \(before.stderr)")

            let directory = knit.root + "/backup-\(repository)"
            let backedUp = knit.knitadm(["backup", directory])
            try #require(backedUp.status == 0, "knitadm backup: \(backedUp.stderr)")
            let report = try #require(jsonObject(backedUp), "\(backedUp.stdoutText)")
            #expect((report["registryLinkedFiles"] as? Int ?? 0) >= 2, "blobs are linked: \(backedUp.stdoutText)")

            #expect(knit.killKnitd(signal: SIGTERM) != nil)
            for directory in ["db", "data", "staging", "registry"] {
                try FileManager.default.removeItem(atPath: knit.home + "/" + directory)
            }
            let restored = knit.knitadm(["restore", directory])
            try #require(restored.status == 0, "knitadm restore: \(restored.stderr)")
            try knit.restartKnitd()
            let after = get("/v2/\(repository)/manifests/1")
            #expect(after.status == 0, "GET manifest after restore: \(after.stderr)")
            #expect(after.stdout == before.stdout, "the same manifest")
            let manifest = try JSONSerialization.jsonObject(with: before.stdout) as? [String: Any]
            let layers = (manifest?["layers"] as? [[String: Any]] ?? []).compactMap { $0["digest"] as? String }
            try #require(!layers.isEmpty, "\(before.stdoutText)")
            for digest in layers {
                let blob = get("/v2/\(repository)/blobs/\(digest)")
                #expect(blob.status == 0, "GET blob \(digest): \(blob.stderr)")
                let sum = knit.run("/usr/bin/sha256sum", ["-"], stdin: blob.stdout)
                #expect("sha256:" + sum.stdoutText.prefix(64) == digest)
            }
        }
    }
}
