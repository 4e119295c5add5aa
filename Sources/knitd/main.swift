import ArgumentParser
import KnitAPI
import KnitCore
import KnitDaemon
import KnitFastCGI
import KnitStore
import KnitSystem
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// knitd: Knit's API server, FastCGI behind nginx. Wiring only; the API lives in KnitAPI.
@main
struct Knitd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "knitd",
        abstract: "Serve Knit's REST API over FastCGI on a unix socket (put nginx in front)."
    )

    @Option(help: "Instance directory (store, data, sockets). Default: $KNIT_HOME or /var/lib/knit.")
    var home: String = KnitStore.defaultHome()

    @Option(help: "FastCGI socket path. Default: HOME/run/knitd.sock.")
    var socket: String?

    @Option(help: "Octal mode of the socket.")
    var socketMode: String = "0660"

    @Option(help: "Group to own the socket (nginx's group, e.g. www-data).")
    var socketGroup: String?

    @Option(help: "Worker threads, each serving one request at a time.")
    var threads: Int = 48

    @Option(help: "Uploads plus downloads at once; more are answered 503. Keep well below --threads.")
    var transferSlots: Int = 32

    @Option(help: "Followed run logs at once; more are answered 503. With --transfer-slots, below --threads.")
    var followSlots: Int = 8

    @Option(
        help: "The most transfers, and the most followed logs, one user may have at once (default: half of each pool)."
    )
    var slotsPerUser: Int?

    @Option(
        help: """
            Most bytes one Data may hold, counting the declared size of every file (holes of sparse files \
            included); larger uploads get 413. The free space of the store's file system is always a limit too.
            """
    )
    var maxDataBytes: Int64?

    @Flag(
        help: """
            Take the socket over from a running knitd (an upgrade): listen on a fresh socket and move it onto \
            --socket in one rename, so every new request comes here while the running one finishes what it \
            accepted; then stop that one with SIGTERM. A store that needs a migration is opened once it has gone.
            """
    )
    var replace = false

    @OptionGroup var daemon: DaemonOptions

    func validate() throws {
        guard threads > 0, transferSlots > 0, followSlots > 0, (slotsPerUser ?? 1) > 0 else {
            throw ValidationError("--threads, --transfer-slots, --follow-slots and --slots-per-user must be positive")
        }
        guard transferSlots + followSlots < threads else {
            throw ValidationError(
                "--transfer-slots plus --follow-slots must be below --threads, or slow transfers and log streams can starve other requests"
            )
        }
        if let maxDataBytes, maxDataBytes < 0 { throw ValidationError("--max-data-bytes must not be negative") }
        guard mode_t(socketMode, radix: 8) != nil else {
            throw ValidationError("--socket-mode must be octal, e.g. 0660")
        }
    }

    func run() throws {
        daemon.bootstrapLogging()
        let logger = Logger(label: "knitd")
        // Before any worker thread exists: they inherit the mask, and this thread alone takes the signals.
        let stopSignals = StopSignals.block()

        let layout = InstanceLayout(home: home)
        let socketPath = socket ?? layout.knitdSocket
        _ = mkdir(layout.run, 0o755)
        // Listening comes first: taking over from a running knitd, requests queue here while the store opens
        // (and, when it must be migrated, while the predecessor finishes and exits).
        let listener: FastCGIListener
        do {
            listener = try FastCGIListener(
                path: socketPath,
                mode: mode_t(socketMode, radix: 8)!,
                group: socketGroup,
                replacing: replace
            )
        } catch {
            logger.critical("cannot listen", metadata: ["socket": "\(socketPath)", "error": "\(error)"])
            throw ExitCode(2)
        }

        // Taking over: the socket moves onto the path once the store is open, or before waiting for the
        // predecessor to close a store that needs a migration (it stops once new requests come here). A store
        // that cannot be opened leaves the predecessor serving.
        let takeOver = { () throws(FastCGIError) in if replace { try listener.takeOver() } }
        let store: KnitStore
        do {
            store = try KnitStore(
                home: home,
                logger: logger,
                beforeWaitingToMigrate: replace
                    ? {
                        do { try takeOver() } catch {
                            logger.error("cannot take the socket over", metadata: ["error": "\(error)"])
                        }
                    } : nil
            )
            try takeOver()
        } catch {
            logger.critical("cannot open the store", metadata: ["home": "\(home)", "error": "\(error)"])
            listener.close()
            throw ExitCode(2)
        }
        // Uploads left open and garbage are a dead knitd's leftovers only when no other knitd serves this store;
        // beside a predecessor they are its uploads in flight.
        let alone = KnitdPresence.announce(path: layout.run + "/knitd.lock")
        if alone {
            let report = store.recoverAtStartup()
            // Directories of Data dropped by retry or delete just before a crash (or that could not be deleted then).
            let collected = store.collectGarbage()
            logger.info(
                "store opened",
                metadata: ["home": "\(home)", "recovery": "\(report)", "garbage.removed": "\(collected)"]
            )
        } else {
            logger.info(
                "store opened beside another knitd; start-up recovery left to it",
                metadata: ["home": "\(home)"]
            )
        }

        let schedulerSocket = layout.schedulerSocket
        let api = KnitAPI(
            store: store,
            logger: logger,
            transferSlots: transferSlots,
            followSlots: followSlots,
            slotsPerUser: slotsPerUser,
            maxDataBytes: maxDataBytes
        ) {
            Wakeup.notify(path: schedulerSocket)
        }
        let server = FastCGIServer(listener: listener) { request in serve(request, api: api) }
        let running = server.start(threads: threads)
        logger.info(
            "knitd listening",
            metadata: ["socket": "\(socketPath)", "threads": "\(threads)", "transfer.slots": "\(transferSlots)"]
        )

        let received = stopSignals.wait()
        logger.info("stopping: finishing requests in flight", metadata: ["signal": "\(received)"])
        listener.stopAccepting()
        running.join()
        listener.close()
        store.close()
        logger.info("knitd stopped")
    }
}

/// `HOME/run/knitd.lock`: every knitd holds it shared while it serves; one that finds it free at start is the
/// only knitd of the store, so uploads left open are a dead predecessor's and its start-up recovery may drop
/// them. A knitd taking over from a running one (an upgrade) must leave them: they are in flight there.
enum KnitdPresence {
    /// Announces this knitd for the rest of the process's life; true when no other knitd serves the store.
    static func announce(path: String) -> Bool {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o660)
        // Without the lock file (a read-only run directory) nothing tells; recovering is what knitd always did.
        guard fd >= 0 else { return true }
        let alone = flock(fd, LOCK_EX | LOCK_NB) == 0
        while flock(fd, LOCK_SH) != 0 && errno == EINTR {}
        return alone
    }
}

/// Adapts one FastCGI request to the API and writes the answer back.
func serve(_ request: consuming FastCGIRequest, api: KnitAPI) {
    let headers = request.httpHeaders()
    let method = request.parameter("REQUEST_METHOD") ?? "GET"
    let uri = request.parameter("REQUEST_URI") ?? request.parameter("DOCUMENT_URI") ?? "/"

    let response: APIResponse
    if var apiRequest = APIRequest(method: method, uri: uri, headers: headers) {
        apiRequest.requestID = request.parameter("REQUEST_ID")
        response = api.handle(apiRequest) { buffer in try request.read(into: buffer) }
    } else {
        response = APIResponse(
            status: 400,
            headers: [("Content-Type", "application/json")],
            body: .bytes(Array(#"{"message":"malformed percent-encoding in the request URI"}"#.utf8))
        )
    }

    var responseHeaders = response.headers
    if case .bytes(let bytes) = response.body { responseHeaders.append(("Content-Length", "\(bytes.count)")) }
    guard let writer = try? request.respond(status: response.status, headers: responseHeaders) else { return }
    switch response.body {
    case .empty:
        break
    case .bytes(let bytes):
        try? writer.write(bytes)
    case .stream(let produce):
        // An unbuffered response is read live (a followed log): each chunk leaves libfcgi's buffer at once.
        let live = response.headers.contains { $0.0 == "X-Accel-Buffering" && $0.1 == "no" }
        try? produce { bytes in
            if bytes.isEmpty {
                if writer.peerHasClosed() { throw ClientWentAway() }
                return
            }
            try writer.write(bytes)
            if live { writer.flush() }
        }
    }
    writer.finish()
}

/// Ends a streamed response whose client (through nginx) has gone.
private struct ClientWentAway: Error {}
