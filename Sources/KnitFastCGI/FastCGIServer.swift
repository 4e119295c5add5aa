internal import CKnitFastCGI

#if canImport(Glibc)
    import Glibc
#endif

/// Serves a listener with a fixed pool of threads, each blocking in `FCGX_Accept_r`.
///
/// libfcgi serves one connection per thread, so the thread count bounds concurrency: size it above the
/// number of transfers that may be in flight, or slow clients starve quick requests.
public final class FastCGIServer: Sendable {
    public typealias Handler = @Sendable (consuming FastCGIRequest) -> Void

    private let listener: FastCGIListener
    private let handler: Handler

    public init(listener: FastCGIListener, handler: @escaping Handler) {
        self.listener = listener
        self.handler = handler
    }

    /// Starts `threads` worker threads and returns; call ``join()`` to wait for them after
    /// ``FastCGIListener/stopAccepting()``.
    public func start(threads: Int) -> RunningServer {
        var identifiers: [pthread_t] = []
        for _ in 0..<max(threads, 1) {
            let context = Unmanaged.passRetained(WorkerContext(listener: listener, handler: handler))
            var thread = pthread_t()
            let result = pthread_create(
                &thread,
                nil,
                { argument in
                    let context = Unmanaged<WorkerContext>.fromOpaque(argument!).takeRetainedValue()
                    context.run()
                    return nil
                },
                context.toOpaque()
            )
            precondition(result == 0, "pthread_create failed: \(result)")
            identifiers.append(thread)
        }
        return RunningServer(threads: identifiers)
    }
}

/// Handles of a started server's threads.
public struct RunningServer: Sendable {
    let threads: [pthread_t]

    /// Waits until every worker thread has left its accept loop and finished its request.
    public func join() {
        for thread in threads { pthread_join(thread, nil) }
    }
}

private final class WorkerContext: @unchecked Sendable {  // used by exactly one thread after hand-off
    let listener: FastCGIListener
    let handler: FastCGIServer.Handler

    init(listener: FastCGIListener, handler: @escaping FastCGIServer.Handler) {
        self.listener = listener
        self.handler = handler
    }

    func run() {
        let raw = UnsafeMutablePointer<FCGX_Request>.allocate(capacity: 1)
        defer { raw.deallocate() }
        // The request struct must stay at a stable address: libfcgi's streams point back into it.
        guard FCGX_InitRequest(raw, listener.descriptor, 0) == 0 else { return }
        while !FastCGIRuntime.isShuttingDown {
            let accepted = FCGX_Accept_r(raw)
            if accepted < 0 {
                if FastCGIRuntime.isShuttingDown { break }
                continue
            }
            handler(FastCGIRequest(raw: raw))
        }
        FCGX_Free(raw, 1)
    }
}
