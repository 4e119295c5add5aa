import KnitCore
import KnitKubernetes
import KnitScheduler
import KnitSystem
import KnitTestSupport
import Testing

private let runId = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
private let home = "/var/lib/knit"

private func mount(_ knitId: String, _ containerPath: String) -> RunMount {
    RunMount(knitId: knitId, hostPath: "\(home)/data/\(knitId)", containerPath: containerPath)
}

/// A Run using every feature the objects carry.
private func fullRun(onNode: [OnNodeLabel] = sampleOnNode) -> KubernetesRun {
    KubernetesRun(
        ScheduledRun(
            runId: runId,
            planId: "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
            image: "registry.knit.example:5000/team/train:v1.0",
            entrypoint: ["python", "train.py"],
            args: ["--epochs", "3"],
            inputs: [
                mount("11111111-2222-4333-8444-555555555555", "/in/dataset"),
                mount("66666666-7777-4888-9999-aaaaaaaaaaaa", "/in/config"),
            ],
            outputs: [mount("bbbbbbbb-cccc-4ddd-8eee-ffffffffffff", "/out/model")],
            logPath: "\(home)/data/12121212-3434-4565-8787-909090909090/log",
            cpuMillis: 1500,
            memoryBytes: 2 << 30
        ),
        onNode: onNode,
        serviceAccount: "trainer",
        environment: ["KNIT_RUN_ID": runId, "HOME": "/tmp"]
    )
}

private let sampleOnNode = [
    OnNodeLabel(mode: .must, key: "accelerator", value: "gpu"),
    OnNodeLabel(mode: .may, key: "spot", value: "yes"),
    OnNodeLabel(mode: .prefer, key: "vram", value: "large"),
    OnNodeLabel(mode: .must, key: "accelerator", value: "tpu"),
    OnNodeLabel(mode: .must, key: "zone", value: "a"),
]

private func settings(_ volumes: KubernetesSettings.Volumes = .hostPath, secret: String? = "knit-registry")
    throws -> KubernetesSettings
{
    try KubernetesSettings(
        namespace: "knit-runs",
        instance: "knit-main",
        volumes: volumes,
        dataDirectory: "\(home)/data",
        imagePullSecret: secret
    )
}

private func objects(of built: KubernetesRunObjects) -> [JSONValue] {
    built.volumes.flatMap { [$0.persistentVolume, $0.persistentVolumeClaim] } + [built.job]
}

/// Where kubernetes-validate is, installing it from PyPI first when missing (as scripts/test installs the
/// apt packages it needs).
private let validator: String? = {
    if let found = findExecutable("kubernetes-validate") { return found }
    _ = runProcess(["python3", "-m", "pip", "install", "--quiet", "kubernetes-validate"], input: "")
    return findExecutable("kubernetes-validate")
}()

/// The schema versions checked: the issue's 1.29 and the newest one the installed validator ships.
let schemaVersions: [String] = {
    let newest =
        capture([
            "python3", "-c", "import kubernetes_validate.utils as u; print(u.latest_version())",
        ]).split(separator: "\n").first.map(String.init) ?? ""
    return ["1.29.0", newest]
}()

/// Runs `kubernetes-validate --strict` over `objects` for each schema version; answers the failures' output.
private func strictValidationFailures(_ objects: [JSONValue]) throws -> [String] {
    let directory = TemporaryDirectory()
    var files: [String] = []
    for (index, object) in objects.enumerated() {
        let name = "object-\(index).json"
        directory.write(name, object.rendered(indent: 0))
        files.append(directory.file(name))
    }
    return try strictValidationFailures(files: files)
}

/// Runs `kubernetes-validate --strict` over the manifest `files` (JSON or YAML) for each schema version.
func strictValidationFailures(files: [String]) throws -> [String] {
    let validator = try #require(validator, "kubernetes-validate is not installed and pip could not install it")
    var failures: [String] = []
    for version in schemaVersions {
        let result = runProcess([validator, "--strict", "--no-warn", "-k", version] + files, input: "")
        if result.status != 0 { failures.append("\(version): \(result.output)") }
    }
    return failures
}

@Suite("KubernetesObjects")
struct KubernetesObjectsTests {
    @Test("every object of a Run passes kubernetes-validate --strict on 1.29 and the newest schema (hostPath)")
    func hostPathObjectsValidate() throws {
        let built = try KubernetesObjects.build(fullRun(), settings: settings())
        #expect(schemaVersions.count == 2 && !schemaVersions[1].isEmpty)
        #expect(objects(of: built).count == 9)
        #expect(try strictValidationFailures(objects(of: built)) == [])
    }

    @Test("every object of a Run passes kubernetes-validate --strict (nfs, no service account, no limits)")
    func nfsObjectsValidate() throws {
        var run = fullRun(onNode: [])
        run.serviceAccount = nil
        run.environment = [:]
        run.scheduled.cpuMillis = nil
        run.scheduled.memoryBytes = nil
        run.scheduled.entrypoint = nil
        run.scheduled.logPath = nil
        let built = try KubernetesObjects.build(
            run,
            settings: settings(.nfs(server: "10.0.0.5", export: "/srv/knit"), secret: nil)
        )
        #expect(try strictValidationFailures(objects(of: built)) == [])
    }

    @Test("the strict validator does reject an unknown field, so the checks above can fail")
    func validatorRejectsUnknownField() throws {
        let built = try KubernetesObjects.build(fullRun(), settings: settings())
        guard case .object(var members) = built.job else { Issue.record("job is not an object"); return }
        members.append(("specification", .object([])))
        #expect(try strictValidationFailures([.object(members)]).count == 2)
    }

    @Test("the Job: name, one try, never restarted, labels, resources as requests and limits, image and command")
    func jobShape() throws {
        let job = try KubernetesObjects.build(fullRun(), settings: settings()).job
        #expect(job["metadata"]?["name"] == .string("knit-run-\(runId)"))
        #expect(job["metadata"]?["namespace"] == .string("knit-runs"))
        let labels: JSONValue = .object([("knit.executor", .string("knit-main")), ("knit.run", .string(runId))])
        #expect(job["metadata"]?["labels"] == labels)
        #expect(job["spec"]?["backoffLimit"] == .number("0"))
        let pod = try #require(job["spec"]?["template"]?["spec"])
        #expect(job["spec"]?["template"]?["metadata"]?["labels"] == labels)
        #expect(pod["restartPolicy"] == .string("Never"))
        #expect(pod["serviceAccountName"] == .string("trainer"))
        #expect(pod["automountServiceAccountToken"] == .bool(true))
        #expect(pod["imagePullSecrets"] == .array([.object([("name", .string("knit-registry"))])]))
        let container = try #require(pod["containers"]?.arrayValue?.first)
        #expect(container["image"] == .string("registry.knit.example:5000/team/train:v1.0"))
        #expect(container["command"] == .array([.string("python"), .string("train.py")]))
        #expect(container["args"] == .array([.string("--epochs"), .string("3")]))
        let quantities: JSONValue = .object([("cpu", .string("1500m")), ("memory", .string("2147483648"))])
        #expect(container["resources"] == .object([("limits", quantities), ("requests", quantities)]))
        #expect(container["env"]?.arrayValue?.first?["name"] == .string("HOME"))
    }

    @Test("the container is confined like a podman Run: no escalation, ALL dropped, podman's kept capabilities only")
    func securityMatchesPodman() throws {
        let job = try KubernetesObjects.build(fullRun(), settings: settings()).job
        let pod = try #require(job["spec"]?["template"]?["spec"])
        let security = try #require(pod["containers"]?.arrayValue?.first?["securityContext"])
        #expect(security["privileged"] == .bool(false))
        #expect(security["allowPrivilegeEscalation"] == .bool(false))
        #expect(security["capabilities"]?["drop"] == .array([.string("ALL")]))
        #expect(security["capabilities"]?["add"] == .array(PodmanExecutor.keptCapabilities.map(JSONValue.string)))
        #expect(KubernetesObjects.keptCapabilities == PodmanExecutor.keptCapabilities)
        for field in ["hostNetwork", "hostPID", "hostIPC", "enableServiceLinks"] { #expect(pod[field] == .bool(false)) }

        var anonymous = fullRun()
        anonymous.serviceAccount = nil
        let plain = try KubernetesObjects.build(anonymous, settings: settings()).job["spec"]?["template"]?["spec"]
        #expect(plain?["automountServiceAccountToken"] == .bool(false))
        #expect(plain?["serviceAccountName"] == nil)
    }

    @Test("one statically bound volume and claim per input, output and log; inputs mounted read-only")
    func volumesAreBoundAndInputsReadOnly() throws {
        let built = try KubernetesObjects.build(fullRun(), settings: settings())
        #expect(built.volumes.map(\.role) == [.input, .input, .output, .log])
        #expect(built.volumes.last?.knitId == "12121212-3434-4565-8787-909090909090")
        for volume in built.volumes {
            let pv = volume.persistentVolume
            let pvc = volume.persistentVolumeClaim
            #expect(pv["spec"]?["claimRef"]?["name"] == .string(volume.name))
            #expect(pv["spec"]?["claimRef"]?["namespace"] == .string("knit-runs"))
            #expect(pvc["spec"]?["volumeName"] == .string(volume.name))
            #expect(pv["spec"]?["storageClassName"] == .string(""))
            #expect(pvc["spec"]?["storageClassName"] == .string(""))
            #expect(pv["spec"]?["persistentVolumeReclaimPolicy"] == .string("Retain"))
            #expect(pv["spec"]?["hostPath"]?["path"] == .string("\(home)/data/\(volume.knitId)"))
            #expect(pvc["metadata"]?["labels"]?["knit.data"] == .string(volume.knitId))
        }
        let pod = try #require(built.job["spec"]?["template"]?["spec"])
        let mounts = try #require(pod["containers"]?.arrayValue?.first?["volumeMounts"]?.arrayValue)
        #expect(mounts.map { $0["mountPath"] } == ["/in/dataset", "/in/config", "/out/model"].map(JSONValue.string))
        #expect(mounts.map { $0["readOnly"] } == [true, true, false].map(JSONValue.bool))
        let claims = try #require(pod["volumes"]?.arrayValue)
        #expect(
            claims.map { $0["persistentVolumeClaim"]?["claimName"] } == built.volumes.prefix(3).map { .string($0.name) }
        )
        #expect(claims.map { $0["persistentVolumeClaim"]?["readOnly"] } == [true, true, false].map(JSONValue.bool))
    }

    @Test("nfs volumes point into the export at the Data's path under the data directory; other paths are refused")
    func nfsPaths() throws {
        let nfs = try settings(.nfs(server: "nfs.example", export: "/srv/knit"))
        let built = try KubernetesObjects.build(fullRun(), settings: nfs)
        let input = try #require(built.volumes.first?.persistentVolume["spec"]?["nfs"])
        #expect(input["server"] == .string("nfs.example"))
        #expect(input["path"] == .string("/srv/knit/11111111-2222-4333-8444-555555555555"))
        #expect(input["readOnly"] == .bool(true))
        #expect(built.volumes[2].persistentVolume["spec"]?["nfs"]?["readOnly"] == .bool(false))

        var outside = fullRun()
        outside.scheduled.inputs[0].hostPath = "/elsewhere/11111111-2222-4333-8444-555555555555"
        #expect(throws: KubernetesObjectError.self) { try KubernetesObjects.build(outside, settings: nfs) }
    }

    @Test("on_node maps as Knitfab: may tolerates, prefer adds a weight-1 preference, must requires every key")
    func onNodePlacement() throws {
        let pod = try #require(
            try KubernetesObjects.build(fullRun(), settings: settings()).job["spec"]?["template"]?["spec"]
        )
        let tolerations = try #require(pod["tolerations"]?.arrayValue).map {
            "\($0["key"]!.stringValue!)=\($0["value"]!.stringValue!):\($0["effect"]!.stringValue!)"
        }
        #expect(
            tolerations == [
                "spot=yes:NoSchedule",
                "vram=large:NoSchedule", "vram=large:PreferNoSchedule",
                "accelerator=gpu:NoSchedule", "accelerator=gpu:PreferNoSchedule",
                "accelerator=tpu:NoSchedule", "accelerator=tpu:PreferNoSchedule",
                "zone=a:NoSchedule", "zone=a:PreferNoSchedule",
            ]
        )
        let affinity = try #require(pod["affinity"]?["nodeAffinity"])
        #expect(
            affinity.rendered(indent: 0)
                == #"{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":["#
                + #"{"key":"accelerator","operator":"In","values":["gpu","tpu"]},"#
                + #"{"key":"zone","operator":"In","values":["a"]}]}]},"#
                + #""preferredDuringSchedulingIgnoredDuringExecution":[{"weight":1,"preference":{"matchExpressions":"#
                + #"[{"key":"vram","operator":"In","values":["large"]}]}}]}"#
        )
        let mayOnly = try KubernetesObjects.build(
            fullRun(onNode: [OnNodeLabel(mode: .may, key: "spot", value: "yes")]),
            settings: settings()
        )
        #expect(mayOnly.job["spec"]?["template"]?["spec"]?["affinity"] == nil)
    }

    @Test("the same Run gives byte-identical JSON whatever the order of on_node entries and environment")
    func deterministic() throws {
        let first = try KubernetesObjects.build(fullRun(), settings: settings())
        var shuffled = fullRun(onNode: sampleOnNode.reversed())
        shuffled.environment = ["HOME": "/tmp", "KNIT_RUN_ID": runId]
        let second = try KubernetesObjects.build(shuffled, settings: settings())
        #expect(objects(of: first).map { $0.rendered(indent: 0) } == objects(of: second).map { $0.rendered(indent: 0) })
    }

    @Test("settings and Runs Kubernetes would refuse are refused with a clear error before anything is sent")
    func refusals() throws {
        #expect(throws: KubernetesObjectError.self) {
            try KubernetesSettings(namespace: "Knit_Runs", instance: "a", volumes: .hostPath, dataDirectory: "/d")
        }
        #expect(throws: KubernetesObjectError.self) {
            try KubernetesSettings(namespace: "knit", instance: "bad instance", volumes: .hostPath, dataDirectory: "/d")
        }
        #expect(throws: KubernetesObjectError.self) {
            try KubernetesSettings(namespace: "knit", instance: "a", volumes: .hostPath, dataDirectory: "relative")
        }
        var badId = fullRun()
        badId.scheduled.runId = "Run_1"
        #expect(throws: KubernetesObjectError.self) { try KubernetesObjects.build(badId, settings: settings()) }
        var badAccount = fullRun()
        badAccount.serviceAccount = "Not An Account"
        #expect(throws: KubernetesObjectError.self) { try KubernetesObjects.build(badAccount, settings: settings()) }
    }

    @Test("--volumes reads hostpath and nfs://SERVER/EXPORT and refuses anything else")
    func volumesOption() throws {
        #expect(try KubernetesSettings.volumes(parsing: "hostpath") == .hostPath)
        #expect(
            try KubernetesSettings.volumes(parsing: "nfs://10.1.2.3/srv/knit/")
                == .nfs(server: "10.1.2.3", export: "/srv/knit")
        )
        for bad in ["nfs://", "nfs:///srv", "nfs://server", "host-path", "smb://x/y"] {
            #expect(throws: KubernetesObjectError.self, "\(bad)") { try KubernetesSettings.volumes(parsing: bad) }
        }
    }
}
