// Test support only: full Foundation (Process) is fine here because this module never ships.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What a finished child process left behind.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: Data
    public var stderr: String

    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
}

/// An error of the test harness itself (not of the system under test).
public struct KnitTestingError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Starts a child with posix_spawn. Not Foundation's `Process`: a child spawned from a Swift
/// Testing thread by `Process` inherits that thread's signal mask, which blocks SIGTERM and
/// almost everything else, so a server under test would silently ignore SIGTERM. Here the child
/// gets an empty mask and default dispositions. Output is appended to files (never pipes, so
/// big outputs cannot deadlock).
func spawnChild(
    _ executable: String,
    _ arguments: [String],
    cwd: String?,
    environment: [String: String],
    stdinPath: String?,
    stdoutPath: String,
    stderrPath: String
) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }

    posix_spawn_file_actions_addopen(&actions, 0, stdinPath ?? "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    if stderrPath == stdoutPath {
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
    } else {
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    }
    var program = executable
    var argv = [executable] + arguments
    if let cwd {
        if let addchdir = addChdirAction {
            _ = cwd.withCString { addchdir(&actions, $0) }
        } else {
            // Older libc: let a shell change directory, then exec (the mask stays reset).
            program = "/bin/sh"
            argv = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", cwd, executable] + arguments
        }
    }

    var emptyMask = sigset_t()
    sigemptyset(&emptyMask)
    posix_spawnattr_setsigmask(&attributes, &emptyMask)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for sig in [SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM] {
        sigaddset(&defaults, sig)
    }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

    let cArguments = argv.map { strdup($0) } + [nil]
    let cEnvironment = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        for pointer in cArguments { free(pointer) }
        for pointer in cEnvironment { free(pointer) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, program, &actions, &attributes, cArguments, cEnvironment)
    guard rc == 0 else {
        throw KnitTestingError("cannot start \(executable): \(String(cString: strerror(rc)))")
    }
    return pid
}

/// glibc's posix_spawn_file_actions_addchdir_np, which the Glibc module does not import.
private let addChdirAction: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np") else {
        return nil
    }
    return unsafeBitCast(
        symbol,
        to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32).self
    )
}()

/// Decodes a waitpid status: the exit code, or 128 + signal like a shell.
func decodeWaitStatus(_ status: Int32) -> Int32 {
    let signal = status & 0x7f
    return signal == 0 ? (status >> 8) & 0xff : 128 + signal
}

/// Runs a program to completion (see `spawnChild` for why not `Process`).
public func runProcess(
    _ executable: String,
    _ arguments: [String],
    cwd: String? = nil,
    environment: [String: String]? = nil,
    stdin: Data? = nil,
    scratchDirectory: String = NSTemporaryDirectory()
) throws -> ProcessResult {
    let fm = FileManager.default
    let base = (scratchDirectory as NSString).appendingPathComponent("proc-\(UUID().uuidString)")
    let outPath = base + ".out"
    let errPath = base + ".err"
    let inPath = base + ".in"
    defer {
        try? fm.removeItem(atPath: outPath)
        try? fm.removeItem(atPath: errPath)
        try? fm.removeItem(atPath: inPath)
    }
    if let stdin {
        guard fm.createFile(atPath: inPath, contents: stdin) else {
            throw KnitTestingError("cannot create stdin file under \(scratchDirectory)")
        }
    }
    let pid = try spawnChild(
        executable,
        arguments,
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
    return ProcessResult(status: decodeWaitStatus(status), stdout: out, stderr: err)
}

/// A child process that keeps running in the background (a slow upload, a server), stopped by
/// its pid. stdout and stderr are appended to files so they can be read afterwards.
public final class BackgroundProcess: @unchecked Sendable {
    // @unchecked: the only mutable state, the reaped exit status, is guarded by `lock`, so
    // exactly one caller reaps the pid and everyone else sees the cached status.
    public let stdoutPath: String
    public let stderrPath: String
    public let pid: Int32
    private let lock = NSLock()
    private var reapedStatus: Int32?

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
        lock.withLock {
            if let reapedStatus { return reapedStatus }
            var status: Int32 = 0
            let rc = waitpid(pid, &status, WNOHANG)
            if rc == pid {
                reapedStatus = decodeWaitStatus(status)
            } else if rc < 0 && errno == ECHILD {
                reapedStatus = -1
            }
            return reapedStatus
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
