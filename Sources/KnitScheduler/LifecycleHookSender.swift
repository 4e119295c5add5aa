public import KnitCore
internal import KnitHTTP
public import Logging
internal import Synchronization

#if canImport(Glibc)
    internal import Glibc
#endif

/// Delivers the after hooks: reads the store's outbox (``LifecycleOutbox``) oldest first, POSTs each event's
/// Run Detail JSON to its URL with `X-Knit-Event-Id`, and removes the event once the URL answered 2xx.
///
/// A URL that fails (no answer, or not 2xx) is left alone for the rest of the pass and then retried after
/// ``Configuration/firstRetry``, doubling up to ``Configuration/maximumRetry``; its later events wait behind
/// the failed one, so each URL gets a Run's events in the order they happened. Other URLs go on meanwhile.
///
/// Delivery is at least once: a crash after a URL answered and before its event was removed sends that event
/// again after the restart, with the same `X-Knit-Event-Id`, which a receiver uses to drop the second copy.
/// Nothing else is sent twice: an event is removed in its own write transaction right after the answer.
public final class LifecycleHookSender: Sendable {
    public struct Configuration: Sendable {
        /// Upper bound of one POST, connection included.
        public var timeoutSeconds: Int
        public var firstRetry: Duration
        public var maximumRetry: Duration
        /// How often an empty outbox is looked at again.
        public var idlePoll: Duration
        /// Events read per pass.
        public var batch: Int

        public init(
            timeoutSeconds: Int = 10,
            firstRetry: Duration = .milliseconds(500),
            maximumRetry: Duration = .seconds(10),
            idlePoll: Duration = .milliseconds(200),
            batch: Int = 256
        ) {
            self.timeoutSeconds = timeoutSeconds
            self.firstRetry = firstRetry
            self.maximumRetry = maximumRetry
            self.idlePoll = idlePoll
            self.batch = batch
        }
    }

    public let configuration: Configuration
    private let outbox: any LifecycleOutbox
    private let client: HTTPClient
    private let logger: Logger
    private let thread = DriverThread()

    public init(outbox: any LifecycleOutbox, configuration: Configuration = Configuration(), logger: Logger) {
        self.outbox = outbox
        self.configuration = configuration
        self.logger = logger
        client = HTTPClient(
            connectTimeoutSeconds: min(configuration.timeoutSeconds, 5),
            stallTimeoutSeconds: configuration.timeoutSeconds,
            userAgent: "knit-scheduler"
        )
    }

    deinit { thread.close() }

    /// Sends on a thread of its own until ``Running/stop()``.
    public func start() -> Running {
        let running = Running()
        Task(executorPreference: thread) {
            self.loop { running.stopRequested }
            running.finished.signal()
        }
        return running
    }

    /// A sender started by ``start()``.
    public final class Running: Sendable {
        private let stopFlag = Atomic<Bool>(false)
        fileprivate let finished = Semaphore()

        fileprivate init() {}

        fileprivate var stopRequested: Bool { stopFlag.load(ordering: .relaxed) }

        /// Asks the sender to end after the POST in progress.
        public func stop() { stopFlag.store(true, ordering: .relaxed) }

        /// Blocks the calling thread until the sender has ended.
        public func join() { finished.wait() }
    }

    private struct Backoff {
        var until: ContinuousClock.Instant
        var delay: Duration
    }

    /// Passes over the outbox until `shouldStop`; blocks its thread (LMDB, libcurl, sleeps).
    private func loop(until shouldStop: () -> Bool) {
        let clock = ContinuousClock()
        var backoff: [String: Backoff] = [:]
        while !shouldStop() {
            let events: [LifecycleEvent]
            do {
                events = try outbox.pendingLifecycleEvents(limit: configuration.batch)
            } catch {
                logger.error("cannot read the hook outbox", metadata: ["error": "\(error)"])
                pause(.seconds(1), shouldStop)
                continue
            }
            let now = clock.now
            var skipped = Set(backoff.filter { $0.value.until > now }.keys)
            var delivered = 0
            for event in events where !skipped.contains(event.url) {
                if shouldStop() { return }
                if let failure = deliver(event) {
                    let delay = min(
                        backoff[event.url].map { $0.delay * 2 } ?? configuration.firstRetry,
                        configuration.maximumRetry
                    )
                    backoff[event.url] = Backoff(until: clock.now.advanced(by: delay), delay: delay)
                    skipped.insert(event.url)
                    logger.warning(
                        "after hook not delivered; trying again later",
                        metadata: [
                            "run.id": "\(event.runId)", "hook.url": "\(event.url)", "hook.event": "\(event.eventId)",
                            "error": "\(failure)", "retry.ms": "\(delay.milliseconds)",
                        ]
                    )
                    continue
                }
                backoff[event.url] = nil
                delivered += 1
                do {
                    _ = try outbox.removeLifecycleEvent(sequence: event.sequence)
                } catch {
                    // The next pass sends it again, under the same event id.
                    logger.error(
                        "cannot remove a delivered hook event",
                        metadata: ["hook.event": "\(event.eventId)", "error": "\(error)"]
                    )
                }
            }
            // A full batch that moved on may have more behind it; otherwise wait a little.
            if delivered == 0 || events.count < configuration.batch { pause(configuration.idlePoll, shouldStop) }
        }
    }

    /// POSTs one event; nil when its URL answered 2xx, else why not.
    private func deliver(_ event: LifecycleEvent) -> String? {
        do {
            let response = try HTTPRunHooks.post(
                url: event.url,
                body: event.body,
                headers: [
                    ("X-Knit-Event-Id", event.eventId), ("X-Knit-Run-Id", event.runId),
                    ("X-Knit-Run-Status", event.status),
                ],
                client: client,
                timeoutSeconds: configuration.timeoutSeconds
            )
            if response.isSuccess {
                logger.debug(
                    "after hook delivered",
                    metadata: [
                        "run.id": "\(event.runId)", "hook.url": "\(event.url)", "hook.event": "\(event.eventId)",
                    ]
                )
                return nil
            }
            return "answered \(response.status)"
        } catch {
            return "\(error.code)"
        }
    }

    private func pause(_ duration: Duration, _ shouldStop: () -> Bool) {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: duration)
        while !shouldStop() {
            let left = clock.now.duration(to: deadline)
            if left <= .zero { return }
            let slice = min(left, .milliseconds(100))
            var request = timespec(
                tv_sec: Int(slice.components.seconds),
                tv_nsec: Int(slice.components.attoseconds / 1_000_000_000)
            )
            _ = nanosleep(&request, nil)
        }
    }
}

extension Duration {
    fileprivate var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
