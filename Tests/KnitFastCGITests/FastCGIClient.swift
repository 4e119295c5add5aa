import Glibc

/// A tiny FastCGI client over a unix socket, written from the protocol: the test plays nginx's part, record by
/// record, so it can also stop anywhere a real web server might (mid-body, mid-response).
struct FastCGIClient: ~Copyable {
    enum RecordType: UInt8 {
        case beginRequest = 1, endRequest = 3, params = 4, stdin = 5, stdout = 6, stderr = 7
    }

    struct Record {
        var type: UInt8
        var content: [UInt8]
    }

    private var descriptor: Int32
    private let requestId: UInt16 = 1

    init(connectingTo path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClientError("socket: errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let code = errno
            close(fd)
            throw ClientError("connect \(path): errno \(code)")
        }
        // No test may hang on a server that stopped answering.
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        descriptor = fd
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// BEGIN_REQUEST (responder role; the connection is closed after the request unless `keepConnection`,
    /// FCGI_KEEP_CONN, as nginx's pooled upstream connections ask) and the parameters.
    func begin(parameters: [(String, String)], keepConnection: Bool = false) throws {
        try send(.beginRequest, [0, 1, keepConnection ? 1 : 0, 0, 0, 0, 0, 0])
        var encoded: [UInt8] = []
        for (name, value) in parameters {
            encoded += Self.length(name.utf8.count) + Self.length(value.utf8.count)
            encoded += Array(name.utf8) + Array(value.utf8)
        }
        try send(.params, encoded)
        try send(.params, [])
    }

    /// A body chunk; an empty one ends the body.
    func sendBody(_ bytes: [UInt8]) throws { try send(.stdin, bytes) }

    /// Closes our end: the web server went away.
    consuming func hangUp() {
        close(descriptor)
        descriptor = -1
    }

    /// Whether the server closed its end within `milliseconds` (false: still open, nothing to read).
    func serverClosed(within milliseconds: Int32) throws -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, milliseconds) > 0 else { return false }
        return try readRecord() == nil
    }

    /// Reads records until END_REQUEST (included) or end of stream.
    func readResponse() throws -> [Record] {
        var records: [Record] = []
        while let record = try readRecord() {
            records.append(record)
            if record.type == RecordType.endRequest.rawValue { break }
        }
        return records
    }

    /// Reads one record, or nil at end of stream.
    func readRecord() throws -> Record? {
        guard let header = try readExactly(8) else { return nil }
        let length = Int(header[4]) << 8 | Int(header[5])
        guard let body = try readExactly(length + Int(header[6])) else { throw ClientError("record cut short") }
        return Record(type: header[1], content: Array(body.prefix(length)))
    }

    private func readExactly(_ count: Int) throws -> [UInt8]? {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: max(count, 1))
        while bytes.count < count {
            let got = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, count - bytes.count) }
            if got < 0 && errno == EINTR { continue }
            if got < 0 { throw ClientError("read: errno \(errno)") }
            if got == 0 {
                if bytes.isEmpty { return nil }
                throw ClientError("stream ended inside a record")
            }
            bytes += buffer[0..<got]
        }
        return bytes
    }

    private func send(_ type: RecordType, _ content: [UInt8]) throws {
        precondition(content.count < 65536)
        let header: [UInt8] = [
            1, type.rawValue, UInt8(requestId >> 8), UInt8(requestId & 0xff), UInt8(content.count >> 8),
            UInt8(content.count & 0xff), 0, 0,
        ]
        let record = header + content
        var offset = 0
        while offset < record.count {
            let sent = record.withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress! + offset, record.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 && errno == EINTR { continue }
            guard sent > 0 else { throw ClientError("send: errno \(errno)") }
            offset += sent
        }
    }

    private static func length(_ count: Int) -> [UInt8] {
        if count < 128 { return [UInt8(count)] }
        return [
            UInt8(count >> 24) | 0x80, UInt8((count >> 16) & 0xff), UInt8((count >> 8) & 0xff),
            UInt8(count & 0xff),
        ]
    }
}

struct ClientError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
