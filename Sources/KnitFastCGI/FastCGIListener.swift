internal import CKnitFastCGI
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The listening unix socket knitd serves FastCGI on.
///
/// libfcgi's `FCGX_OpenSocket` silently unlinks an existing path, which would orphan a running server, so
/// the listener first checks that nobody answers on the path — unless it is to replace that server: then it
/// listens on a fresh path beside it and ``takeOver()`` renames its socket onto `path` in one step, so a client
/// connecting by path reaches one server or the other and never finds none.
public final class FastCGIListener: Sendable {
    public let path: String
    let descriptor: Int32
    /// Readable once ``stopAccepting(queueGrace:)`` has shut the socket down: threads waiting for connections
    /// in epoll learn of the stop from it (shutting a listening unix socket down wakes no epoll waiter).
    let stopNotice: Int32
    /// Where the socket is now (a fresh name until ``takeOver()``), and its identity: a server only ever
    /// removes its own socket, never the one of a successor that took the path over.
    private let bound: Mutex<String>
    private let device: UInt64
    private let inode: UInt64

    /// Opens the socket, with `mode` and (when given) group ownership so only nginx's group can connect.
    ///
    /// - Parameter replacing: listen beside a server that may answer on `path`, to take the path over later.
    /// - Throws: ``FastCGIError`` `.addressInUse` when a live server answers on `path` (and not `replacing`),
    ///   `.socket` otherwise.
    public init(
        path: String,
        mode: Glibc.mode_t = 0o660,
        group: String? = nil,
        backlog: Int32 = 1024,
        replacing: Bool = false
    ) throws(FastCGIError) {
        FastCGIRuntime.initializeOnce()
        if !replacing, Self.isServed(path) {
            throw FastCGIError(.addressInUse, "another process serves \(path)")
        }
        let listenPath = replacing ? "\(path).\(getpid()).new" : path
        let fd = FCGX_OpenSocket(listenPath, backlog)
        guard fd >= 0 else { throw FastCGIError(.socket, "cannot listen on \(listenPath)", cause: errno) }
        func fail(_ message: String, cause: Int32? = nil) -> FastCGIError {
            _ = Glibc.close(fd)
            _ = unlink(listenPath)
            return FastCGIError(.socket, message, cause: cause)
        }
        guard chmod(listenPath, mode) == 0 else { throw fail("cannot set mode of \(listenPath)", cause: errno) }
        if let group {
            guard let entry = getgrnam(group) else { throw fail("no such group '\(group)' for \(listenPath)") }
            guard chown(listenPath, uid_t.max, entry.pointee.gr_gid) == 0 else {
                throw fail("cannot give \(listenPath) to group \(group)", cause: errno)
            }
        }
        var info = stat()
        guard stat(listenPath, &info) == 0 else { throw fail("cannot inspect \(listenPath)", cause: errno) }
        let notice = eventfd(0, Int32(EFD_CLOEXEC))
        guard notice >= 0 else { throw fail("cannot create an eventfd", cause: errno) }
        self.stopNotice = notice
        self.path = path
        self.descriptor = fd
        self.bound = Mutex(listenPath)
        self.device = UInt64(info.st_dev)
        self.inode = UInt64(info.st_ino)
    }

    /// Moves the socket onto ``path`` (atomically replacing a predecessor's), so new connections come here; the
    /// predecessor keeps the connections it already has. Does nothing when already there.
    public func takeOver() throws(FastCGIError) {
        let error: Int32 = bound.withLock { current in
            guard current != path else { return 0 }
            guard rename(current, path) == 0 else { return errno }
            current = path
            return 0
        }
        guard error == 0 else { throw FastCGIError(.socket, "cannot move the socket onto \(path)", cause: error) }
    }

    /// Wakes every thread blocked in accept and makes further accepts fail: the first step of a graceful stop.
    ///
    /// The socket's name goes first, so no client can connect any more (or, after a successor took the name
    /// over, every new client reaches the successor); connections already queued are then accepted and served
    /// (for at most `queueGrace`) before the socket shuts: shutting it with connections in its queue would
    /// reset them, and nginx would answer those requests 502.
    public func stopAccepting(queueGrace: Duration = .seconds(10)) {
        removeOwnName()
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: queueGrace)
        var quietChecks = 0
        // A client that found the name just before it went may still be connecting: two empty looks in a row.
        while quietChecks < 2, clock.now < deadline {
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let queued = poll(&entry, 1, 0) > 0 && entry.revents & Int16(POLLIN) != 0
            quietChecks = queued ? 0 : quietChecks + 1
            usleep(queued ? 10_000 : 50_000)
        }
        FastCGIRuntime.beginShutdown()
        _ = shutdown(descriptor, Int32(SHUT_RDWR))
        var one: UInt64 = 1
        _ = write(stopNotice, &one, MemoryLayout<UInt64>.size)
    }

    /// Closes the socket and removes its path, if it is still this socket's.
    public func close() {
        _ = Glibc.close(descriptor)
        _ = Glibc.close(stopNotice)
        removeOwnName()
    }

    private func removeOwnName() {
        bound.withLock { current in
            var info = stat()
            if lstat(current, &info) == 0, UInt64(info.st_dev) == device, UInt64(info.st_ino) == inode {
                _ = unlink(current)
            }
        }
    }

    private static func isServed(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { _ = Glibc.close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        let bytes = Array(path.utf8)
        guard bytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return result == 0
    }
}

/// Process-wide libfcgi state: `FCGX_Init` once, and the shutdown flag worker threads check.
enum FastCGIRuntime {
    private static let state = ShutdownState()

    static func initializeOnce() { state.initialize() }
    static func beginShutdown() { state.setShuttingDown() }
    static var isShuttingDown: Bool { state.isShuttingDown }
}

/// Whether libfcgi was initialised and whether the listener is shutting down.
private final class ShutdownState: Sendable {
    private let initialized = Mutex(false)
    /// Read by every worker once per request: an atomic, not a lock 48 threads would meet on.
    private let shuttingDown = Atomic(false)

    func initialize() {
        initialized.withLock { initialized in
            guard !initialized else { return }
            // A client dropping mid-download must not kill the process; libfcgi only sets this when SIGPIPE is default.
            signal(SIGPIPE, SIG_IGN)
            _ = FCGX_Init()
            initialized = true
        }
    }

    func setShuttingDown() { shuttingDown.store(true, ordering: .sequentiallyConsistent) }

    var isShuttingDown: Bool { shuttingDown.load(ordering: .sequentiallyConsistent) }
}
