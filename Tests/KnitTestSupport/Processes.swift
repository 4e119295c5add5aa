public import Glibc
import KnitSystem

/// Runs a program (looked up on PATH when `arguments[0]` has no slash) with its output discarded;
/// returns its exit status (128 + signal when killed), or -1 when it cannot start.
@discardableResult
public func run(_ arguments: [String]) -> Int32 {
    guard let program = resolve(arguments[0]),
        let child = try? Subprocess.spawn([program] + arguments.dropFirst(), stdout: .null, stderr: .null),
        let status = try? child.wait()
    else { return -1 }
    return status.code
}

/// Runs a program and returns its stdout (stderr is ours).
public func capture(_ arguments: [String]) -> String {
    guard let program = resolve(arguments[0]),
        let result = try? runFilter([program] + arguments.dropFirst(), input: [], stderr: .inherit)
    else { return "" }
    return String(decoding: result.output, as: UTF8.self)
}

/// Runs a program with `input` on stdin; returns its exit status and its stdout and stderr together.
public func runProcess(_ arguments: [String], input: String) -> (status: Int32, output: String) {
    guard let program = resolve(arguments[0]),
        let result = try? runFilter(
            [program] + arguments.dropFirst(),
            input: Array(input.utf8),
            stderr: .standardOutput
        )
    else { return (-1, "") }
    return (result.status.code, String(decoding: result.output, as: UTF8.self))
}

private func resolve(_ program: String) -> String? {
    program.contains("/") ? program : findExecutable(program)
}

/// A Python server on 127.0.0.1 (ephemeral port) running `script`, which prints `PORT <n>` first.
public final class PythonServer {
    public let port: Int
    public let pid: pid_t
    private let directory: TemporaryDirectory

    public init(script: String, arguments: [String] = []) throws {
        directory = TemporaryDirectory()
        directory.write("server.py", script)
        directory.write("knit_test_http.py", Self.sharedHelpers)
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw TestFailure("pipe: \(Errno.current)") }
        _ = fcntl(pipeFDs[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(pipeFDs[1], F_SETFD, FD_CLOEXEC)
        let child: Subprocess
        do {
            child = try Subprocess.spawn(
                ["/usr/bin/python3", "-u", directory.file("server.py")] + arguments,
                stdout: .descriptor(pipeFDs[1])
            )
        } catch {
            close(pipeFDs[0])
            close(pipeFDs[1])
            throw error
        }
        pid = child.pid
        close(pipeFDs[1])
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while Glibc.read(pipeFDs[0], &byte, 1) == 1, byte != UInt8(ascii: "\n") { line.append(byte) }
        close(pipeFDs[0])
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5)) else {
            child.kill()
            _ = try? child.wait()
            throw TestFailure("the server printed no port: \(text)")
        }
        self.port = port
    }

    /// A module every test server may import (`from knit_test_http import read_request_body`):
    /// `read_request_body(handler)` reads a request body, chunked (with its trailers) or by Content-Length,
    /// which `http.server` does not, and returns `(body, was_chunked, trailers)`.
    static let sharedHelpers = #"""
        def read_request_body(handler):
            trailers = {}
            if handler.headers.get("Transfer-Encoding", "").lower() != "chunked":
                return handler.rfile.read(int(handler.headers.get("Content-Length", "0"))), False, trailers
            body = bytearray()
            while True:
                size = int(handler.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while True:
                        line = handler.rfile.readline().strip()
                        if not line:
                            return bytes(body), True, trailers
                        name, value = line.decode().split(":", 1)
                        trailers[name.strip().lower()] = value.strip()
                body += handler.rfile.read(size)
                handler.rfile.readline()
        """#

    public var base: String { "http://127.0.0.1:\(port)" }

    /// Kills and reaps the server.
    public func stop() {
        kill(pid, SIGKILL)
        waitpid(pid, nil, 0)
    }
}

/// The MD5 of `bytes` in hex, from the system's md5sum: independent of the digest code under test.
public func md5Hex(_ bytes: [UInt8]) -> String {
    let directory = TemporaryDirectory()
    writeFile(directory.file("blob"), bytes: bytes)
    return String(capture(["/usr/bin/md5sum", directory.file("blob")]).prefix(32))
}
