#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// A temporary directory under /tmp, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/knit-client-tests-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func write(_ name: String, _ text: String, mode: mode_t = 0o644) {
        let fd = open(file(name), O_WRONLY | O_CREAT | O_TRUNC, mode)
        precondition(fd >= 0, "cannot create \(name)")
        _ = Array(text.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    func mkdir(_ name: String) { _ = Glibc.mkdir(file(name), 0o755) }

    func read(_ name: String) -> String? {
        guard let data = FileManager.default.contents(atPath: file(name)) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    func remove() { _ = run(["/bin/rm", "-rf", path]) }
}

/// Runs a program to completion; returns its exit status.
@discardableResult
func run(_ arguments: [String]) -> Int32 {
    var pid = pid_t()
    let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    guard posix_spawn(&pid, arguments[0], &actions, nil, argv, environ) == 0 else { return -1 }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return (status >> 8) & 0xFF
}

/// A Python server on 127.0.0.1 (ephemeral port) running `script`; the script prints `PORT <n>` first.
final class PythonServer {
    let port: Int
    let pid: pid_t
    let directory: TemporaryDirectory

    init(script: String, arguments: [String] = []) throws {
        directory = TemporaryDirectory()
        directory.write("server.py", script)
        var pipeFDs: [Int32] = [0, 0]
        precondition(pipe(&pipeFDs) == 0)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
        let all = ["/usr/bin/python3", "-u", directory.file("server.py")] + arguments
        let argv: [UnsafeMutablePointer<CChar>?] = all.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        // The test runner's threads block signals; the child must not inherit that mask.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        var pid = pid_t()
        guard posix_spawn(&pid, all[0], &actions, &attributes, argv, environ) == 0 else { throw ServerError.spawn }
        self.pid = pid
        close(pipeFDs[1])
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while read(pipeFDs[0], &byte, 1) == 1, byte != UInt8(ascii: "\n") { line.append(byte) }
        close(pipeFDs[0])
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5)) else {
            kill(pid, SIGKILL)
            waitpid(pid, nil, 0)
            throw ServerError.noPort(text)
        }
        self.port = port
    }

    var base: String { "http://127.0.0.1:\(port)" }

    func stop() {
        kill(pid, SIGKILL)
        waitpid(pid, nil, 0)
        directory.remove()
    }

    enum ServerError: Error { case spawn, noPort(String) }
}

/// An HTTP/1.1 test server that speaks chunked bodies and trailers, which `http.server` does not.
let echoServerScript = #"""
import hashlib, json, socketserver, sys, ssl
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass

    def read_body(self):
        trailers = {}
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while True:
                        line = self.rfile.readline().strip()
                        if not line: break
                        k, v = line.decode().split(":", 1)
                        trailers[k.strip().lower()] = v.strip()
                    return body, True, trailers
                body += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n), False, trailers

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/hello":
            data = b"hello, world\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("X-Custom-Thing", "yes")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path.startswith("/big"):
            n = int(self.path.split("=")[1])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "x-checksum-md5")
            self.end_headers()
            md5 = hashlib.md5()
            sent = 0
            while sent < n:
                chunk = bytes((i * 7 + sent) % 251 for i in range(min(65536, n - sent)))
                md5.update(chunk)
                self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
            self.wfile.write(b"0\r\nx-checksum-md5: " + md5.hexdigest().encode() + b"\r\n\r\n")
        elif self.path.startswith("/status/"):
            code = int(self.path.split("/")[2])
            self.send_json(code, {"message": "no such thing", "reason": "thing 'x' not found", "advice": "", "see": ""})
        elif self.path.startswith("/headers"):
            self.send_json(200, {k.lower(): v for k, v in self.headers.items()})
        else:
            self.send_json(404, {"message": "unknown path"})

    def do_POST(self):
        body, chunked, trailers = self.read_body()
        self.send_json(200, {"method": self.command, "path": self.path, "length": len(body),
                             "md5": hashlib.md5(body).hexdigest(), "chunked": chunked, "trailers": trailers,
                             "headers": {k.lower(): v for k, v in self.headers.items()}})
    do_PUT = do_POST
    do_DELETE = do_POST

class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True

server = Server(("127.0.0.1", 0), Handler)
if len(sys.argv) > 2:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print("PORT", server.server_address[1])
server.serve_forever()
"""#

/// Runs a program and returns its stdout.
func capture(_ arguments: [String]) -> String {
    var pipeFDs: [Int32] = [0, 0]
    precondition(pipe(&pipeFDs) == 0)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
    posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
    let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid = pid_t()
    precondition(posix_spawn(&pid, arguments[0], &actions, nil, argv, environ) == 0)
    close(pipeFDs[1])
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(pipeFDs[0], &buffer, buffer.count)
        if n <= 0 { break }
        out.append(contentsOf: buffer[0..<n])
    }
    close(pipeFDs[0])
    waitpid(pid, nil, 0)
    return String(decoding: out, as: UTF8.self)
}

func md5Hex(_ bytes: [UInt8]) -> String {
    // Independent of KnitDigest: ask the system's md5sum.
    let dir = TemporaryDirectory()
    defer { dir.remove() }
    _ = FileManager.default.createFile(atPath: dir.file("blob"), contents: Data(bytes))
    return String(capture(["/usr/bin/md5sum", dir.file("blob")]).prefix(32))
}
