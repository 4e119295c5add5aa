#if canImport(Glibc)
    internal import Glibc
#elseif canImport(Darwin)
    internal import Darwin
#endif

/// A bounded queue of byte chunks between one producer thread and one consumer thread, so archive
/// (de)compression and network transfer overlap instead of taking turns.
///
/// `@unchecked Sendable`: every mutable field is read and written only with `mutex` held. The lock is a
/// pthread mutex with condition variables, not `Synchronization.Mutex` (Knit's lock elsewhere): producer
/// and consumer wait for each other, and Mutex has no wait.
final class ChunkQueue: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let capacity: Int
    private var chunks: [[UInt8]] = []
    private var head = 0
    private var finished = false
    private var producerError: (any Error)?
    private var cancelled: (any Error)?
    private var counter: Int64 = 0

    /// The error a producer sees once the consumer has gone away.
    struct Cancelled: Error, CustomStringConvertible {
        var description: String { "transfer cancelled" }
    }

    init(capacity: Int = 16) {
        self.capacity = capacity
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        changed.deallocate()
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Blocks while the queue is full. Throws once the consumer cancelled.
    func push(_ chunk: [UInt8]) throws {
        try locked {
            while chunks.count - head >= capacity && cancelled == nil { pthread_cond_wait(changed, mutex) }
            if let cancelled { throw cancelled }
            chunks.append(chunk)
            pthread_cond_broadcast(changed)
        }
    }

    /// Producer is done; `error` (if any) is rethrown to the consumer after the queued chunks.
    func finish(error: (any Error)? = nil) {
        locked {
            finished = true
            producerError = error
            pthread_cond_broadcast(changed)
        }
    }

    /// The next chunk, nil at the end. Blocks while empty; throws the producer's error.
    func pop() throws -> [UInt8]? {
        try locked {
            while head == chunks.count && !finished && cancelled == nil { pthread_cond_wait(changed, mutex) }
            if let cancelled { throw cancelled }
            if head < chunks.count {
                let chunk = chunks[head]
                chunks[head] = []
                head += 1
                if head > 64 && head * 2 > chunks.count {
                    chunks.removeFirst(head)
                    head = 0
                }
                pthread_cond_broadcast(changed)
                return chunk
            }
            if let producerError { throw producerError }
            return nil
        }
    }

    /// Consumer gives up: the producer's next `push` throws `error`.
    func cancel(_ error: any Error = Cancelled()) {
        locked {
            if cancelled == nil { cancelled = error }
            pthread_cond_broadcast(changed)
        }
    }

    /// A progress count one side updates and the other reads.
    var progress: Int64 {
        get { locked { counter } }
        set { locked { counter = newValue } }
    }
}

/// Reads a ``ChunkQueue`` into caller-sized buffers (the shape both curl's read callback and libarchive's
/// read closure want). Used by the consumer thread only.
final class ChunkReader {
    private let queue: ChunkQueue
    private var current: [UInt8] = []
    private var offset = 0
    private var ended = false

    init(_ queue: ChunkQueue) { self.queue = queue }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while offset == current.count {
            if ended { return 0 }
            guard let next = try queue.pop() else {
                ended = true
                return 0
            }
            current = next
            offset = 0
        }
        let n = min(buffer.count, current.count - offset)
        current.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + n])) }
        offset += n
        return n
    }
}

/// Gathers writes into chunks of exactly `size` bytes (the last one shorter) before queueing them. Used by the
/// producer thread only. With a second queue, each chunk goes to both (shared, not copied: the arrays are
/// immutable once queued).
///
/// A chunk is filled up to `size` and no further, so each is one allocation of `size` bytes and a full queue holds
/// `capacity × size`. Appending whole writes instead let a write that crossed the mark grow the array, and Array
/// growth doubles: zstd's ~128 KiB outputs and curl's pieces of up to 512 KiB made many chunks 512–640 KiB, about
/// 4 MiB more per queue for nothing.
struct ChunkWriter {
    let queue: ChunkQueue
    let second: ChunkQueue?
    let size: Int
    private var pending: [UInt8] = []

    init(_ queue: ChunkQueue, alsoTo second: ChunkQueue? = nil, size: Int = 256 << 10) {
        self.queue = queue
        self.second = second
        self.size = size
    }

    mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            if pending.capacity < size { pending.reserveCapacity(size) }
            let n = min(size - pending.count, bytes.count - offset)
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n]))
            offset += n
            if pending.count == size { try push() }
        }
    }

    mutating func flush() throws {
        if !pending.isEmpty { try push() }
    }

    private mutating func push() throws {
        let chunk = pending
        pending = []
        try second?.push(chunk)
        try queue.push(chunk)
    }
}

/// A joinable POSIX thread; the work is blocking I/O and CPU, which does not belong on Swift's
/// cooperative pool.
struct WorkerThread: ~Copyable {
    private let thread: pthread_t

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    init(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(
            &thread,
            nil,
            { argument in
                Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue().body()
                return nil
            },
            box
        )
        precondition(rc == 0, "pthread_create failed: \(rc)")
        self.thread = thread
    }

    consuming func join() {
        pthread_join(thread, nil)
        discard self
    }

    deinit { pthread_join(thread, nil) }
}
