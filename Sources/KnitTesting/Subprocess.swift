// Test support only: full Foundation (Process) is fine here because this module never ships.
import Foundation
import KnitSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What a finished child process left behind.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: Data
    public var stderr: String
    /// The program's peak resident set in KiB, when it ran with `measuringMemory` (GNU time's `%M`).
    public var maxResidentKiB: Int?

    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
}

/// An error of the test harness itself (not of the system under test).
public struct KnitTestingError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Starts a child with KnitSystem's `Subprocess` (empty signal mask, default dispositions), not Foundation's
/// `Process`: a child spawned from a Swift Testing thread by `Process` inherits that thread's signal mask, which
/// blocks SIGTERM, so a server under test would silently ignore SIGTERM. Output is appended to files (never
/// pipes, so big outputs cannot deadlock).
func spawnChild(
    _ executable: String,
    _ arguments: [String],
    cwd: String?,
    environment: [String: String],
    stdinPath: String?,
    stdoutPath: String,
    stderrPath: String
) throws -> pid_t {
    do {
        return try Subprocess.spawn(
            [executable] + arguments,
            environment: environment.map { "\($0.key)=\($0.value)" },
            directory: cwd,
            stdin: stdinPath.map { .file($0) } ?? .null,
            stdout: .file(stdoutPath),
            stderr: stderrPath == stdoutPath ? .standardOutput : .file(stderrPath)
        ).pid
    } catch {
        throw KnitTestingError("cannot start \(executable): \(error.errno)")
    }
}

/// Runs a program to completion (see `spawnChild` for why not `Process`).
///
/// With `measuringMemory` the program runs under GNU time (`/usr/bin/time -f %M`), which forks it from its own
/// small process. `ru_maxrss` from our own `wait4` would not do: exec records the peak of the address space it
/// replaces, and a child spawned from here replaces ours (posix_spawn shares it until exec), so every figure
/// would be at least the test runner's own peak.
public func runProcess(
    _ executable: String,
    _ arguments: [String],
    cwd: String? = nil,
    environment: [String: String]? = nil,
    stdin: Data? = nil,
    scratchDirectory: String = NSTemporaryDirectory(),
    measuringMemory: Bool = false
) throws -> ProcessResult {
    let fm = FileManager.default
    let base = (scratchDirectory as NSString).appendingPathComponent("proc-\(UUID().uuidString)")
    let outPath = base + ".out"
    let errPath = base + ".err"
    let inPath = base + ".in"
    let rssPath = base + ".rss"
    defer {
        try? fm.removeItem(atPath: outPath)
        try? fm.removeItem(atPath: errPath)
        try? fm.removeItem(atPath: inPath)
        try? fm.removeItem(atPath: rssPath)
    }
    if let stdin {
        guard fm.createFile(atPath: inPath, contents: stdin) else {
            throw KnitTestingError("cannot create stdin file under \(scratchDirectory)")
        }
    }
    let pid = try spawnChild(
        measuringMemory ? "/usr/bin/time" : executable,
        measuringMemory ? ["-f", "%M", "-o", rssPath, executable] + arguments : arguments,
        cwd: cwd,
        environment: environment ?? ProcessInfo.processInfo.environment,
        stdinPath: stdin == nil ? nil : inPath,
        stdoutPath: outPath,
        stderrPath: errPath
    )
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        guard errno == EINTR else { throw KnitTestingError("waitpid(\(pid)) failed: errno \(errno)") }
    }
    let out = (try? Data(contentsOf: URL(fileURLWithPath: outPath))) ?? Data()
    let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    // After a failure GNU time writes "Command exited with non-zero status N" first; the figure is the last line.
    var rss: Int?
    if measuringMemory, let text = try? String(contentsOfFile: rssPath, encoding: .utf8) {
        rss = text.split(separator: "\n").last.flatMap { Int($0) }
    }
    return ProcessResult(status: ExitStatus(waitStatus: status).code, stdout: out, stderr: err, maxResidentKiB: rss)
}

/// A child process that keeps running in the background (a slow upload, a server), stopped by
/// its pid. stdout and stderr are appended to files so they can be read afterwards.
public final class BackgroundProcess: Sendable {
    public let stdoutPath: String
    public let stderrPath: String
    public let pid: Int32
    /// The reaped exit status, behind a lock so exactly one caller reaps the pid and everyone else sees it.
    private let reapedStatus = Mutex<Int32?>(nil)

    public init(
        _ executable: String,
        _ arguments: [String],
        cwd: String? = nil,
        environment: [String: String]? = nil,
        stdinPath: String? = nil,
        stdoutPath: String,
        stderrPath: String
    ) throws {
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
        pid = try spawnChild(
            executable,
            arguments,
            cwd: cwd,
            environment: environment ?? ProcessInfo.processInfo.environment,
            stdinPath: stdinPath,
            stdoutPath: stdoutPath,
            stderrPath: stderrPath
        )
    }

    /// Reaps the child if it has exited (never blocks).
    private func poll() -> Int32? {
        reapedStatus.withLock { reaped in
            if let reaped { return reaped }
            var status: Int32 = 0
            let rc = waitpid(pid, &status, WNOHANG)
            if rc == pid {
                reaped = ExitStatus(waitStatus: status).code
            } else if rc < 0 && errno == ECHILD {
                reaped = -1
            }
            return reaped
        }
    }

    public var isRunning: Bool { poll() == nil }

    /// Exit status (128+signal when killed), or nil while it still runs.
    public var exitStatus: Int32? { poll() }

    public func signal(_ sig: Int32) {
        if poll() == nil { _ = kill(pid, sig) }
    }

    /// Waits up to `timeout` seconds; true when the process has exited.
    @discardableResult
    public func wait(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while poll() == nil {
            if Date() >= deadline { return false }
            usleep(20_000)
        }
        return true
    }

    /// SIGTERM (or `sig`), wait, then SIGKILL if it did not go.
    public func stop(signal sig: Int32 = SIGTERM, grace: Double = 10) {
        guard poll() == nil else { return }
        _ = kill(pid, sig)
        if !wait(timeout: grace) {
            _ = kill(pid, SIGKILL)
            wait(timeout: 5)
        }
    }

    public var stdoutText: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    public var stderrText: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    deinit {
        if poll() == nil {
            _ = kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
    }
}

/// Number of open file descriptors of a process (entries of /proc/PID/fd), for leak checks.
public func fdCount(pid: Int32) -> Int? {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count
}

/// An ephemeral TCP port on 127.0.0.1 that was free a moment ago: bind to port 0, read it, close.
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw KnitTestingError("socket() failed: errno \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard bound == 0 else { throw KnitTestingError("bind() failed: errno \(errno)") }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    guard named == 0 else { throw KnitTestingError("getsockname() failed: errno \(errno)") }
    return Int(UInt16(bigEndian: addr.sin_port))
}
