internal import Glibc
internal import Synchronization

/// The one thread a ``RunDriver`` runs on: a task executor whose jobs run in order on a thread of its own.
///
/// The driver blocks by design (LMDB transactions, the wake-up socket's `poll`, walks of output trees,
/// `statvfs`); run on the cooperative pool, each of those would hold one of its few threads. Tasks that prefer
/// this executor run here instead, and where they wait without blocking (an executor polling podman with
/// `Task.sleep`) they suspend and resume here too.
final class DriverThread: TaskExecutor {
    /// Marks the threads of driver threads, so ``isCurrent`` can tell them from any other.
    private static let marker: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
        return key
    }()

    /// Whether the calling thread is a driver's thread.
    static var isCurrent: Bool { pthread_getspecific(marker) != nil }
    private let jobs = Mutex<[UnownedJob]>([])
    /// One signal per job, and one more from ``close()``.
    private let available = Semaphore()

    init() {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(
            &thread,
            nil,
            { context in
                let owner = Unmanaged<DriverThread>.fromOpaque(context!).takeRetainedValue()
                owner.serve()
                return nil
            },
            context
        )
        precondition(created == 0, "pthread_create failed: \(created)")
        pthread_detach(thread)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        jobs.withLock { $0.append(job) }
        available.signal()
    }

    /// Ends the thread once every job enqueued so far has run; no job may come after.
    func close() { available.signal() }

    private func serve() {
        pthread_setspecific(Self.marker, UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque()))
        while true {
            available.wait()
            guard let job = jobs.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { return }
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// A counting semaphore (POSIX `sem_t`): one thread waits until another signals.
final class Semaphore: @unchecked Sendable {
    // Unchecked: a sem_t is made to be shared between threads, and its address never changes.
    private let handle: UnsafeMutablePointer<sem_t>

    init() {
        handle = .allocate(capacity: 1)
        sem_init(handle, 0, 0)
    }

    deinit {
        sem_destroy(handle)
        handle.deallocate()
    }

    func signal() { sem_post(handle) }

    func wait() {
        while sem_wait(handle) != 0 && errno == EINTR {}
    }
}

/// A loop started on a ``DriverThread`` (the run driver's, the hook sender's): the daemon asks it to stop and waits
/// for it from its own thread, which waits for signals.
public final class ThreadLoop: Sendable {
    private let stopFlag = Atomic<Bool>(false)
    private let finished = Semaphore()

    init() {}

    var stopRequested: Bool { stopFlag.load(ordering: .relaxed) }

    /// Said by the loop itself as its last act.
    func markFinished() { finished.signal() }

    /// Asks the loop to end once its step in progress is done.
    public func stop() { stopFlag.store(true, ordering: .relaxed) }

    /// Blocks the calling thread until the loop has ended.
    public func join() { finished.wait() }
}
