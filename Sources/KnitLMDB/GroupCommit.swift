internal import CKnitLMDB
internal import Synchronization

#if canImport(Glibc)
    internal import Glibc
#endif

/// Group commit for ``LMDBEnvironment/write(_:)``: writers that arrive while another write transaction is
/// committing wait for it, then the first of them (the leader) runs all their bodies in one transaction, each in
/// its own nested transaction, and commits once. A commit costs two syncs (`fdatasync` of the data, the meta page
/// written `O_DSYNC`) whether it holds one body or many, and under concurrent small uploads those syncs are what
/// serialise the store (measured in bench/README.md, "Scale"). Durability is unchanged: no caller returns before
/// the commit that holds its changes has returned, and a caller whose body throws gets its own error with its
/// nested transaction aborted, while the others' changes stand. When the commit itself fails, every caller of the
/// group gets that error and none of their changes is stored, as when each had committed alone and failed.
final class WriteGroup: Sendable {
    /// One `write` call waiting to be run. Its fields are written by the leader before the waiter is woken, and
    /// read by the waiter after it wakes (the semaphore orders them), so no two threads use them at once.
    final class Job: @unchecked Sendable {
        /// Dropped by the leader once run, before any waiter wakes: `write` hands in a closure that must not
        /// outlive its call (`withoutActuallyEscaping` checks that on return).
        var body: ((borrowing LMDBTransaction) throws -> Void)?
        var error: (any Error)?
        /// Set before the wake-up: whether this waiter is to lead the next group rather than return.
        var leads = false
        private let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

        init(_ body: @escaping (borrowing LMDBTransaction) throws -> Void) {
            self.body = body
            sem_init(semaphore, 0, 0)
        }

        deinit {
            sem_destroy(semaphore)
            semaphore.deallocate()
        }

        func wake() { sem_post(semaphore) }

        func wait() {
            while sem_wait(semaphore) != 0 && errno == EINTR {}
        }
    }

    private struct State {
        var pending: [Job] = []
        var leading = false
    }

    private let state = Mutex(State())

    /// How many writers wait for the current group to commit; for tests.
    var waiting: Int { state.withLock { $0.pending.count } }

    /// Runs `job` in a group commit and returns once it is committed (or has failed).
    func run(_ job: Job, environment: LMDBEnvironment) throws {
        let leads = state.withLock { state -> Bool in
            state.pending.append(job)
            guard !state.leading else { return false }
            state.leading = true
            return true
        }
        if !leads {
            job.wait()
            guard job.leads else {
                if let error = job.error { throw error }
                return
            }
        }
        lead(own: job, environment: environment)
        if let error = job.error { throw error }
    }

    /// Takes every waiting job, commits them as one transaction, wakes them, and hands the lead to the first
    /// writer that arrived meanwhile (so no caller keeps leading for others while its own work is done).
    private func lead(own: Job, environment: LMDBEnvironment) {
        let group = state.withLock { state -> [Job] in
            defer { state.pending = [] }
            return state.pending
        }
        commit(group, environment: environment)
        for job in group { job.body = nil }
        let next = state.withLock { state -> Job? in
            guard let next = state.pending.first else {
                state.leading = false
                return nil
            }
            next.leads = true
            return next
        }
        // The leader's own job is in `group`; it returns by itself and needs no wake-up.
        for job in group where job !== own { job.wake() }
        next?.wake()
    }

    private func commit(_ group: [Job], environment: LMDBEnvironment) {
        do {
            let txn = try LMDBTransaction(environment: environment, readOnly: false)
            if group.count == 1 {
                // Alone: no nested transaction needed, a failing body aborts the whole (one-body) transaction.
                do { try group[0].body?(txn) } catch {
                    txn.abort()
                    group[0].error = error
                    return
                }
            } else {
                for job in group {
                    do {
                        let nested = try LMDBTransaction(parent: txn)
                        do { try job.body?(nested) } catch {
                            nested.abort()
                            throw error
                        }
                        try nested.commit()
                    } catch { job.error = error }
                }
            }
            try txn.commit()
        } catch {
            for job in group where job.error == nil { job.error = error }
        }
    }
}
