internal import CKnitFastCGI
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Hands a server's threads the connections that have a request to read: new ones from the listener and
/// kept ones (the web server's pooled upstream connections, `fastcgi_keep_conn`) that went quiet after a
/// request. All wait in one epoll set, so an idle kept connection holds no thread: libfcgi alone would keep
/// the thread blocked reading it, and a pool as large as the thread count would starve everything else.
///
/// Each connection is registered one-shot: exactly one thread wakes for it, and it is armed again only when
/// it is parked again after its request. The listener is one-shot too, re-armed right after each accept, so a
/// new connection wakes one thread, not all of them.
final class ConnectionDispatcher: Sendable {
    private let epoll: Int32
    private let listener: Int32
    private let stopNotice: Int32
    /// The highest descriptor ever parked: ``closeAll()`` looks for the kept connections left in the set up to
    /// it. (Not a set of them: a lock taken twice per request by 48 threads on 2 cores cost ~40 % of knitd's
    /// CPU in spinning.)
    private let highestParked = Atomic<Int32>(-1)

    init(listener: FastCGIListener) {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epoll >= 0, "epoll_create1 failed: \(errno)")
        self.listener = listener.descriptor
        stopNotice = listener.stopNotice
        // A thread that lost a race for a connection must get EAGAIN, not block in accept.
        _ = fcntl(self.listener, F_SETFL, fcntl(self.listener, F_GETFL) | O_NONBLOCK)
        var event = Self.oneShotRead(self.listener)
        precondition(epoll_ctl(epoll, EPOLL_CTL_ADD, self.listener, &event) == 0, "epoll_ctl failed: \(errno)")
        // Level-triggered and never consumed: once the stop is noticed, every waiting thread sees it.
        var stop = epoll_event()
        stop.events = EPOLLIN.rawValue
        stop.data.fd = stopNotice
        precondition(epoll_ctl(epoll, EPOLL_CTL_ADD, stopNotice, &stop) == 0, "epoll_ctl failed: \(errno)")
    }

    /// Waits until a connection has something to read and takes it; nil once the listener was stopped.
    func next() -> Int32? {
        var event = epoll_event()
        while true {
            let count = epoll_wait(epoll, &event, 1, -1)
            if count < 0 && errno != EINTR { return nil }
            guard count == 1 else { continue }
            let fd = event.data.fd
            if fd == stopNotice { return nil }
            guard fd == listener else { return fd }
            // Blocking, as libfcgi reads it (Linux does not pass the listener's O_NONBLOCK on).
            let connection = accept(listener, nil, nil)
            let acceptError = errno
            if connection >= 0 { _ = fcntl(connection, F_SETFD, FD_CLOEXEC) }
            var again = Self.oneShotRead(listener)
            _ = epoll_ctl(epoll, EPOLL_CTL_MOD, listener, &again)
            if connection >= 0 { return connection }
            switch acceptError {
            case EAGAIN, EINTR, ECONNABORTED, EPROTO: continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                // Out of descriptors or memory: the connection stays queued; trying again at once would spin.
                usleep(10_000)
                continue
            default: return nil  // EINVAL: the listener was shut down (a stop)
            }
        }
    }

    /// Puts a kept connection back into the set after its request; the next request on it wakes a thread.
    func park(_ fd: Int32) {
        var highest = highestParked.load(ordering: .relaxed)
        while fd > highest {
            let (exchanged, current) = highestParked.compareExchange(
                expected: highest,
                desired: fd,
                ordering: .relaxed
            )
            if exchanged { break }
            highest = current
        }
        var event = Self.oneShotRead(fd)
        if epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &event) == 0 { return }
        // First time parked (or its number belonged to a connection that was closed since).
        if epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) != 0 { _ = close(fd) }
    }

    /// Closes the kept connections still waiting (the web server opens new ones to whoever serves next)
    /// and the set itself. Only after every thread has stopped taking connections.
    func closeAll() {
        let highest = highestParked.load(ordering: .acquiring)
        if highest >= 0 {
            // With every thread gone, what is still in the set (MOD succeeds) is a parked connection.
            for fd in 0...highest where fd != listener && fd != epoll && fd != stopNotice {
                var event = Self.oneShotRead(fd)
                if epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &event) == 0 { _ = close(fd) }
            }
        }
        _ = close(epoll)
    }

    private static func oneShotRead(_ fd: Int32) -> epoll_event {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLONESHOT.rawValue
        event.data.fd = fd
        return event
    }
}
