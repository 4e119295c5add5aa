internal import CKnitFastCGI
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The listening unix socket knitd serves FastCGI on.
///
/// libfcgi's `FCGX_OpenSocket` silently unlinks an existing path, which would orphan a running server, so
/// the listener first checks that nobody answers on the path.
public final class FastCGIListener: Sendable {
    public let path: String
    let descriptor: Int32

    /// Opens the socket, with `mode` and (when given) group ownership so only nginx's group can connect.
    ///
    /// - Throws: ``FastCGIError`` `.addressInUse` when a live server answers on `path`, `.socket` otherwise.
    public init(path: String, mode: mode_t = 0o660, group: String? = nil, backlog: Int32 = 1024) throws(FastCGIError) {
        FastCGIRuntime.initializeOnce()
        if Self.isServed(path) {
            throw FastCGIError(.addressInUse, "another process serves \(path)")
        }
        let fd = FCGX_OpenSocket(path, backlog)
        guard fd >= 0 else { throw FastCGIError(.socket, "cannot listen on \(path)", cause: errno) }
        guard chmod(path, mode) == 0 else {
            _ = Glibc.close(fd)
            throw FastCGIError(.socket, "cannot set mode of \(path)", cause: errno)
        }
        if let group {
            guard let entry = getgrnam(group) else {
                _ = Glibc.close(fd)
                throw FastCGIError(.socket, "no such group '\(group)' for \(path)")
            }
            guard chown(path, uid_t.max, entry.pointee.gr_gid) == 0 else {
                _ = Glibc.close(fd)
                throw FastCGIError(.socket, "cannot give \(path) to group \(group)", cause: errno)
            }
        }
        self.path = path
        self.descriptor = fd
    }

    /// Wakes every thread blocked in accept and makes further accepts fail: the first step of a graceful stop.
    public func stopAccepting() {
        FastCGIRuntime.beginShutdown()
        _ = shutdown(descriptor, Int32(SHUT_RDWR))
    }

    /// Closes the socket and removes its path.
    public func close() {
        _ = Glibc.close(descriptor)
        _ = unlink(path)
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
    private let state = Mutex((initialized: false, shuttingDown: false))

    func initialize() {
        state.withLock { state in
            guard !state.initialized else { return }
            // A client dropping mid-download must not kill the process; libfcgi only sets this when SIGPIPE is default.
            signal(SIGPIPE, SIG_IGN)
            _ = FCGX_Init()
            state.initialized = true
        }
    }

    func setShuttingDown() { state.withLock { $0.shuttingDown = true } }

    var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }
}
