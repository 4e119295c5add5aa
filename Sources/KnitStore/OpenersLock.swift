internal import Synchronization

#if canImport(Glibc)
    internal import Glibc
#endif

/// `db/openers.lock`: every program with the store open holds a shared `flock` on it, and a migration needs it
/// exclusively, so a store is never migrated under a running program of the previous release.
///
/// LMDB's own lock file cannot say this: it admits any number of processes and only serialises their writers.
/// The lock goes with the open file description, so it is released when the store closes or the process dies.
final class OpenersLock: Sendable {
    private let descriptor: Mutex<Int32>
    private let path: String

    /// Opens (creating) the lock file. Created by root (the scheduler), it is handed to the owner of `directory`,
    /// so knitd and knitadm (the store's user) can open it too.
    init(path: String, ownerOf directory: String) throws(StoreError) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o660)
        guard fd >= 0 else { throw StoreError(.io, "store: cannot open \(path): \(String(cString: strerror(errno)))") }
        var owner = stat()
        if geteuid() == 0, stat(directory, &owner) == 0 {
            _ = fchown(fd, owner.st_uid, owner.st_gid)
        }
        self.descriptor = Mutex(fd)
        self.path = path
    }

    /// Takes the lock exclusively if nobody holds it; false when another opener does.
    func tryExclusive() throws(StoreError) -> Bool {
        let result = descriptor.withLock { fd in flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : errno }
        if result == 0 { return true }
        if result == EWOULDBLOCK { return false }
        throw StoreError(.io, "store: cannot lock \(path): \(String(cString: strerror(result)))")
    }

    /// Waits until every other opener has closed the store, then holds the lock exclusively.
    func exclusive() throws(StoreError) { try take(LOCK_EX) }

    /// Holds the lock shared (waiting while an opener migrates).
    func share() throws(StoreError) { try take(LOCK_SH) }

    /// Releases the lock and closes the file. Idempotent.
    func release() {
        descriptor.withLock { fd in
            guard fd >= 0 else { return }
            _ = close(fd)
            fd = -1
        }
    }

    private func take(_ operation: Int32) throws(StoreError) {
        // The descriptor is not held locked while waiting: release() may come from another thread only after
        // the store is opened, never during a wait.
        let fd = descriptor.withLock { $0 }
        var result: Int32 = 0
        repeat { result = flock(fd, operation) == 0 ? 0 : errno } while result == EINTR
        guard result == 0 else {
            throw StoreError(.io, "store: cannot lock \(path): \(String(cString: strerror(result)))")
        }
    }
}
