internal import Glibc
internal import KnitCore
public import KnitKubeClient
public import KnitKubernetes
public import KnitScheduler
internal import Synchronization

/// Runs each Run as a Kubernetes Job over statically bound PersistentVolumes, through ``KubeAPI``.
///
/// Everything is found again by labels (`knit.run`, `knit.executor`), so a restarted scheduler needs no state
/// of its own. The only memory kept between calls is hints: when a pod was first seen failing to pull its image
/// (a restart waits the grace period once more) and which Runs' logs were already copied (a restart copies them
/// once more, replacing the file with the same bytes).
///
/// The log is copied from the pod log API into ``RunLaunch/logPath`` when the Run ends (before
/// ``observe(runIds:)`` first says `.exited`), not followed while it runs.
public struct KubernetesExecutor: Executor {
    public let api: KubeAPI
    public let settings: KubernetesSettings
    /// Replaces the Job's `imagePullPolicy` (`Always`) when set: `Never` or `IfNotPresent` for images preloaded
    /// into the nodes' runtime (a test cluster without a registry).
    public let imagePullPolicy: String?
    /// How long the claims may take to be Bound before ``start(_:)`` gives up (`timedOut`).
    public let bindTimeout: Duration
    /// How long a pod may fail to pull its image before the Run is reported exited 255 `[ImageNotFound]`: a
    /// registry that is briefly away must not fail a Run.
    public let pullFailureGrace: Duration
    /// How long ``start(_:)`` waits for the pod's process to run before it returns anyway (the driver observes).
    public let startWait: Duration
    private let hints = Hints()

    public init(
        api: KubeAPI,
        settings: KubernetesSettings,
        imagePullPolicy: String? = nil,
        bindTimeout: Duration = .seconds(30),
        pullFailureGrace: Duration = .seconds(60),
        startWait: Duration = .seconds(30)
    ) {
        self.api = api
        self.settings = settings
        self.imagePullPolicy = imagePullPolicy
        self.bindTimeout = bindTimeout
        self.pullFailureGrace = pullFailureGrace
        self.startWait = startWait
    }

    /// Annotation on the Job naming the log file on the Knit host, so a restarted scheduler still knows where
    /// the pod's log goes.
    public static let logPathAnnotation = "knit.log-path"

    public func workerName(runId: String) -> String { KubernetesObjects.jobName(runId: runId) }

    // MARK: Paths

    private var namespacePath: String { "/api/v1/namespaces/\(settings.namespace)" }
    private var volumesPath: String { "/api/v1/persistentvolumes" }
    private var claimsPath: String { namespacePath + "/persistentvolumeclaims" }
    private var podsPath: String { namespacePath + "/pods" }
    private var jobsPath: String { "/apis/batch/v1/namespaces/\(settings.namespace)/jobs" }

    // MARK: start

    public func start(_ launch: RunLaunch) async throws {
        let runId = launch.runId
        let objects: KubernetesRunObjects
        do {
            objects = try KubernetesObjects.build(KubernetesRun(launch), settings: settings)
        } catch {
            throw ExecutorError(.invalidLaunch, "Run \(runId): \(error)")
        }
        for volume in objects.volumes {
            try await createOrUndo(volumesPath, volume.persistentVolume, name: volume.name, runId: runId)
        }
        for volume in objects.volumes {
            try await createOrUndo(claimsPath, volume.persistentVolumeClaim, name: volume.name, runId: runId)
        }
        try await waitUntilBound(objects.volumes.map(\.name), runId: runId)
        let job = Self.adjusted(objects.job, imagePullPolicy: imagePullPolicy, logPath: launch.logPath)
        try await createOrUndo(jobsPath, job, name: objects.jobName, runId: runId)
        // Returns once the process runs or has ended; a pod still pulling or unschedulable is the driver's to
        // observe on later ticks.
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: startWait)
        while clock.now < deadline {
            let seen = try? await observe(runIds: [runId])
            switch seen?[runId] {
            case .running, .exited: return
            default: try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// ``createOnce(_:_:name:runId:)``, and when the server refuses the Run for good (`startFailed`: RBAC;
    /// `invalidLaunch`: 400/422) removes what this start made before, as the contract wants: the driver fails
    /// the Run and no object of it is left.
    private func createOrUndo(_ collection: String, _ object: JSONValue, name: String, runId: String) async throws {
        do {
            try createOnce(collection, object, name: name, runId: runId)
        } catch let error as ExecutorError where error.code == .startFailed || error.code == .invalidLaunch {
            try? await cleanup(runId: runId)
            throw error
        }
    }

    /// Creates `object` in `collection`; one already there for the same Run (an earlier attempt of this start)
    /// is taken as is, one of another Run is `alreadyExists`.
    private func createOnce(_ collection: String, _ object: JSONValue, name: String, runId: String) throws {
        do {
            _ = try api.create(collection, object)
        } catch  where error.status == 409 {
            let existing = try call(runId) { () throws(KubeAPIError) in try api.get(collection + "/" + name) }
            let owner = existing?["metadata"]?["labels"]?[KubernetesObjects.runLabel]?.stringValue
            guard owner == runId else {
                throw ExecutorError(.alreadyExists, "Run \(runId): \(name) exists and belongs to Run \(owner ?? "?")")
            }
        } catch {
            throw Self.executorError(error, runId: runId, creating: true)
        }
    }

    private func waitUntilBound(_ names: [String], runId: String) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: bindTimeout)
        var waiting = names
        while !waiting.isEmpty {
            var still: [String] = []
            for name in waiting {
                let claim = try call(runId) { () throws(KubeAPIError) in try api.get(claimsPath + "/" + name) }
                if claim?["status"]?["phase"]?.stringValue != "Bound" { still.append(name) }
            }
            waiting = still
            if waiting.isEmpty { return }
            guard clock.now < deadline else {
                throw ExecutorError(
                    .timedOut,
                    "Run \(runId): claims \(waiting.joined(separator: ", ")) not Bound within \(bindTimeout)"
                )
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    // MARK: observe

    public func observe(runId: String) async throws -> ExecutorObservation {
        try await observe(runIds: [runId])[runId] ?? .notFound
    }

    public func observe(runIds: [String]) async throws -> [String: ExecutorObservation] {
        let selector = KubernetesObjects.instanceSelector(settings)
        let jobs = try call("") { () throws(KubeAPIError) in try api.list(jobsPath, labelSelector: selector).items }
        let pods = try call("") { () throws(KubeAPIError) in try api.list(podsPath, labelSelector: selector).items }
        var answer: [String: ExecutorObservation] = [:]
        for runId in runIds {
            let job = jobs.first { Self.runId(of: $0) == runId }
            // The newest pod (there is one: backoffLimit 0 and restartPolicy Never).
            let pod = pods.filter { Self.runId(of: $0) == runId }.last
            let seen: ExecutorObservation
            if let pod {
                seen = observation(of: pod, runId: runId)
            } else if job != nil {
                seen = .starting
            } else {
                seen = .notFound
            }
            if case .exited = seen, let pod, let logPath = Self.logPath(of: job, pod: pod) {
                // Before the driver hears of the end: the log file must be whole by then.
                copyLogOnce(runId: runId, pod: pod, to: logPath)
            }
            answer[runId] = seen
        }
        return answer
    }

    private func observation(of pod: JSONValue, runId: String) -> ExecutorObservation {
        let statuses = pod["status"]?["containerStatuses"]?.arrayValue ?? []
        guard let status = statuses.first(where: { $0["name"]?.stringValue == KubernetesObjects.containerName })
        else { return .starting }
        let state = status["state"]
        if let terminated = state?["terminated"] {
            hints.pullFailureEnded(runId)
            let code = Int32(terminated["exitCode"]?.numberText ?? "") ?? 255
            let reason = terminated["reason"]?.stringValue ?? ""
            if reason == "OOMKilled" {
                let limit = pod["spec"]?["containers"]?.arrayValue?.first?["resources"]?["limits"]?["memory"]
                let text = limit?.stringValue.map { " of \($0) bytes" } ?? ""
                return .exited(code: code, oomKilled: true, message: "OOMKilled: exceeded its memory limit\(text)")
            }
            let detail = terminated["message"]?.stringValue.map { ": \($0)" } ?? ""
            return .exited(code: code, oomKilled: false, message: "exited with code \(code)" + detail)
        }
        if state?["running"] != nil { return .running }
        if let waiting = state?["waiting"] {
            let reason = waiting["reason"]?.stringValue ?? ""
            if ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"].contains(reason) {
                let since = hints.pullFailureSeen(runId)
                if reason == "InvalidImageName" || ContinuousClock.now - since >= pullFailureGrace {
                    let detail = waiting["message"]?.stringValue ?? reason
                    return .exited(code: 255, oomKilled: false, message: "[ImageNotFound] \(detail)")
                }
            }
        }
        return .starting
    }

    // MARK: the log

    private func copyLogOnce(runId: String, pod: JSONValue, to logPath: String) {
        guard hints.shouldCopyLog(runId), let name = pod["metadata"]?["name"]?.stringValue else { return }
        let copied = copyLog(pod: name, to: logPath)
        if !copied { hints.logCopyFailed(runId) }
    }

    /// Replaces `logPath` with the pod's whole log (stdout and stderr merged, as the kubelet keeps it).
    @discardableResult
    private func copyLog(pod: String, to logPath: String) -> Bool {
        let fd = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        do {
            try api.stream(podsPath + "/\(pod)/log?container=\(KubernetesObjects.containerName)") { chunk in
                var offset = 0
                while offset < chunk.count {
                    let written = write(fd, chunk.baseAddress! + offset, chunk.count - offset)
                    guard written > 0 else { throw ExecutorError(.commandFailed, "cannot write \(logPath)") }
                    offset += written
                }
            }
            return true
        } catch {
            return false
        }
    }

    // MARK: stop, cleanup, list

    public func stop(runId: String, grace: Duration) async throws {
        let selector = KubernetesObjects.selector(runId: runId, settings: settings)
        let job = try call(runId) { () throws(KubeAPIError) in
            try api.get(jobsPath + "/" + KubernetesObjects.jobName(runId: runId))
        }
        let pods = try call(runId) { () throws(KubeAPIError) in try api.list(podsPath, labelSelector: selector).items }
        let seconds = max(0, Int(grace.components.seconds))
        // The pods go first, with the grace (SIGTERM, then SIGKILL after it); deleting the Job alone would
        // give them the default 30 s. The Job goes with Background propagation.
        for pod in pods {
            guard let name = pod["metadata"]?["name"]?.stringValue else { continue }
            try evict(pod: name, graceSeconds: seconds, runId: runId)
        }
        try call(runId) { () throws(KubeAPIError) in
            try api.delete(jobsPath + "/" + KubernetesObjects.jobName(runId: runId))
        }
        for pod in pods {
            guard let name = pod["metadata"]?["name"]?.stringValue else { continue }
            if let logPath = Self.logPath(of: job, pod: pod), hints.shouldCopyLog(runId) {
                // Following the log ends when the container has exited: the file then holds all of it.
                let fd = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                if fd >= 0 {
                    defer { close(fd) }
                    try? api.stream(podsPath + "/\(name)/log?container=\(KubernetesObjects.containerName)&follow=true")
                    { chunk in
                        _ = write(fd, chunk.baseAddress!, chunk.count)
                    }
                }
            }
        }
        // Once the container has exited: the pod object itself lingers ~10 s more while the kubelet tears down
        // its sandbox and volumes, and meanwhile `observe` says `.exited` from its terminated state.
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: grace + .seconds(30))
        while true {
            switch try await observe(runIds: [runId])[runId] {
            case .exited, .notFound, nil: return
            default: break
            }
            guard clock.now < deadline else {
                throw ExecutorError(.timedOut, "Run \(runId): its pod still runs \(grace + .seconds(30)) after stop")
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    public func cleanup(runId: String) async throws {
        let selector = KubernetesObjects.selector(runId: runId, settings: settings)
        let collections = [jobsPath, podsPath, claimsPath, volumesPath]
        for collection in collections {
            let items = try call(runId) { () throws(KubeAPIError) in
                try api.list(collection, labelSelector: selector).items
            }
            for item in items {
                guard let name = item["metadata"]?["name"]?.stringValue else { continue }
                if collection == podsPath {
                    try evict(pod: name, graceSeconds: 0, runId: runId)
                } else {
                    try call(runId) { () throws(KubeAPIError) in try api.delete(collection + "/" + name) }
                }
            }
        }
        try await waitUntilGone(collections, selector: selector, runId: runId, within: .seconds(60))
        hints.forget(runId)
    }

    public func list() async throws -> [String] {
        let selector = KubernetesObjects.instanceSelector(settings)
        var ids: Set<String> = []
        for collection in [jobsPath, podsPath, claimsPath, volumesPath] {
            let items = try call("") { () throws(KubeAPIError) in
                try api.list(collection, labelSelector: selector).items
            }
            for item in items { if let id = Self.runId(of: item) { ids.insert(id) } }
        }
        return ids.sorted()
    }

    /// Deletes a pod with a grace period of our choosing. `KubeAPI.delete` sends DeleteOptions in the body, and
    /// the API server then ignores a `gracePeriodSeconds` query parameter; an Eviction (a create) carries its own
    /// DeleteOptions. A pod already gone is not an error.
    private func evict(pod name: String, graceSeconds: Int, runId: String) throws {
        let eviction: JSONValue = .object([
            ("apiVersion", .string("policy/v1beta1")), ("kind", .string("Eviction")),
            ("metadata", .object([("name", .string(name)), ("namespace", .string(settings.namespace))])),
            ("deleteOptions", .object([("gracePeriodSeconds", .number("\(graceSeconds)"))])),
        ])
        do {
            _ = try api.create(podsPath + "/\(name)/eviction", eviction)
        } catch  where error.status == 404 {
            return
        } catch {
            throw Self.executorError(error, runId: runId, creating: false)
        }
    }

    private func waitUntilGone(_ collections: [String], selector: String, runId: String, within: Duration)
        async throws
    {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: within)
        while true {
            var left = 0
            for collection in collections {
                left += try call(runId) { () throws(KubeAPIError) in
                    try api.list(collection, labelSelector: selector).items.count
                }
            }
            if left == 0 { return }
            guard clock.now < deadline else {
                throw ExecutorError(.timedOut, "Run \(runId): \(left) objects still exist after \(within)")
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    // MARK: helpers

    private static func runId(of object: JSONValue) -> String? {
        object["metadata"]?["labels"]?[KubernetesObjects.runLabel]?.stringValue
    }

    private static func logPath(of job: JSONValue?, pod: JSONValue) -> String? {
        let key = logPathAnnotation
        return job?["metadata"]?["annotations"]?[key]?.stringValue
            ?? pod["metadata"]?["annotations"]?[key]?.stringValue
    }

    /// The built Job with the pull policy replaced and the log path annotated on the Job and its pod.
    static func adjusted(_ job: JSONValue, imagePullPolicy: String?, logPath: String?) -> JSONValue {
        var job = job
        if let logPath {
            let annotation: (String, JSONValue) = ("annotations", .object([(logPathAnnotation, .string(logPath))]))
            job = job.updating(["metadata"]) { $0.appending(annotation) }
            job = job.updating(["spec", "template", "metadata"]) { $0.appending(annotation) }
        }
        if let imagePullPolicy {
            job = job.updating(["spec", "template", "spec", "containers"]) { containers in
                .array(
                    (containers.arrayValue ?? []).map {
                        $0.updating(["imagePullPolicy"]) { _ in .string(imagePullPolicy) }
                    }
                )
            }
        }
        return job
    }

    @discardableResult
    private func call<T>(_ runId: String, _ body: () throws(KubeAPIError) -> T) throws(ExecutorError) -> T {
        do { return try body() } catch { throw Self.executorError(error, runId: runId, creating: false) }
    }

    private static func executorError(_ error: any Error, runId: String, creating: Bool) -> ExecutorError {
        if let error = error as? ExecutorError { return error }
        let subject = runId.isEmpty ? "" : "Run \(runId): "
        if let error = error as? KubeAPIError, creating, error.status == 422 || error.status == 400 {
            return ExecutorError(.invalidLaunch, subject + "\(error)")
        }
        if let error = error as? KubeAPIError, creating, error.status == 403 {
            // The account may not create the Run's objects (RBAC): the Run fails with the server's words, which
            // name the verb and resource, instead of waiting for a worker that cannot come.
            return ExecutorError(.startFailed, subject + "\(error)")
        }
        return ExecutorError(.commandFailed, subject + "\(error)")
    }
}

/// What the executor remembers between calls; losing it costs a repeated wait or copy, never a wrong answer.
private final class Hints: Sendable {
    private struct State {
        var pullFailures: [String: ContinuousClock.Instant] = [:]
        var logsCopied: Set<String> = []
    }
    private let state = Mutex(State())

    func pullFailureSeen(_ runId: String) -> ContinuousClock.Instant {
        state.withLock { state in
            if let seen = state.pullFailures[runId] { return seen }
            let now = ContinuousClock.now
            state.pullFailures[runId] = now
            return now
        }
    }

    func pullFailureEnded(_ runId: String) { state.withLock { _ = $0.pullFailures.removeValue(forKey: runId) } }

    /// True the first time for a Run: the caller copies its log.
    func shouldCopyLog(_ runId: String) -> Bool { state.withLock { $0.logsCopied.insert(runId).inserted } }

    func logCopyFailed(_ runId: String) { state.withLock { _ = $0.logsCopied.remove(runId) } }

    func forget(_ runId: String) {
        state.withLock {
            $0.pullFailures.removeValue(forKey: runId)
            $0.logsCopied.remove(runId)
        }
    }
}

extension JSONValue {
    fileprivate var numberText: String? {
        if case .number(let text) = self { return text }
        return nil
    }

    /// This object with the member at `path` replaced by `transform` of it (`.null` when absent, then added).
    fileprivate func updating(_ path: [String], _ transform: (JSONValue) -> JSONValue) -> JSONValue {
        guard let key = path.first else { return transform(self) }
        guard case .object(var members) = self else { return self }
        let rest = Array(path.dropFirst())
        if let index = members.firstIndex(where: { $0.0 == key }) {
            members[index].1 = members[index].1.updating(rest, transform)
        } else {
            members.append((key, JSONValue.object([]).updating(rest, transform)))
        }
        return .object(members)
    }

    fileprivate func appending(_ member: (String, JSONValue)) -> JSONValue {
        guard case .object(var members) = self else { return .object([member]) }
        members.append(member)
        return .object(members)
    }
}
