internal import Glibc
internal import KnitCore
internal import KnitKubeClient
internal import KnitScheduler
internal import Synchronization

/// This executor instance's Jobs and Pods as the API server last told them: one list, then one watch, per
/// collection, each on a thread of its own. A watch that ends (its `timeoutSeconds`) continues from the last
/// resourceVersion it saw (bookmarks keep that recent); an `ERROR` event (410: too old) or a broken stream
/// lists again. Answering ``KubernetesExecutor/observe(runIds:)`` from here costs no request.
final class WatchCache: Sendable {
    /// Objects of one collection, by Run id.
    struct Snapshot {
        var jobs: [String: JSONValue] = [:]
        var pods: [String: [JSONValue]] = [:]
    }

    private struct Feed {
        /// By object name.
        var objects: [String: JSONValue] = [:]
        /// A list has filled `objects` and no later list failed.
        var synced = false
        var failure: String?
    }

    private struct State {
        var feeds = [Feed(), Feed()]
        var running = false
        /// Raised by ``stop()``: the threads see it within about a second and end.
        var generation = 0
    }

    private let api: KubeAPI
    /// The Jobs' collection, then the Pods'.
    private let paths: [String]
    private let labelSelector: String
    private let watchTimeoutSeconds: Int
    private let state = Mutex(State())

    init(api: KubeAPI, paths: [String], labelSelector: String, watchTimeoutSeconds: Int) {
        precondition(paths.count == 2, "a Jobs' and a Pods' collection")
        self.api = api
        self.paths = paths
        self.labelSelector = labelSelector
        self.watchTimeoutSeconds = watchTimeoutSeconds
    }

    /// Starts the two feeds unless they run.
    func start() {
        let generation: Int? = state.withLock { state in
            guard !state.running else { return nil }
            state.running = true
            state.feeds = [Feed(), Feed()]
            return state.generation
        }
        guard let generation else { return }
        for index in paths.indices {
            startThread { [self] in feed(index, generation: generation) }
        }
    }

    /// Ends the feeds (their requests within about a second); ``start()`` begins anew.
    func stop() {
        state.withLock { state in
            state.running = false
            state.generation += 1
        }
    }

    /// The objects once both collections have been listed (starting the feeds if need be).
    /// - Throws: `commandFailed` when a collection cannot be listed within `within`.
    func synced(within: Duration = .seconds(10)) async throws -> Snapshot {
        start()
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: within)
        while true {
            let ready: Snapshot? = state.withLock { state in
                guard state.feeds.allSatisfy(\.synced) else { return nil }
                var snapshot = Snapshot()
                for job in state.feeds[0].objects.values {
                    if let runId = KubernetesExecutor.runId(of: job) { snapshot.jobs[runId] = job }
                }
                for pod in state.feeds[1].objects.values {
                    if let runId = KubernetesExecutor.runId(of: pod) { snapshot.pods[runId, default: []].append(pod) }
                }
                return snapshot
            }
            if let ready { return ready }
            guard clock.now < deadline else {
                let failure = state.withLock { $0.feeds.compactMap(\.failure).joined(separator: "; ") }
                throw ExecutorError(
                    .commandFailed,
                    "cannot list the cluster's Jobs and Pods: "
                        + (failure.isEmpty ? "no answer within \(within)" : failure)
                )
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    private struct Relist: Error, CustomStringConvertible {
        var description: String
    }

    private func isCurrent(_ generation: Int) -> Bool { state.withLock { $0.generation == generation } }

    /// One collection's list-then-watch loop, until ``stop()``.
    private func feed(_ index: Int, generation: Int) {
        let path = paths[index]
        let cancelled: @Sendable () -> Bool = { [self] in !isCurrent(generation) }
        while isCurrent(generation) {
            var listing = true
            do {
                let listed = try api.list(path, labelSelector: labelSelector)
                var objects: [String: JSONValue] = [:]
                for item in listed.items { objects[KubernetesExecutor.name(of: item)] = item }
                update(index, generation) { feed in feed = Feed(objects: objects, synced: true, failure: nil) }
                listing = false
                var version = listed.resourceVersion
                while isCurrent(generation) {
                    let clock = ContinuousClock()
                    let began = clock.now
                    var events = 0
                    try api.watch(
                        path,
                        labelSelector: labelSelector,
                        resourceVersion: version,
                        timeoutSeconds: watchTimeoutSeconds,
                        isCancelled: cancelled
                    ) { event in
                        events += 1
                        let object = event.object
                        switch event.type {
                        case "ADDED", "MODIFIED":
                            update(index, generation) { $0.objects[KubernetesExecutor.name(of: object)] = object }
                        case "DELETED":
                            update(index, generation) { $0.objects[KubernetesExecutor.name(of: object)] = nil }
                        case "BOOKMARK":
                            break
                        default:
                            throw Relist(description: object["message"]?.stringValue ?? event.type)
                        }
                        if let next = object["metadata"]?["resourceVersion"]?.stringValue { version = next }
                    }
                    // A server that ends watches at once must not be asked in a tight loop.
                    if events == 0 && clock.now - began < .seconds(1) { pause(generation) }
                }
            } catch {
                guard isCurrent(generation) else { return }
                update(index, generation) { feed in
                    feed.failure = "\(error)"
                    // Until a list succeeds again, observe waits (and then fails) rather than trust old objects.
                    if listing { feed.synced = false }
                }
                if !(error is Relist) { pause(generation) }
            }
        }
    }

    private func update(_ index: Int, _ generation: Int, _ change: (inout Feed) -> Void) {
        state.withLock { state in
            guard state.generation == generation else { return }
            change(&state.feeds[index])
        }
    }

    /// About a second, shorter when stopped meanwhile.
    private func pause(_ generation: Int) {
        for _ in 0..<10 where isCurrent(generation) { usleep(100_000) }
    }
}

/// Runs `body` on a new detached thread: a blocking request must not hold a thread of Swift's cooperative pool.
func startThread(_ body: @escaping @Sendable () -> Void) {
    final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var thread = pthread_t()
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    let created = pthread_create(
        &thread,
        nil,
        { context in
            Unmanaged<Box>.fromOpaque(context!).takeRetainedValue().body()
            return nil
        },
        context
    )
    precondition(created == 0, "pthread_create failed: \(created)")
    pthread_detach(thread)
}
