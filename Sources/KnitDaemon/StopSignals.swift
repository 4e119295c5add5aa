#if canImport(Glibc)
    internal import Glibc
#endif

/// How a Knit daemon stops: SIGTERM, SIGINT and SIGHUP are blocked in every thread and taken by one thread
/// that waits for them, so no handler ever runs in the middle of a request or a tick and the stop is an
/// ordinary return from ``wait()``.
public struct StopSignals: Sendable {
    private let signals: sigset_t

    /// Blocks the stop signals in the calling thread. Call it before any other thread exists: threads inherit
    /// the mask, so the signals then reach only the thread that waits.
    public static func block() -> StopSignals {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        return StopSignals(signals: set)
    }

    /// Waits for a stop signal and returns it.
    public func wait() -> Int32 {
        var set = signals
        var received: Int32 = 0
        while sigwait(&set, &received) != 0 {}
        return received
    }

    /// Waits at most `seconds` for a stop signal; nil when none came (the daemon's periodic work is due).
    public func wait(seconds: Int) -> Int32? {
        var set = signals
        var timeout = timespec(tv_sec: seconds, tv_nsec: 0)
        while true {
            let received = sigtimedwait(&set, nil, &timeout)
            if received > 0 { return received }
            if errno == EAGAIN { return nil }
        }
    }
}
