public import KnitCore

/// What a Run needs from the cluster beyond the store's ``ScheduledRun``: the plan's placement and service
/// account, and the environment the scheduler gives every Run.
public struct KubernetesRun: Sendable, Equatable {
    public var scheduled: ScheduledRun
    /// The plan's `on_node`.
    public var onNode: [OnNodeLabel]
    /// The plan's `service_account`; nil runs the pod without a service account token.
    public var serviceAccount: String?
    public var environment: [String: String]

    public init(
        _ scheduled: ScheduledRun,
        onNode: [OnNodeLabel] = [],
        serviceAccount: String? = nil,
        environment: [String: String] = [:]
    ) {
        self.scheduled = scheduled
        self.onNode = onNode
        self.serviceAccount = serviceAccount
        self.environment = environment
    }
}

/// One Data directory as the cluster sees it: a PersistentVolume over the directory and the claim bound to it.
public struct KubernetesVolume: Sendable, Equatable {
    public enum Role: String, Sendable, Equatable {
        case input, output, log
    }

    public var role: Role
    public var knitId: String
    /// The name of both the PersistentVolume and its claim.
    public var name: String
    public var persistentVolume: JSONValue
    public var persistentVolumeClaim: JSONValue
}

/// Every object one Run needs, in the order they are created: volumes and claims first (so the claims are
/// bound before the Job's pod is scheduled), then the Job.
public struct KubernetesRunObjects: Sendable, Equatable {
    public var volumes: [KubernetesVolume]
    public var jobName: String
    public var job: JSONValue
}

/// Pure builders of the Kubernetes objects (as JSON, keys in a fixed order) a Run becomes.
public enum KubernetesObjects {
    /// Label naming the Run on every object of it (as the podman executor labels its containers).
    public static let runLabel = "knit.run"
    /// Label naming the Knit instance that owns the object.
    public static let instanceLabel = "knit.executor"
    /// Label naming the Data a volume or claim stands for.
    public static let dataLabel = "knit.data"
    /// The Run's one container.
    public static let containerName = "main"

    /// `knit-run-<runId>`: at most 63 characters, since Kubernetes copies it into the `job-name` label.
    public static func jobName(runId: String) -> String { RunConfinement.workerName(runId: runId) }

    /// The label selector (`key=value,…`) that finds every object of a Run of this instance.
    public static func selector(runId: String, settings: KubernetesSettings) -> String {
        "\(runLabel)=\(runId),\(instanceLabel)=\(settings.instance)"
    }

    /// The selector of every object this instance made, for clean-up after a restart.
    public static func instanceSelector(_ settings: KubernetesSettings) -> String {
        "\(instanceLabel)=\(settings.instance)"
    }

    public static func build(
        _ run: KubernetesRun,
        settings: KubernetesSettings
    ) throws(KubernetesObjectError) -> KubernetesRunObjects {
        let scheduled = run.scheduled
        let jobName = jobName(runId: scheduled.runId)
        // The run id also becomes a label value and a part of volume names.
        guard KubernetesNames.isLabel(jobName), KubernetesNames.isLabelValue(scheduled.runId) else {
            throw KubernetesObjectError("run id \(JSONValue.quoted(scheduled.runId)) cannot name a Job")
        }
        if let account = run.serviceAccount, !KubernetesNames.isSubdomain(account) {
            throw KubernetesObjectError("service account \(JSONValue.quoted(account)) is not a DNS-1123 subdomain")
        }
        var volumes: [KubernetesVolume] = []
        var mounts: [JSONValue] = []
        var podVolumes: [JSONValue] = []
        let roles: [(KubernetesVolume.Role, [RunMount], String)] = [
            (.input, scheduled.inputs, "in"), (.output, scheduled.outputs, "out"),
        ]
        for (role, list, prefix) in roles {
            for (index, mount) in list.enumerated() {
                let volumeName = "\(prefix)-\(index)"
                let volume = try self.volume(
                    role: role,
                    knitId: mount.knitId,
                    hostPath: mount.hostPath,
                    name: "\(jobName)-\(volumeName)",
                    runId: scheduled.runId,
                    settings: settings
                )
                volumes.append(volume)
                let readOnly = role == .input
                podVolumes.append(podVolume(name: volumeName, claim: volume.name, readOnly: readOnly))
                mounts.append(
                    .object([
                        ("name", .string(volumeName)), ("mountPath", .string(mount.containerPath)),
                        ("readOnly", .bool(readOnly)),
                    ])
                )
            }
        }
        if let logPath = scheduled.logPath {
            // The log is written from the pod log API on the Knit host, not by the container: its volume is not
            // mounted into the pod, it only names the log Data in the cluster like the other Data.
            let directory = parentDirectory(logPath)
            let knitId = String(directory.split(separator: "/").last ?? "")
            volumes.append(
                try volume(
                    role: .log,
                    knitId: knitId,
                    hostPath: directory,
                    name: "\(jobName)-log",
                    runId: scheduled.runId,
                    settings: settings
                )
            )
        }
        let labels = labels(runId: scheduled.runId, settings: settings)
        let job: JSONValue = .object([
            ("apiVersion", .string("batch/v1")),
            ("kind", .string("Job")),
            ("metadata", .object([("name", .string(jobName)), ("namespace", .string(settings.namespace)), labels])),
            (
                "spec",
                .object([
                    ("parallelism", .number("1")),
                    ("completions", .number("1")),
                    // A failed Run is Knit's to retry (`knit run retry`), never the Job controller's.
                    ("backoffLimit", .number("0")),
                    (
                        "template",
                        .object([
                            ("metadata", .object([labels])),
                            ("spec", podSpec(run, settings: settings, mounts: mounts, volumes: podVolumes)),
                        ])
                    ),
                ])
            ),
        ])
        return KubernetesRunObjects(volumes: volumes, jobName: jobName, job: job)
    }

    private static func podSpec(
        _ run: KubernetesRun,
        settings: KubernetesSettings,
        mounts: [JSONValue],
        volumes: [JSONValue]
    ) -> JSONValue {
        let scheduled = run.scheduled
        var container: [(String, JSONValue)] = [
            ("name", .string(containerName)),
            ("image", .string(scheduled.image)),
            // Plans name images in Knit's registry by tag; the node's copy may be stale.
            ("imagePullPolicy", .string("Always")),
        ]
        if let entrypoint = scheduled.entrypoint, !entrypoint.isEmpty {
            container.append(("command", .array(entrypoint.map(JSONValue.string))))
        }
        if let args = scheduled.args, !args.isEmpty {
            container.append(("args", .array(args.map(JSONValue.string))))
        }
        if !run.environment.isEmpty {
            let sorted = run.environment.sorted { $0.key < $1.key }
            container.append(
                ("env", .array(sorted.map { .object([("name", .string($0.key)), ("value", .string($0.value))]) }))
            )
        }
        var quantities: [(String, JSONValue)] = []
        if let millis = scheduled.cpuMillis { quantities.append(("cpu", .string("\(millis)m"))) }
        if let bytes = scheduled.memoryBytes { quantities.append(("memory", .string("\(bytes)"))) }
        // Requests equal to limits: the scheduler places the pod only where the whole limit fits, as the local
        // executor admits a Run only when its limits fit.
        if !quantities.isEmpty {
            container.append(
                ("resources", .object([("limits", .object(quantities)), ("requests", .object(quantities))]))
            )
        }
        container.append(("volumeMounts", .array(mounts)))
        container.append(
            (
                "securityContext",
                .object([
                    ("privileged", .bool(false)),
                    ("allowPrivilegeEscalation", .bool(false)),
                    (
                        "capabilities",
                        .object([
                            ("drop", .array([.string("ALL")])),
                            ("add", .array(keptCapabilities.map(JSONValue.string))),
                        ])
                    ),
                ])
            )
        )
        var spec: [(String, JSONValue)] = [
            ("restartPolicy", .string("Never")),
            ("containers", .array([.object(container)])),
            ("volumes", .array(volumes)),
            // A Run reaches the cluster's API only through a service account its plan names.
            ("automountServiceAccountToken", .bool(run.serviceAccount != nil)),
            // Service environment variables would tell a Run's code about the cluster's services.
            ("enableServiceLinks", .bool(false)),
            ("hostNetwork", .bool(false)),
            ("hostPID", .bool(false)),
            ("hostIPC", .bool(false)),
        ]
        if let account = run.serviceAccount { spec.append(("serviceAccountName", .string(account))) }
        if let secret = settings.imagePullSecret {
            spec.append(("imagePullSecrets", .array([.object([("name", .string(secret))])])))
        }
        let placement = placement(run.onNode)
        if !placement.tolerations.isEmpty { spec.append(("tolerations", .array(placement.tolerations))) }
        if let affinity = placement.affinity { spec.append(("affinity", affinity)) }
        return .object(spec)
    }

    /// The capabilities a Run keeps after dropping ALL: KnitCore's `RunConfinement.keptCapabilities`, so a Run
    /// has the same rights on either executor.
    public static var keptCapabilities: [String] { RunConfinement.keptCapabilities }

    /// `on_node` as Knitfab maps it: `may` tolerates the taint `key=value:NoSchedule`; `prefer` also tolerates
    /// `PreferNoSchedule` and adds a preferred node-affinity term (weight 1) per label; `must` tolerates both and
    /// requires, in one term, every key to have one of its values. Sorted, so equal plans give equal Jobs.
    static func placement(_ onNode: [OnNodeLabel]) -> (tolerations: [JSONValue], affinity: JSONValue?) {
        var tolerations: [JSONValue] = []
        var seen = Set<[String]>()
        func tolerate(_ label: OnNodeLabel, _ effect: String) {
            guard seen.insert([label.key, label.value, effect]).inserted else { return }
            tolerations.append(
                .object([
                    ("key", .string(label.key)), ("operator", .string("Equal")), ("value", .string(label.value)),
                    ("effect", .string(effect)),
                ])
            )
        }
        var preferred: [JSONValue] = []
        var required: [(key: String, values: [String])] = []
        for label in onNode.sorted() {
            tolerate(label, "NoSchedule")
            guard label.mode != .may else { continue }
            tolerate(label, "PreferNoSchedule")
            if label.mode == .prefer {
                preferred.append(
                    .object([
                        ("weight", .number("1")),
                        ("preference", .object([("matchExpressions", .array([expression(label.key, [label.value])]))])),
                    ])
                )
            } else if let index = required.firstIndex(where: { $0.key == label.key }) {
                if !required[index].values.contains(label.value) { required[index].values.append(label.value) }
            } else {
                required.append((label.key, [label.value]))
            }
        }
        guard !preferred.isEmpty || !required.isEmpty else { return (tolerations, nil) }
        var nodeAffinity: [(String, JSONValue)] = []
        if !required.isEmpty {
            let term: JSONValue = .object([("matchExpressions", .array(required.map { expression($0.key, $0.values) }))]
            )
            nodeAffinity.append(
                ("requiredDuringSchedulingIgnoredDuringExecution", .object([("nodeSelectorTerms", .array([term]))]))
            )
        }
        if !preferred.isEmpty {
            nodeAffinity.append(("preferredDuringSchedulingIgnoredDuringExecution", .array(preferred)))
        }
        return (tolerations, .object([("nodeAffinity", .object(nodeAffinity))]))
    }

    private static func expression(_ key: String, _ values: [String]) -> JSONValue {
        .object([("key", .string(key)), ("operator", .string("In")), ("values", .array(values.map(JSONValue.string)))])
    }

    private static func labels(runId: String, settings: KubernetesSettings, knitId: String? = nil) -> (
        String, JSONValue
    ) {
        var labels: [(String, JSONValue)] = [
            (dataLabel, .string(knitId ?? "")), (instanceLabel, .string(settings.instance)), (runLabel, .string(runId)),
        ]
        if knitId == nil { labels.removeFirst() }
        return ("labels", .object(labels))
    }

    private static func podVolume(name: String, claim: String, readOnly: Bool) -> JSONValue {
        .object([
            ("name", .string(name)),
            ("persistentVolumeClaim", .object([("claimName", .string(claim)), ("readOnly", .bool(readOnly))])),
        ])
    }

    /// A PersistentVolume over `hostPath` and the claim bound to it both ways (`claimRef` and `volumeName`), with
    /// the empty storage class so no provisioner or other claim takes either.
    private static func volume(
        role: KubernetesVolume.Role,
        knitId: String,
        hostPath: String,
        name: String,
        runId: String,
        settings: KubernetesSettings
    ) throws(KubernetesObjectError) -> KubernetesVolume {
        guard KubernetesNames.isLabelValue(knitId), !knitId.isEmpty else {
            throw KubernetesObjectError("Data id \(JSONValue.quoted(knitId)) cannot be a label value")
        }
        let source: (String, JSONValue)
        switch settings.volumes {
        case .hostPath:
            // `Directory`: the store made it before the Run starts; the kubelet must not create an empty one.
            source = ("hostPath", .object([("path", .string(hostPath)), ("type", .string("Directory"))]))
        case .nfs(let server, let export):
            let prefix = settings.dataDirectory + "/"
            guard hostPath.hasPrefix(prefix) else {
                throw KubernetesObjectError(
                    "Data directory \(JSONValue.quoted(hostPath)) is outside the exported \(settings.dataDirectory)"
                )
            }
            let relative = hostPath.dropFirst(prefix.count)
            source = (
                "nfs",
                .object([
                    ("server", .string(server)),
                    ("path", .string(export == "/" ? "/" + relative : export + "/" + relative)),
                    ("readOnly", .bool(role == .input)),
                ])
            )
        }
        let accessModes: JSONValue = .array([.string("ReadWriteOnce")])
        let capacity: JSONValue = .object([("storage", .string(settings.storageCapacity.text))])
        let labels = labels(runId: runId, settings: settings, knitId: knitId)
        let persistentVolume: JSONValue = .object([
            ("apiVersion", .string("v1")),
            ("kind", .string("PersistentVolume")),
            ("metadata", .object([("name", .string(name)), labels])),
            (
                "spec",
                .object([
                    ("capacity", capacity),
                    ("accessModes", accessModes),
                    // Knit deletes the Data's directory itself (`knit data rm`); the cluster must never.
                    ("persistentVolumeReclaimPolicy", .string("Retain")),
                    ("storageClassName", .string("")),
                    ("volumeMode", .string("Filesystem")),
                    (
                        "claimRef",
                        .object([
                            ("apiVersion", .string("v1")), ("kind", .string("PersistentVolumeClaim")),
                            ("namespace", .string(settings.namespace)), ("name", .string(name)),
                        ])
                    ),
                    source,
                ])
            ),
        ])
        let persistentVolumeClaim: JSONValue = .object([
            ("apiVersion", .string("v1")),
            ("kind", .string("PersistentVolumeClaim")),
            ("metadata", .object([("name", .string(name)), ("namespace", .string(settings.namespace)), labels])),
            (
                "spec",
                .object([
                    ("accessModes", accessModes),
                    ("resources", .object([("requests", capacity)])),
                    ("storageClassName", .string("")),
                    ("volumeMode", .string("Filesystem")),
                    ("volumeName", .string(name)),
                ])
            ),
        ])
        return KubernetesVolume(
            role: role,
            knitId: knitId,
            name: name,
            persistentVolume: persistentVolume,
            persistentVolumeClaim: persistentVolumeClaim
        )
    }

    private static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }
}
