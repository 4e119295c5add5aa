#if canImport(Glibc)
    import Glibc
#endif

/// Bounds the uploads and downloads in flight.
///
/// Each transfer occupies a FastCGI thread for as long as its client takes; capping transfers below the
/// thread count keeps threads free for quick requests (health, find, tag) even when every transfer is a
/// client trickling bytes.
final class TransferSlots: @unchecked Sendable {  // all state guarded by `lock`
    private var lock = pthread_mutex_t()
    private var available: Int
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        available = capacity
        pthread_mutex_init(&lock, nil)
    }

    /// A slot if one is free, else nil: callers answer 503 rather than queueing a thread.
    func tryAcquire() -> TransferSlot? {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        guard available > 0 else { return nil }
        available -= 1
        return TransferSlot(owner: self)
    }

    fileprivate func release() {
        pthread_mutex_lock(&lock)
        available += 1
        pthread_mutex_unlock(&lock)
    }

    var inUse: Int {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return capacity - available
    }
}

/// A held transfer slot; released when the last reference goes, so a stream closure that is never run
/// cannot leak it.
final class TransferSlot: Sendable {
    private let owner: TransferSlots
    fileprivate init(owner: TransferSlots) { self.owner = owner }
    deinit { owner.release() }
}
