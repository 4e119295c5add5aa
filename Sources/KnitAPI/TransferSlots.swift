import KnitCore
import Synchronization

/// Bounds the long requests in flight: uploads and downloads in one pool, followed logs in another.
///
/// Each long request occupies a FastCGI thread for as long as its client takes; capping them below the
/// thread count keeps threads free for quick requests (health, find, tag) even when every long request is
/// a client trickling bytes. A per-user share keeps one user (or one stolen token) from taking a whole
/// pool: with every slot of theirs busy, other users still get theirs.
final class TransferSlots: Sendable {
    private struct State {
        var available: Int
        var heldByUser: [String: Int] = [:]
    }

    private let state: Mutex<State>
    let capacity: Int
    /// The most slots one user may hold at once.
    let perUser: Int
    /// What the pool is for, in the 503's reason ("transfers", "log streams").
    let purpose: String

    init(capacity: Int, perUser: Int? = nil, purpose: String = "transfers") {
        self.capacity = capacity
        self.perUser = min(capacity, max(1, perUser ?? (capacity + 1) / 2))
        self.purpose = purpose
        state = Mutex(State(available: capacity))
    }

    /// A slot for `user` if the pool and the user's share have one free, else nil: callers answer 503 rather
    /// than queueing a thread.
    func tryAcquire(user: String) -> TransferSlot? {
        let granted = state.withLock { state -> Bool in
            let held = state.heldByUser[user, default: 0]
            guard state.available > 0, held < perUser else { return false }
            state.available -= 1
            state.heldByUser[user] = held + 1
            return true
        }
        return granted ? TransferSlot(owner: self, user: user) : nil
    }

    /// `tryAcquire(user:)`, or the 503 that tells the client to come back.
    func acquire(user: String) throws -> TransferSlot {
        if let slot = tryAcquire(user: user) { return slot }
        let userIsFull = state.withLock { $0.heldByUser[user, default: 0] >= perUser }
        throw KnitAPIError(
            status: 503,
            reason: userIsFull
                ? "too many \(purpose) of yours in progress (at most \(perUser) at once)"
                : "too many \(purpose) in progress",
            advice: "please retry later",
            retryAfterSeconds: 1
        )
    }

    fileprivate func release(user: String) {
        state.withLock { state in
            state.available += 1
            let held = state.heldByUser[user, default: 1] - 1
            state.heldByUser[user] = held > 0 ? held : nil
        }
    }

    var inUse: Int { state.withLock { capacity - $0.available } }
}

/// A held slot; released when the last reference goes, so a stream closure that is never run cannot leak it.
final class TransferSlot: Sendable {
    private let owner: TransferSlots
    private let user: String
    fileprivate init(owner: TransferSlots, user: String) {
        self.owner = owner
        self.user = user
    }
    deinit { owner.release(user: user) }
}
