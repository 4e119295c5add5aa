internal import Glibc

/// The scheduler's doorbell: a unix datagram socket bound at a path. knitd calls
/// ``notify(path:)`` after every transaction that makes Runs startable, and the scheduler's loop
/// waits on it with a timeout. A datagram carries no data that matters: any number of rings
/// between two waits count as one. A lost ring (scheduler down, socket buffer full) costs only
/// latency, because the loop also polls on its own.
public final class Wakeup: Sendable {
    public let path: String
    /// Immutable after init and closed only by deinit, so sharing it between tasks is safe.
    private let descriptor: Int32
    /// The socket file's identity, so deinit removes only its own file, not that of a newer
    /// Wakeup that took the path over.
    private let device: UInt64
    private let inode: UInt64

    /// Binds the socket at `path` with mode 0660, replacing a stale socket file left by an earlier
    /// scheduler. Refuses to replace anything that is not a socket.
    public init(path: String) throws(WakeupError) {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else {
                throw WakeupError("\(path) exists and is not a socket")
            }
            unlink(path)
        }
        guard var address = Self.address(path) else {
            throw WakeupError("socket path \(path) is too long")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw WakeupError("cannot create a socket for \(path)", errno: errno) }
        let bindResult = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bindResult == 0 else {
            let code = errno
            close(fd)
            throw WakeupError("cannot bind \(path)", errno: code)
        }
        // knitd runs as another user of the same group; nobody else may ring.
        guard chmod(path, 0o660) == 0 else {
            let code = errno
            close(fd)
            unlink(path)
            throw WakeupError("cannot set the mode of \(path)", errno: code)
        }
        var bound = stat()
        guard stat(path, &bound) == 0 else {
            let code = errno
            close(fd)
            throw WakeupError("cannot inspect \(path)", errno: code)
        }
        self.path = path
        self.descriptor = fd
        self.device = UInt64(bound.st_dev)
        self.inode = UInt64(bound.st_ino)
    }

    deinit {
        close(descriptor)
        var info = stat()
        if lstat(path, &info) == 0 && UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode {
            unlink(path)
        }
    }

    /// Blocks the calling thread until a ring arrives or `timeout` passes, and swallows every ring
    /// that is pending. Returns true when woken by a ring.
    public func wait(timeout: Duration) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            let left = clock.now.duration(to: deadline)
            let millis = max(
                0,
                Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
            )
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, millis)
            if ready > 0 {
                drain()
                return true
            }
            if ready < 0 && errno == EINTR { continue }
            // Timed out (or poll failed, which a socket we own does not do): report no ring.
            if clock.now >= deadline || ready < 0 { return false }
        }
    }

    /// What became of one ring.
    public enum Ring: Sendable, Equatable {
        /// The scheduler's socket took the datagram.
        case delivered
        /// A scheduler is bound but has not read its earlier rings yet (its queue is full, EAGAIN):
        /// it will look at the queue anyway.
        case receiverBusy
        /// Nobody is bound at the path (no such file, a stale socket file, not a socket), or the path
        /// cannot be a socket address.
        case notDelivered(WakeupError)
    }

    /// Rings the scheduler bound at `path`. Never blocks: with nobody listening, or a full socket
    /// buffer (the scheduler is woken already), the ring is dropped and the outcome says so. knitd
    /// ignores it (the scheduler also polls on its own); `knitadm status` reads it as "is the
    /// scheduler there".
    @discardableResult
    public static func notify(path: String) -> Ring {
        guard var address = address(path) else {
            return .notDelivered(WakeupError("socket path \(path) is not usable (empty or too long)"))
        }
        let fd = socket(
            AF_UNIX,
            Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
            0
        )
        guard fd >= 0 else { return .notDelivered(WakeupError("cannot create a socket", errno: errno)) }
        defer { close(fd) }
        var byte: UInt8 = 1
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(
                    fd,
                    &byte,
                    1,
                    Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL),
                    $0,
                    socklen_t(MemoryLayout<sockaddr_un>.size)
                )
            }
        }
        if sent == 1 { return .delivered }
        let code = errno
        if code == EAGAIN || code == EWOULDBLOCK { return .receiverBusy }
        return .notDelivered(WakeupError(path, errno: code))
    }

    private func drain() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while buffer.withUnsafeMutableBytes({ recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) >= 0 {}
    }

    private static func address(_ path: String) -> sockaddr_un? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }
}

/// A failure to set up the wake-up socket; ``message`` names the path and the system's reason.
public struct WakeupError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    init(_ message: String, errno code: Int32? = nil) {
        if let code, let text = strerror(code) {
            self.message = message + ": " + String(cString: text)
        } else {
            self.message = message
        }
    }

    public var description: String { message }
}
