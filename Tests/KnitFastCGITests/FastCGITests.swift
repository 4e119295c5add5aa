import Glibc
import KnitSystem
import Synchronization
import Testing

@testable import KnitFastCGI

/// What each handler saw, by the `TEST_CASE` parameter of its request: the handler runs on a server thread,
/// after the client may already be gone.
private let outcomes = Mutex<[String: String]>([:])

private func record(_ testCase: String, _ outcome: String) {
    outcomes.withLock { $0[testCase] = outcome }
}

/// Waits (at most 10 s) for the handler of `testCase` to report.
private func outcome(of testCase: String) async -> String? {
    for _ in 0..<1000 {
        if let seen = outcomes.withLock({ $0[testCase] }) { return seen }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return nil
}

private let sharedDirectory = try! makeTemporaryDirectory(prefix: "knit-fastcgi-test-")

/// One real libfcgi server for the suite, on a unix socket in a temporary directory. It is never stopped:
/// stopping is process-wide in libfcgi (no later server could accept), and its threads end with the process,
/// which removes the directory on its way out.
private let sharedServer: String = {
    atexit { try? removeTree(sharedDirectory) }
    let path = sharedDirectory + "/fcgi.sock"
    let listener = try! FastCGIListener(path: path, mode: 0o600)
    _ = FastCGIServer(listener: listener, handler: handle).start(threads: 4)
    return path
}()

private func handle(_ request: consuming FastCGIRequest) {
    let testCase = request.parameter("TEST_CASE") ?? ""
    switch testCase {
    case let name where name.hasPrefix("short-read"):
        var buffer = [UInt8](repeating: 0, count: 4096)
        var total = 0
        do {
            while true {
                let count = try buffer.withUnsafeMutableBytes { raw throws(FastCGIError) in
                    try request.read(into: raw)
                }
                if count == 0 { break }
                total += count
            }
            record(name, "complete \(total)")
        } catch let error as FastCGIError {
            record(name, "\(error.code) after \(total)")
        } catch {
            record(name, "unexpected \(error)")
        }
    case let name where name.hasPrefix("respond"):
        var body = [UInt8](repeating: 0, count: 64)
        _ = try? body.withUnsafeMutableBytes { raw throws(FastCGIError) in try request.read(into: raw) }
        guard let response = try? request.respond(status: 201, headers: [("X-Case", name)]) else {
            record(name, "respond failed")
            return
        }
        try? response.write(Array("once".utf8))
        response.finish()
        record(name, "finished")
    case let name where name.hasPrefix("dropped"):
        _ = consume request  // never answered: dropping the request must still end it for the web server
        record(name, "dropped")
    case let name where name.hasPrefix("peer-closed"):
        guard let response = try? request.respond(status: 200, headers: []) else {
            record(name, "respond failed")
            return
        }
        // Asked before the head leaves (libfcgi buffers it until the flush): the client, which waits for the
        // head before it hangs up, is surely still there.
        let before = response.peerHasClosed()
        response.flush()
        var after = false
        for _ in 0..<1000 where !after {
            after = response.peerHasClosed()
            if !after { usleep(10_000) }
        }
        record(name, "before \(before) after \(after)")
    case let name where name.hasPrefix("headers"):
        let headers = request.httpHeaders().sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        record(name, headers.joined(separator: "\n"))
    default:
        record(testCase, "unknown case")
    }
}

/// The STDOUT bytes of a response and how many END_REQUEST records ended it.
private func summary(_ records: [FastCGIClient.Record]) -> (stdout: String, ends: Int) {
    let stdout = records.filter { $0.type == FastCGIClient.RecordType.stdout.rawValue }.flatMap(\.content)
    let ends = records.filter { $0.type == FastCGIClient.RecordType.endRequest.rawValue }.count
    return (String(decoding: stdout, as: UTF8.self), ends)
}

@Suite("FastCGI over a real unix socket with libfcgi", .serialized)
struct FastCGITests {
    @Test("a second listener refuses to take over a socket path a live server answers on")
    func listenerRefusesTakeover() throws {
        let directory = try TemporaryDirectory(prefix: "knit-fastcgi-listen-")
        let path = directory.path + "/knitd.sock"
        let first = try FastCGIListener(path: path, mode: 0o600)
        defer { first.close() }
        let error = #expect(throws: FastCGIError.self) { try FastCGIListener(path: path, mode: 0o600) }
        #expect(error?.code == .addressInUse)
        // The refused attempt left the first server's socket in place: a client still reaches it.
        _ = try FastCGIClient(connectingTo: path)
    }

    @Test("a replacing listener takes a served path over in one rename; the predecessor's close leaves it alone")
    func replacingListenerTakesThePathOver() throws {
        let directory = try TemporaryDirectory(prefix: "knit-fastcgi-listen-")
        let path = directory.path + "/knitd.sock"
        func inode(_ path: String) -> UInt64? {
            var info = stat()
            return lstat(path, &info) == 0 ? UInt64(info.st_ino) : nil
        }
        let predecessor = try FastCGIListener(path: path, mode: 0o600)
        let before = try #require(inode(path))
        let successor = try FastCGIListener(path: path, mode: 0o640, replacing: true)
        // Until the take-over the path is the predecessor's: clients still reach it.
        #expect(inode(path) == before)
        try successor.takeOver()
        let after = try #require(inode(path))
        #expect(after != before)
        var info = stat()
        #expect(lstat(path, &info) == 0 && info.st_mode & 0o777 == 0o640, "the mode was set before the rename")
        let leftovers = try directoryEntries(directory.path).map { String(decoding: $0, as: UTF8.self) }
            .filter { $0 != "knitd.sock" }
        #expect(leftovers.isEmpty, "the fresh name is gone: \(leftovers)")
        _ = try FastCGIClient(connectingTo: path)
        // The predecessor stops: the name is its successor's now and stays.
        predecessor.close()
        #expect(inode(path) == after)
        successor.close()
        #expect(inode(path) == nil)
    }

    @Test("a stale socket file nobody answers on is taken over")
    func listenerReplacesStaleSocket() throws {
        let directory = try TemporaryDirectory(prefix: "knit-fastcgi-listen-")
        let path = directory.path + "/knitd.sock"
        let old = try FastCGIListener(path: path, mode: 0o600)
        // Closed without removing the file, as a crashed server leaves it.
        _ = Glibc.close(old.descriptor)
        let replacement = try FastCGIListener(path: path, mode: 0o600)
        replacement.close()
    }

    @Test("the HTTP headers are read from the HTTP_ parameters and CONTENT_*, and nothing else")
    func httpHeadersFromParameters() async throws {
        let client = try FastCGIClient(connectingTo: sharedServer)
        try client.begin(parameters: [
            ("TEST_CASE", "headers"), ("REQUEST_METHOD", "GET"), ("SCRIPT_FILENAME", "/srv/x"),
            ("CONTENT_TYPE", "application/json"), ("HTTP_CONTENT_TYPE", "text/plain"), ("CONTENT_LENGTH", ""),
            ("HTTP_AUTHORIZATION", "Bearer a=b=c"), ("HTTP_X_FORWARDED_FOR", "10.0.0.1"), ("HTTPS", "on"),
            ("HTTP_", "empty name"), ("HTTP_EMPTY", ""), ("HTTP_ÉTÉ_X", "kept as sent"),
        ])
        try client.sendBody([])
        let seen = await outcome(of: "headers")
        #expect(
            seen
                == [
                    "=empty name", "authorization=Bearer a=b=c", "content-type=application/json", "empty=",
                    "x-forwarded-for=10.0.0.1", "ÉtÉ-x=kept as sent",
                ].joined(separator: "\n")
        )
        _ = try client.readResponse()
    }

    @Test("a body that ends without FastCGI's end-of-stream record reads as connectionLost, not as the end")
    func shortReadIsConnectionLost() async throws {
        let client = try FastCGIClient(connectingTo: sharedServer)
        try client.begin(parameters: [("TEST_CASE", "short-read"), ("REQUEST_METHOD", "PUT")])
        try client.sendBody(Array(repeating: 0x61, count: 10))
        client.hangUp()
        let seen = await outcome(of: "short-read")
        #expect(seen?.hasPrefix("connectionLost") == true, "handler saw: \(seen ?? "nothing")")
    }

    @Test("a body ended by the empty STDIN record reads to the end (the control for the short read)")
    func completeBodyReadsToEnd() async throws {
        let client = try FastCGIClient(connectingTo: sharedServer)
        try client.begin(parameters: [("TEST_CASE", "short-read-complete"), ("REQUEST_METHOD", "PUT")])
        try client.sendBody(Array(repeating: 0x61, count: 10))
        try client.sendBody([])
        #expect(await outcome(of: "short-read-complete") == "complete 10")
        _ = try client.readResponse()
    }

    @Test("a responded request sends its head and body once and ends with exactly one END_REQUEST")
    func respondOnce() async throws {
        let client = try FastCGIClient(connectingTo: sharedServer)
        try client.begin(parameters: [("TEST_CASE", "respond"), ("REQUEST_METHOD", "POST")])
        try client.sendBody([])
        let (stdout, ends) = summary(try client.readResponse())
        #expect(stdout == "Status: 201 Created\r\nX-Case: respond\r\n\r\nonce")
        #expect(ends == 1)
        // After END_REQUEST the server closed the connection: nothing more arrives.
        #expect(try client.readRecord() == nil)
        // libfcgi lingers (up to 2 s) until the web server closes its end too.
        client.hangUp()
        #expect(await outcome(of: "respond") == "finished")
    }

    @Test("a request dropped without an answer still ends once, with no output")
    func droppedRequestEnds() async throws {
        let client = try FastCGIClient(connectingTo: sharedServer)
        try client.begin(parameters: [("TEST_CASE", "dropped"), ("REQUEST_METHOD", "GET")])
        try client.sendBody([])
        let (stdout, ends) = summary(try client.readResponse())
        #expect(stdout.isEmpty)
        #expect(ends == 1)
        client.hangUp()
        #expect(await outcome(of: "dropped") == "dropped")
    }

    @Test("a kept connection (FCGI_KEEP_CONN) serves requests one after another and stays open between them")
    func keptConnectionServesSeveralRequests() async throws {
        let client = try FastCGIClient(connectingTo: sharedServer)
        for index in 0..<3 {
            try client.begin(parameters: [("TEST_CASE", "respond-kept-\(index)")], keepConnection: true)
            try client.sendBody([])
            let (stdout, ends) = summary(try client.readResponse())
            #expect(stdout == "Status: 201 Created\r\nX-Case: respond-kept-\(index)\r\n\r\nonce")
            #expect(ends == 1)
            #expect(await outcome(of: "respond-kept-\(index)") == "finished")
            #expect(try !client.serverClosed(within: 100))
        }
        client.hangUp()
    }

    @Test("idle kept connections hold no thread: with more of them than threads, a new connection is served")
    func idleKeptConnectionsHoldNoThread() async throws {
        // The shared server has 4 threads; libfcgi alone would leave each blocked reading its kept connection.
        var kept: [HeldClient] = []
        for index in 0..<8 {
            let held = HeldClient(try FastCGIClient(connectingTo: sharedServer))
            try held.client.begin(parameters: [("TEST_CASE", "respond-idle-\(index)")], keepConnection: true)
            try held.client.sendBody([])
            #expect(summary(try held.client.readResponse()).ends == 1)
            kept.append(held)
        }
        let fresh = try FastCGIClient(connectingTo: sharedServer)
        try fresh.begin(parameters: [("TEST_CASE", "respond-after-idle")])
        try fresh.sendBody([])
        // The client's read times out after 10 s: a starved server fails here.
        #expect(summary(try fresh.readResponse()).stdout.hasSuffix("once"))
        fresh.hangUp()
        // Each idle connection still serves its next request.
        for (index, held) in kept.enumerated() {
            try held.client.begin(parameters: [("TEST_CASE", "respond-idle-again-\(index)")], keepConnection: true)
            try held.client.sendBody([])
            #expect(summary(try held.client.readResponse()).stdout.hasSuffix("once"))
        }
    }

    @Test("peerHasClosed is false while the web server is connected and true once it closes")
    func peerHasClosedAfterClose() async throws {
        let client = try FastCGIClient(connectingTo: sharedServer)
        try client.begin(parameters: [("TEST_CASE", "peer-closed"), ("REQUEST_METHOD", "GET")])
        try client.sendBody([])
        // Wait for the head, so the handler has looked once while we were still there.
        let head = try #require(try client.readRecord())
        #expect(head.type == FastCGIClient.RecordType.stdout.rawValue)
        client.hangUp()
        #expect(await outcome(of: "peer-closed") == "before false after true")
    }
}

struct ResponseHeadTests {
    @Test("the response head is the status line, each header, a blank line; line breaks in a value are dropped")
    func responseHeadBytes() {
        let head = responseHead(
            status: 404,
            headers: [("Content-Type", "application/json"), ("X-Note", "a\r\nSet-Cookie: x=1\nb"), ("X-Empty", "")]
        )
        #expect(
            String(decoding: head, as: UTF8.self)
                == "Status: 404 Not Found\r\nContent-Type: application/json\r\nX-Note: aSet-Cookie: x=1b\r\nX-Empty: \r\n\r\n"
        )
        #expect(String(decoding: responseHead(status: 299, headers: []), as: UTF8.self) == "Status: 299 Status\r\n\r\n")
    }
}

/// A client kept in a list (the client itself cannot be copied into one); closed when released.
private final class HeldClient {
    let client: FastCGIClient
    init(_ client: consuming FastCGIClient) { self.client = client }
}

@Suite struct ConnectionDispatcherTests {
    @Test("a stopped server's dispatcher closes the kept connections still idle, and only those")
    func closeAllClosesParkedConnections() throws {
        let directory = try makeTemporaryDirectory(prefix: "knit-dispatcher-test-")
        defer { try? removeTree(directory) }
        let listener = try FastCGIListener(path: directory + "/d.sock", mode: 0o600)
        defer { listener.close() }
        let dispatcher = ConnectionDispatcher(listener: listener)
        var parkedPair: [Int32] = [-1, -1]
        var otherPair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &parkedPair) == 0)
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &otherPair) == 0)
        defer {
            close(parkedPair[1])
            close(otherPair[0])
            close(otherPair[1])
        }
        dispatcher.park(parkedPair[0])
        dispatcher.closeAll()
        // The parked end is closed: its peer reads end of stream. The other pair is untouched.
        var byte: UInt8 = 0
        #expect(read(parkedPair[1], &byte, 1) == 0)
        #expect(fcntl(otherPair[0], F_GETFD) >= 0)
        #expect(fcntl(listener.descriptor, F_GETFD) >= 0)
    }
}
