import ArgumentParser
import KnitCore
import KnitStore
import KnitSystem
import Logging

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// `knitadm status`: whether knitd and the scheduler answer, and what the store holds.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show whether knitd and knit-scheduler answer, and the store's size, map use, Runs and users.",
        discussion: """
            knitd is asked GET /api/health over its FastCGI socket (HOME/run/knitd.sock), as nginx would; \
            the scheduler is up when its wake-up socket (HOME/run/scheduler.sock) has a receiver. JSON on \
            stdout, a short table on a terminal (--json forces JSON). Exits 1 when a component is down or \
            the store cannot be read.
            """
    )
    @ParentCommand var root: Knitadm
    var home: HomeOption { root.home }
    @Flag(help: "JSON also on a terminal.")
    var json = false

    func run() throws {
        let layout = InstanceLayout(home: home.resolved)
        let knitd = probeKnitd(socket: layout.knitdSocket, pidFile: layout.run + "/knitd.pid")
        let scheduler = probeScheduler(socket: layout.schedulerSocket, pidFile: layout.run + "/knit-scheduler.pid")
        var storeStatus: StoreStatus?
        var storeError: String?
        do {
            let store = try openQuietly()
            defer { store.close() }
            let statistics = try store.statistics()
            let users = try store.userSummaries()
            var byState: [String: Int] = [:]
            for user in users { byState[user.state.rawValue, default: 0] += 1 }
            storeStatus = StoreStatus(statistics: statistics, usersByState: byState)
        } catch {
            storeError = error.message
        }
        let status = InstanceStatus(
            ok: knitd.up && scheduler.up && storeStatus != nil,
            home: layout.home,
            knitd: knitd,
            scheduler: scheduler,
            store: storeStatus,
            storeError: storeError
        )
        if !json && isatty(1) == 1 { print(status.table, terminator: "") } else { printJSON(status) }
        if !status.ok { throw ExitCode(1) }
    }

    /// The store without its log lines: status reports a failure in its own answer.
    private func openQuietly() throws(StoreError) -> KnitStore {
        var logger = Logger(label: "knitadm", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .error
        return try KnitStore(home: home.resolved, logger: logger)
    }
}

struct InstanceStatus: Encodable {
    var ok: Bool
    var home: String
    var knitd: ComponentStatus
    var scheduler: ComponentStatus
    var store: StoreStatus?
    var storeError: String?

    var table: String {
        func line(_ name: String, _ value: String) -> String {
            name + String(repeating: " ", count: max(12 - name.count, 1)) + value + "\n"
        }
        func describe(_ component: ComponentStatus) -> String {
            var text = component.up ? "up" : "DOWN"
            if let pid = component.pid { text += " (pid \(pid))" }
            if let version = component.version { text += " version \(version)" }
            if let error = component.error { text += ": \(error)" }
            return text
        }
        var text = line("home", home) + line("knitd", describe(knitd)) + line("scheduler", describe(scheduler))
        if let store {
            // Thousandths of a percent, without Foundation's formatter.
            let milli = store.mapUsedBytes * 100_000 / max(store.mapSizeBytes, 1)
            let percent = "\(milli / 1000).\(String(milli % 1000 + 1000).dropFirst())"
            text += line("data", "\(store.data)")
            text += line("plans", "\(store.plans)")
            text += line(
                "map",
                "\(store.mapUsedBytes) of \(store.mapSizeBytes) bytes (\(percent)%)"
            )
            let runs = store.runsByStatus.filter { $0.value > 0 }.sorted { $0.key < $1.key }
            text += line("runs", runs.isEmpty ? "none" : runs.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            text += line(
                "users",
                store.usersByState.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            )
        } else {
            text += line("store", "UNREADABLE: \(storeError ?? "")")
        }
        return text
    }
}

struct ComponentStatus: Encodable {
    var up: Bool
    var socket: String
    /// From the pid file knit-up writes, when there is one and its process lives (systemd keeps none).
    var pid: Int32?
    var version: String?
    var error: String?
}

struct StoreStatus: Encodable {
    var data: Int
    var plans: Int
    var users: Int
    var usersByState: [String: Int]
    var runsByStatus: [String: Int]
    var runsWaiting: Int
    var mapSizeBytes: Int64
    var mapUsedBytes: Int64
    var pageSize: Int64

    init(statistics: StoreStatistics, usersByState: [String: Int]) {
        data = statistics.data
        plans = statistics.plans
        users = statistics.users
        self.usersByState = usersByState
        runsByStatus = statistics.runsByStatus
        runsWaiting = statistics.runsWaiting
        mapSizeBytes = statistics.mapSizeBytes
        mapUsedBytes = statistics.mapUsedBytes
        pageSize = statistics.pageSize
    }
}

/// The pid in `file` when that process exists.
private func livePid(_ file: String) -> Int32? {
    guard let text = try? String(contentsOfFile: file, encoding: .utf8),
        let pid = Int32(text.filter { !$0.isWhitespace }), pid > 0, kill(pid, 0) == 0
    else { return nil }
    return pid
}

private func unixAddress(_ path: String) -> sockaddr_un? {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return address
}

private func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }

/// The scheduler binds a datagram socket and drains it; a datagram finds a receiver only while it runs (a
/// socket file left by a dead one refuses). The byte is the wake-up knitd sends after every change: at most
/// one extra look at the queue.
func probeScheduler(socket path: String, pidFile: String) -> ComponentStatus {
    var status = ComponentStatus(up: false, socket: path, pid: livePid(pidFile))
    switch Wakeup.notify(path: path) {
    case .delivered, .receiverBusy: status.up = true
    case .notDelivered(let error): status.error = error.message
    }
    return status
}

/// Asks knitd `GET /api/health` over FastCGI, as nginx does (one request per connection).
func probeKnitd(socket path: String, pidFile: String) -> ComponentStatus {
    var status = ComponentStatus(up: false, socket: path, pid: livePid(pidFile))
    do {
        let body = try fastCGIGet(socket: path, uri: "/api/health")
        let health = try JSONDecoder().decode(HealthAnswer.self, from: Data(body))
        status.up = health.status == "ok"
        status.version = health.version
        if !status.up { status.error = "health status \(health.status)" }
    } catch let error as ProbeError {
        status.error = error.message
    } catch {
        status.error = "unexpected answer to GET /api/health: \(error)"
    }
    return status
}

private struct HealthAnswer: Decodable {
    var status: String
    var version: String
}

struct ProbeError: Error {
    var message: String
}

/// A minimal FastCGI responder request: BEGIN_REQUEST, PARAMS, empty STDIN, then STDOUT until END_REQUEST.
/// Returns the body after the CGI head; throws for a status other than 200.
private func fastCGIGet(socket path: String, uri: String) throws(ProbeError) -> [UInt8] {
    guard var address = unixAddress(path) else { throw ProbeError(message: "socket path too long: \(path)") }
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw ProbeError(message: "socket: \(errnoText(errno))") }
    defer { close(fd) }
    // A knitd that accepts but never answers (every thread busy or hung) counts as down after this long.
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let connected = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    guard connected == 0 else { throw ProbeError(message: "\(path): \(errnoText(errno))") }

    func record(_ type: UInt8, _ content: [UInt8]) -> [UInt8] {
        [1, type, 0, 1, UInt8(content.count >> 8), UInt8(content.count & 0xff), 0, 0] + content
    }
    var parameters: [UInt8] = []
    for (name, value) in [("REQUEST_METHOD", "GET"), ("REQUEST_URI", uri), ("DOCUMENT_URI", uri)] {
        parameters += [UInt8(name.utf8.count), UInt8(value.utf8.count)] + Array(name.utf8) + Array(value.utf8)
    }
    let request = record(1, [0, 1, 0, 0, 0, 0, 0, 0]) + record(4, parameters) + record(4, []) + record(5, [])
    var offset = 0
    while offset < request.count {
        let written = request[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard written > 0 else { throw ProbeError(message: "\(path): write: \(errnoText(errno))") }
        offset += written
    }

    func readExactly(_ count: Int) throws(ProbeError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            if n == 0 { throw ProbeError(message: "\(path): knitd closed the connection before answering") }
            if n < 0 {
                if errno == EINTR { continue }
                let reason = errno == EAGAIN ? "no answer within 10 s" : errnoText(errno)
                throw ProbeError(message: "\(path): \(reason)")
            }
            got += n
        }
        return bytes
    }
    var output: [UInt8] = []
    while true {
        let header = try readExactly(8)
        let length = Int(header[4]) << 8 | Int(header[5])
        let content = try readExactly(length + Int(header[6]))
        if header[1] == 6 { output += content.prefix(length) }
        if header[1] == 3 { break }
        guard output.count < 1 << 20 else { throw ProbeError(message: "\(path): answer too large") }
    }
    // The CGI head ends at the first empty line; its Status line (absent means 200) says how it went.
    let separator: [UInt8] = Array("\r\n\r\n".utf8)
    guard let end = output.firstRange(of: separator) else {
        throw ProbeError(message: "\(path): the answer has no CGI head")
    }
    let head = String(decoding: output[..<end.lowerBound], as: UTF8.self)
    if let statusLine = head.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("status:") }) {
        let code = statusLine.dropFirst("status:".count).drop { $0 == " " }.prefix(3)
        guard code == "200" else { throw ProbeError(message: "GET \(uri) answered \(statusLine)") }
    }
    return Array(output[end.upperBound...])
}
