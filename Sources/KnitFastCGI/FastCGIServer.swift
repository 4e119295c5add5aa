internal import CKnitFastCGI

#if canImport(Glibc)
    import Glibc
#endif

/// Serves a listener with a fixed pool of threads. Each takes a connection that has a request to read (a new
/// one or a kept one, from ``ConnectionDispatcher``), lets libfcgi read and answer the request on it, and
/// parks it again when the web server keeps it (`fastcgi_keep_conn`).
///
/// A thread serves one request at a time, so the thread count bounds concurrency: size it above the number
/// of transfers that may be in flight, or slow clients starve quick requests. Idle kept connections hold
/// no thread.
public final class FastCGIServer: Sendable {
    public typealias Handler = @Sendable (consuming FastCGIRequest) -> Void

    private let listener: FastCGIListener
    private let handler: Handler
    private let dispatcher: ConnectionDispatcher

    public init(listener: FastCGIListener, handler: @escaping Handler) {
        self.listener = listener
        self.handler = handler
        dispatcher = ConnectionDispatcher(listener: listener)
    }

    /// Starts `threads` worker threads and returns; call ``join()`` to wait for them after
    /// ``FastCGIListener/stopAccepting()``.
    public func start(threads: Int) -> RunningServer {
        var identifiers: [pthread_t] = []
        for _ in 0..<max(threads, 1) {
            let context = Unmanaged.passRetained(WorkerContext(dispatcher: dispatcher, handler: handler))
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
        return RunningServer(threads: identifiers, dispatcher: dispatcher)
    }
}

/// Handles of a started server's threads.
public struct RunningServer: Sendable {
    let threads: [pthread_t]
    let dispatcher: ConnectionDispatcher

    /// Waits until every worker thread has left its accept loop and finished its request, then closes the
    /// kept connections still idle.
    public func join() {
        for thread in threads { pthread_join(thread, nil) }
        dispatcher.closeAll()
    }
}

private final class WorkerContext: @unchecked Sendable {  // used by exactly one thread after hand-off
    let dispatcher: ConnectionDispatcher
    let handler: FastCGIServer.Handler

    init(dispatcher: ConnectionDispatcher, handler: @escaping FastCGIServer.Handler) {
        self.dispatcher = dispatcher
        self.handler = handler
    }

    func run() {
        let raw = UnsafeMutablePointer<FCGX_Request>.allocate(capacity: 1)
        defer { raw.deallocate() }
        // The request struct must stay at a stable address: libfcgi's streams point back into it. No listening
        // socket: the dispatcher accepts, and libfcgi, finding no connection, gives up instead of accepting.
        guard FCGX_InitRequest(raw, -1, 0) == 0 else { return }
        while !FastCGIRuntime.isShuttingDown, let connection = dispatcher.next() {
            raw.pointee.ipcFd = connection
            // FCGX_Accept_r first finishes "the previous request"; kept, it leaves the connection open.
            raw.pointee.keepConnection = 1
            // Negative when the web server hung up (it closes kept connections it no longer wants) or spoke
            // nonsense; libfcgi has closed the connection then.
            guard FCGX_Accept_r(raw) >= 0 else { continue }
            handler(FastCGIRequest(raw: raw))
            // Still open after the request was finished: the web server keeps it for its next request.
            if raw.pointee.ipcFd >= 0 {
                let kept = raw.pointee.ipcFd
                raw.pointee.ipcFd = -1
                dispatcher.park(kept)
            }
        }
        FCGX_Free(raw, 1)
    }
}
