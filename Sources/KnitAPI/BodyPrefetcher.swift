#if canImport(Glibc)
    import Glibc
#endif

/// Receives a request body on a second thread while the caller extracts it, so reading from nginx overlaps
/// with decompression and disk writes (on 2 cores an upload was one thread at 100 % before).
///
/// The producer fills a small ring of large buffers; ``read(into:)`` hands them out in order. The body reader
/// it wraps is only called from the producer thread while the caller is inside ``withPrefetching(_:_:)``.
///
/// Its lock is a pthread mutex with a condition variable, not `Synchronization.Mutex` (Knit's lock
/// elsewhere): the two threads wait for each other, and Mutex has no wait.
final class BodyPrefetcher: @unchecked Sendable {  // all shared state guarded by `lock`
    static let bufferSize = 1 << 20
    static let bufferCount = 4

    private var lock = pthread_mutex_t()
    private var changed = pthread_cond_t()
    private var filled: [[UInt8]] = []  // FIFO of full buffers, in body order
    private var spare: [[UInt8]] = []
    private var finished = false  // producer saw the end of the body or an error
    private var failure: (any Error)?
    private var cancelled = false
    private var current: [UInt8] = []
    private var currentOffset = 0

    private init() {
        pthread_mutex_init(&lock, nil)
        pthread_cond_init(&changed, nil)
        spare = (0..<Self.bufferCount).map { _ in [UInt8](repeating: 0, count: Self.bufferSize) }
    }

    deinit {
        pthread_cond_destroy(&changed)
        pthread_mutex_destroy(&lock)
    }

    /// Runs `body` with a reader that prefetches from `readBody` on another thread, and joins that thread
    /// before returning, so `readBody` never outlives this call.
    static func withPrefetching<T>(
        _ readBody: (UnsafeMutableRawBufferPointer) throws -> Int,
        _ body: (_ read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> T
    ) throws -> T {
        try withoutActuallyEscaping(readBody) { escapingRead in
            let prefetcher = BodyPrefetcher()
            let producer = Producer(prefetcher: prefetcher, read: escapingRead)
            var thread = pthread_t()
            let context = Unmanaged.passRetained(producer).toOpaque()
            guard
                pthread_create(
                    &thread,
                    nil,
                    {
                        Unmanaged<Producer>.fromOpaque($0!).takeRetainedValue().run(); return nil
                    },
                    context
                ) == 0
            else {
                Unmanaged<Producer>.fromOpaque(context).release()
                return try body(escapingRead)  // no thread: read inline
            }
            defer {
                prefetcher.cancel()
                pthread_join(thread, nil)
            }
            return try body { try prefetcher.read(into: $0) }
        }
    }

    /// Copies the next body bytes into `buffer`; 0 at the end; rethrows the producer's error in order.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        while currentOffset >= current.count {
            if !current.isEmpty {
                spare.append(current)
                current = []
                currentOffset = 0
                pthread_cond_broadcast(&changed)
            }
            if !filled.isEmpty {
                current = filled.removeFirst()
                currentOffset = 0
                continue
            }
            if finished {
                if let failure { throw failure }
                return 0
            }
            pthread_cond_wait(&changed, &lock)
        }
        let count = min(buffer.count, current.count - currentOffset)
        current.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[currentOffset..<currentOffset + count]))
        }
        currentOffset += count
        return count
    }

    /// Tells the producer to stop after its current read; the caller is done or gave up.
    func cancel() {
        pthread_mutex_lock(&lock)
        cancelled = true
        pthread_cond_broadcast(&changed)
        pthread_mutex_unlock(&lock)
    }

    fileprivate func takeSpare() -> [UInt8]? {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        while spare.isEmpty && !cancelled { pthread_cond_wait(&changed, &lock) }
        return cancelled ? nil : spare.removeLast()
    }

    fileprivate func deliver(_ buffer: [UInt8], count: Int, end: Bool, error: (any Error)?) {
        pthread_mutex_lock(&lock)
        if count > 0 {
            var full = buffer
            if count < full.count { full.removeLast(full.count - count) }
            filled.append(full)
        } else {
            spare.append(buffer)
        }
        if end || error != nil {
            finished = true
            failure = error
        }
        pthread_cond_broadcast(&changed)
        pthread_mutex_unlock(&lock)
    }
}

private final class Producer: @unchecked Sendable {  // owned by the producer thread after hand-off
    let prefetcher: BodyPrefetcher
    let read: (UnsafeMutableRawBufferPointer) throws -> Int

    init(prefetcher: BodyPrefetcher, read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        self.prefetcher = prefetcher
        self.read = read
    }

    func run() {
        while var buffer = prefetcher.takeSpare() {
            if buffer.count < BodyPrefetcher.bufferSize {
                buffer = [UInt8](repeating: 0, count: BodyPrefetcher.bufferSize)
            }
            var total = 0
            var failure: (any Error)?
            // Fill the whole buffer: libfcgi hands out at most one 8 KiB record per call.
            buffer.withUnsafeMutableBytes { raw in
                do {
                    while total < raw.count {
                        let count = try read(UnsafeMutableRawBufferPointer(rebasing: raw[total...]))
                        if count == 0 { break }
                        total += count
                    }
                } catch {
                    failure = error
                }
            }
            let end = total < buffer.count
            prefetcher.deliver(buffer, count: total, end: end, error: failure)
            if end || failure != nil { return }
        }
    }
}
