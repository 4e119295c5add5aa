internal import Glibc
internal import KnitCore
public import KnitKubeClient
public import KnitKubernetes
public import KnitScheduler
internal import Synchronization

/// Runs each Run as a Kubernetes Job over statically bound PersistentVolumes, through ``KubeAPI``.
///
/// Everything is found again by labels (`knit.run`, `knit.executor`), so a restarted scheduler needs no state
/// of its own. ``observe(runIds:)`` answers from a cache of this instance's Jobs and Pods, fed by one list and
/// one watch per collection on threads of the executor's own (started by the first call, stopped by
/// ``shutdown()`` or when the last copy of the executor goes). Each running Run's pod log is followed into
/// ``RunLaunch/logPath`` on a thread of its own while the Run runs.
///
/// What is remembered between calls is hints: when a pod was first seen failing to pull, which pod was a Run's
/// first, which Runs this instance is stopping, and a Run's end once its log is whole. A new instance (a
/// restarted scheduler) relearns them from the cluster and the log files.
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
    /// How long one watch request lasts before it is renewed from where it stopped (the server ends it).
    public let watchTimeoutSeconds: Int
    private let live: Live

    public init(
        api: KubeAPI,
        settings: KubernetesSettings,
        imagePullPolicy: String? = nil,
        bindTimeout: Duration = .seconds(30),
        pullFailureGrace: Duration = .seconds(60),
        startWait: Duration = .seconds(30),
        watchTimeoutSeconds: Int = 300
    ) {
        self.api = api
        self.settings = settings
        self.imagePullPolicy = imagePullPolicy
        self.bindTimeout = bindTimeout
        self.pullFailureGrace = pullFailureGrace
        self.startWait = startWait
        self.watchTimeoutSeconds = watchTimeoutSeconds
        let namespacePath = "/api/v1/namespaces/\(settings.namespace)"
        live = Live(
            cache: WatchCache(
                api: api,
                paths: ["/apis/batch/v1/namespaces/\(settings.namespace)/jobs", namespacePath + "/pods"],
                labelSelector: KubernetesObjects.instanceSelector(settings),
                watchTimeoutSeconds: watchTimeoutSeconds
            ),
            followers: LogFollowers(api: api, podsPath: namespacePath + "/pods")
        )
    }

    /// Annotation on the Job naming the log file on the Knit host, so a restarted scheduler still knows where
    /// the pod's log goes.
    public static let logPathAnnotation = "knit.log-path"

    /// How long, once the container has ended, the log follower may take to hand over the last bytes before
    /// the log is read once more instead (the kubelet of 1.20 looks at a followed container every 5 s).
    static let logDrainWait: Duration = .seconds(10)

    public func workerName(runId: String) -> String { KubernetesObjects.jobName(runId: runId) }

    /// Ends the watches and log followers (each within about a second). Later calls start them again.
    /// Dropping the last copy of the executor does the same.
    public func shutdown() {
        live.cache.stop()
        live.followers.stopAll()
    }

    // MARK: Paths

    private var namespacePath: String { "/api/v1/namespaces/\(settings.namespace)" }
    private var volumesPath: String { "/api/v1/persistentvolumes" }
    private var claimsPath: String { namespacePath + "/persistentvolumeclaims" }
    private var podsPath: String { namespacePath + "/pods" }
    private var jobsPath: String { "/apis/batch/v1/namespaces/\(settings.namespace)/jobs" }
    private var hints: Hints { live.hints }

    // MARK: start

    public func start(_ launch: RunLaunch) async throws {
        let runId = launch.runId
        let objects: KubernetesRunObjects
        do {
            objects = try KubernetesObjects.build(KubernetesRun(launch), settings: settings)
        } catch {
            throw ExecutorError(.invalidLaunch, "Run \(runId): \(error)")
        }
        live.cache.start()
        let existing: JSONValue?
        do {
            existing = try api.get(jobsPath + "/" + objects.jobName)
        } catch {
            // An account that may not even read the Run's Job (RBAC) can never start or watch it: the Run fails
            // with the server's words, as when a create is refused, rather than staying `starting` for good.
            throw Self.executorError(error, runId: runId, creating: error.status == 403)
        }
        if let existing {
            // The Run's Job is there already: a repeated start, or one after a restart. A Job still at work is
            // this Run's worker and is adopted, never created twice; a finished one is from an earlier attempt
            // (a retried Run keeps its id), which the driver removes before it starts again.
            let owner = Self.runId(of: existing)
            guard owner == runId, !Self.isFinished(existing) else {
                throw ExecutorError(
                    .alreadyExists,
                    "Run \(runId): Job \(objects.jobName) exists"
                        + (owner == runId ? " and has finished" : " and belongs to Run \(owner ?? "?")")
                )
            }
        } else {
            for volume in objects.volumes {
                try await createOrUndo(volumesPath, volume.persistentVolume, name: volume.name, runId: runId)
            }
            for volume in objects.volumes {
                try await createOrUndo(claimsPath, volume.persistentVolumeClaim, name: volume.name, runId: runId)
            }
            try await waitUntilBound(objects.volumes.map(\.name), runId: runId)
            let job = Self.adjusted(objects.job, imagePullPolicy: imagePullPolicy, logPath: launch.logPath)
            try await createOrUndo(jobsPath, job, name: objects.jobName, runId: runId)
        }
        // Returns once the process runs or has ended, or after `startWait` (a pod still pulling is the driver's
        // to observe). A pod no node can take is `timedOut` at once: the driver then leaves the Run `starting`
        // (not `running`, as a return would make it) and observes it, with the reason, on later ticks.
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: startWait)
        while clock.now < deadline {
            switch try? await observe(runIds: [runId])[runId] {
            case .running, .exited: return
            case .pending(let reason): throw ExecutorError(.timedOut, "Run \(runId): its pod waits: \(reason)")
            default: try? await Task.sleep(for: .milliseconds(50))
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
            let owner = existing.flatMap(Self.runId(of:))
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

    /// Answers from the watch cache: no request, but for a Run whose Job the cache does not hold (one GET says
    /// whether the cache lags behind a create or the Job is really gone).
    public func observe(runIds: [String]) async throws -> [String: ExecutorObservation] {
        let snapshot = try await live.cache.synced()
        var answer: [String: ExecutorObservation] = [:]
        for runId in runIds {
            answer[runId] = try await observation(
                runId: runId,
                cachedJob: snapshot.jobs[runId],
                pods: snapshot.pods[runId] ?? []
            )
        }
        return answer
    }

    private func observation(runId: String, cachedJob: JSONValue?, pods: [JSONValue]) async throws
        -> ExecutorObservation
    {
        if let ended = hints.ended(runId) { return ended }
        let stopping = hints.isStopping(runId)
        var job = cachedJob
        if job == nil {
            job = try call(runId) { () throws(KubeAPIError) in
                try api.get(jobsPath + "/" + KubernetesObjects.jobName(runId: runId))
            }
        }
        // Knit deletes a Job only in stop and cleanup; any other deletion of the Job or its pod is someone
        // else's, and the Run is gone (the driver fails it 254) even though its container may still be
        // shutting down: a Job controller would even replace the pod.
        guard let job, job["metadata"]?["deletionTimestamp"] == nil || stopping else {
            return stopping ? try await podObservation(runId: runId, job: nil, pods: pods) : .notFound
        }
        return try await podObservation(runId: runId, job: job, pods: pods)
    }

    /// The Run as its first pod shows it; `job` nil when the Job is gone while Knit stops the Run.
    private func podObservation(runId: String, job: JSONValue?, pods: [JSONValue]) async throws
        -> ExecutorObservation
    {
        let stopping = hints.isStopping(runId)
        let ordered = pods.sorted {
            let left = ($0["metadata"]?["creationTimestamp"]?.stringValue ?? "", Self.name(of: $0))
            let right = ($1["metadata"]?["creationTimestamp"]?.stringValue ?? "", Self.name(of: $1))
            return left < right
        }
        let firstUID = hints.firstPod(runId, otherwise: ordered.first.flatMap(Self.uid(of:)))
        guard let firstUID else { return job == nil ? .notFound : .starting }
        guard let pod = ordered.first(where: { Self.uid(of: $0) == firstUID }) else {
            // The Run's pod was seen and is gone, or replaced by the Job controller: the process that ran is no
            // more, whatever a replacement pod does.
            return .notFound
        }
        let replaced = ordered.count > 1
        let deleted = pod["metadata"]?["deletionTimestamp"] != nil
        if (replaced || deleted) && !stopping { return .notFound }
        let seen = containerObservation(of: pod, runId: runId, killedByUs: stopping || deleted)
        let logPath = Self.logPath(of: job, pod: pod)
        switch seen {
        case .running:
            if let logPath { live.followers.follow(runId: runId, pod: pod, logPath: logPath) }
        case .exited:
            // Before the driver hears of the end: the log file must be whole by then.
            if let logPath { await live.followers.complete(runId: runId, pod: pod, logPath: logPath) }
            hints.setEnded(runId, seen)
        default:
            break
        }
        return seen
    }

    /// `killedByUs`: the pod is being stopped or deleted, so a SIGKILL is that and not the memory limit.
    private func containerObservation(of pod: JSONValue, runId: String, killedByUs: Bool) -> ExecutorObservation {
        let statuses = pod["status"]?["containerStatuses"]?.arrayValue ?? []
        guard let status = statuses.first(where: { $0["name"]?.stringValue == KubernetesObjects.containerName })
        else { return Self.unschedulable(pod).map { .pending(reason: $0) } ?? .starting }
        let state = status["state"]
        if let terminated = state?["terminated"] {
            hints.pullFailureEnded(runId)
            let code = Int32(terminated["exitCode"]?.numberText ?? "") ?? 255
            let reason = terminated["reason"]?.stringValue ?? ""
            let limit = pod["spec"]?["containers"]?.arrayValue?.first?["resources"]?["limits"]?["memory"]?.stringValue
            let text = limit.map { " of \($0) bytes" } ?? ""
            if reason == "OOMKilled" {
                return .exited(code: code, oomKilled: true, message: "OOMKilled: exceeded its memory limit\(text)")
            }
            // The pod's memory cgroup has the same limit as its one container and also holds the pause container,
            // so the kernel may kill at the pod's level first; containerd watches only the container's cgroup and
            // then reports a plain "Error" with 137 (seen on Kubernetes 1.20 once the pause binary's pages were
            // charged to the pod). Nothing else SIGKILLs a Run's container without saying so (a stop is Knit's
            // own, an eviction has its reason), so a SIGKILL under a memory limit is taken for what it nearly
            // always is.
            if reason == "Error", code == 137, !killedByUs, let limit {
                return .exited(
                    code: code,
                    oomKilled: true,
                    message: "OOMKilled: killed (SIGKILL) at its pod's memory limit of \(limit) bytes"
                )
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

    /// The scheduler's reason when no node can take the pod (`0/1 nodes are available: 1 Insufficient cpu.`).
    static func unschedulable(_ pod: JSONValue) -> String? {
        let conditions = pod["status"]?["conditions"]?.arrayValue ?? []
        guard
            let scheduled = conditions.first(where: { $0["type"]?.stringValue == "PodScheduled" }),
            scheduled["status"]?.stringValue == "False",
            scheduled["reason"]?.stringValue == "Unschedulable"
        else { return nil }
        return "Unschedulable: " + (scheduled["message"]?.stringValue ?? "no node can take the pod")
    }

    // MARK: stop, cleanup, list

    /// Deletes the Job first, orphaning its pod (so the Job controller replaces nothing, and the garbage
    /// collector does not delete the pod with its default 30 s grace), then the pod with `grace` as its grace
    /// period (SIGTERM, SIGKILL after it), and returns as soon as the container has terminated and its log is
    /// whole. The pod object lingers about 10 s more while the kubelet tears down its sandbox and volumes.
    public func stop(runId: String, grace: Duration) async throws {
        hints.setStopping(runId)
        live.cache.start()
        let selector = KubernetesObjects.selector(runId: runId, settings: settings)
        let seconds = Int(grace.components.seconds) + (grace.components.attoseconds > 0 ? 1 : 0)
        try call(runId) { () throws(KubeAPIError) in
            try api.delete(jobsPath + "/" + KubernetesObjects.jobName(runId: runId), propagationPolicy: "Orphan")
        }
        let pods = try call(runId) { () throws(KubeAPIError) in try api.list(podsPath, labelSelector: selector).items }
        for pod in pods {
            try call(runId) { () throws(KubeAPIError) in
                try api.delete(podsPath + "/" + Self.name(of: pod), gracePeriodSeconds: seconds)
            }
        }
        let clock = ContinuousClock()
        let bound = grace + .seconds(30)
        let deadline = clock.now.advanced(by: bound)
        while true {
            let left = try await live.cache.synced().pods[runId] ?? []
            let running = left.filter { pod in
                guard case .exited = containerObservation(of: pod, runId: runId, killedByUs: true) else { return true }
                return false
            }
            if running.isEmpty {
                // Completes the log and remembers the end, as observe would.
                _ = try await podObservation(runId: runId, job: nil, pods: left)
                return
            }
            guard clock.now < deadline else {
                throw ExecutorError(.timedOut, "Run \(runId): its pod still runs \(bound) after stop")
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    public func cleanup(runId: String) async throws {
        live.followers.stop(runId: runId)
        let selector = KubernetesObjects.selector(runId: runId, settings: settings)
        let collections = [jobsPath, podsPath, claimsPath, volumesPath]
        for collection in collections {
            let items = try call(runId) { () throws(KubeAPIError) in
                try api.list(collection, labelSelector: selector).items
            }
            for item in items {
                try call(runId) { () throws(KubeAPIError) in
                    try api.delete(collection + "/" + Self.name(of: item), gracePeriodSeconds: 0)
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
            try? await Task.sleep(for: .milliseconds(250))
        }
    }

    // MARK: helpers

    static func runId(of object: JSONValue) -> String? {
        object["metadata"]?["labels"]?[KubernetesObjects.runLabel]?.stringValue
    }

    static func name(of object: JSONValue) -> String { object["metadata"]?["name"]?.stringValue ?? "" }

    static func uid(of object: JSONValue) -> String? { object["metadata"]?["uid"]?.stringValue }

    /// Whether a Job has run its pod to an end (`Complete` or `Failed`, or a pod counted as such).
    static func isFinished(_ job: JSONValue) -> Bool {
        let status = job["status"]
        let conditions = status?["conditions"]?.arrayValue ?? []
        if conditions.contains(where: {
            ["Complete", "Failed"].contains($0["type"]?.stringValue ?? "") && $0["status"]?.stringValue == "True"
        }) {
            return true
        }
        return (status?["succeeded"]?.numberText).flatMap { Int($0) } ?? 0 > 0
            || (status?["failed"]?.numberText).flatMap { Int($0) } ?? 0 > 0
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

    static func executorError(_ error: any Error, runId: String, creating: Bool) -> ExecutorError {
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

/// What the copies of one executor share; when the last copy goes, its watches and log followers end.
private final class Live: Sendable {
    let cache: WatchCache
    let followers: LogFollowers
    let hints = Hints()

    init(cache: WatchCache, followers: LogFollowers) {
        self.cache = cache
        self.followers = followers
    }

    deinit {
        cache.stop()
        followers.stopAll()
    }
}

/// What the executor remembers between calls; losing it costs a repeated wait or read, never a wrong answer.
private final class Hints: Sendable {
    private struct State {
        var pullFailures: [String: ContinuousClock.Instant] = [:]
        var firstPods: [String: String] = [:]
        var ended: [String: ExecutorObservation] = [:]
        var stopping: Set<String> = []
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

    /// The uid of the Run's first pod: the one remembered, else `candidate` (then remembered).
    func firstPod(_ runId: String, otherwise candidate: String?) -> String? {
        state.withLock { state in
            if let known = state.firstPods[runId] { return known }
            state.firstPods[runId] = candidate
            return candidate
        }
    }

    /// The Run's end, once its log is whole: later observations repeat it whatever becomes of the pod.
    func ended(_ runId: String) -> ExecutorObservation? { state.withLock { $0.ended[runId] } }

    func setEnded(_ runId: String, _ seen: ExecutorObservation) { state.withLock { $0.ended[runId] = seen } }

    func isStopping(_ runId: String) -> Bool { state.withLock { $0.stopping.contains(runId) } }

    func setStopping(_ runId: String) { state.withLock { _ = $0.stopping.insert(runId) } }

    func forget(_ runId: String) {
        state.withLock {
            $0.pullFailures.removeValue(forKey: runId)
            $0.firstPods.removeValue(forKey: runId)
            $0.ended.removeValue(forKey: runId)
            $0.stopping.remove(runId)
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
