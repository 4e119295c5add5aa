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

/// Runs a program to completion. Output goes to temporary files rather than pipes, so a child
/// that writes megabytes to both streams can never deadlock against us.
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
    guard fm.createFile(atPath: outPath, contents: nil), fm.createFile(atPath: errPath, contents: nil) else {
        throw KnitTestingError("cannot create output files under \(scratchDirectory)")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    if let environment { process.environment = environment }
    let outHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    let errHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    process.standardOutput = outHandle
    process.standardError = errHandle
    var inHandle: FileHandle?
    if let stdin {
        guard fm.createFile(atPath: inPath, contents: stdin) else {
            throw KnitTestingError("cannot create stdin file under \(scratchDirectory)")
        }
        inHandle = try FileHandle(forReadingFrom: URL(fileURLWithPath: inPath))
        process.standardInput = inHandle
    } else {
        process.standardInput = FileHandle.nullDevice
    }
    do {
        try process.run()
    } catch {
        throw KnitTestingError("cannot start \(executable): \(error)")
    }
    process.waitUntilExit()
    try? outHandle.close()
    try? errHandle.close()
    try? inHandle?.close()
    let out = (try? Data(contentsOf: URL(fileURLWithPath: outPath))) ?? Data()
    let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    var status = process.terminationStatus
    if process.terminationReason == .uncaughtSignal { status = 128 + status }
    return ProcessResult(status: status, stdout: out, stderr: err)
}

/// A child process that keeps running in the background (a slow upload, a server), stopped by
/// its pid. stdout and stderr go to files next to each other so they can be read afterwards.
public final class BackgroundProcess: @unchecked Sendable {
    // @unchecked: `process` is only mutated in init; Process itself is thread-safe for the
    // isRunning / processIdentifier / terminationStatus reads done here.
    private let process: Process
    public let stdoutPath: String
    public let stderrPath: String
    public let pid: Int32

    public init(
        _ executable: String,
        _ arguments: [String],
        cwd: String? = nil,
        environment: [String: String]? = nil,
        stdinPath: String? = nil,
        stdoutPath: String,
        stderrPath: String
    ) throws {
        let fm = FileManager.default
        if !fm.fileExists(atPath: stdoutPath) { _ = fm.createFile(atPath: stdoutPath, contents: nil) }
        if !fm.fileExists(atPath: stderrPath) { _ = fm.createFile(atPath: stderrPath, contents: nil) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        if let environment { process.environment = environment }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath))
        try out.seekToEnd()
        let err: FileHandle
        if stderrPath == stdoutPath {
            err = out
        } else {
            err = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
            try err.seekToEnd()
        }
        process.standardOutput = out
        process.standardError = err
        if let stdinPath {
            process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: stdinPath))
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        do {
            try process.run()
        } catch {
            throw KnitTestingError("cannot start \(executable): \(error)")
        }
        // The child holds its own copies of the descriptors.
        try? out.close()
        if stderrPath != stdoutPath { try? err.close() }
        self.process = process
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
        self.pid = process.processIdentifier
    }

    public var isRunning: Bool { process.isRunning }

    /// Exit status (128+signal when killed), or nil while it still runs.
    public var exitStatus: Int32? {
        if process.isRunning { return nil }
        let status = process.terminationStatus
        return process.terminationReason == .uncaughtSignal ? 128 + status : status
    }

    public func signal(_ sig: Int32) {
        if process.isRunning { _ = kill(pid, sig) }
    }

    /// Waits up to `timeout` seconds; true when the process has exited.
    @discardableResult
    public func wait(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() >= deadline { return false }
            usleep(20_000)
        }
        return true
    }

    /// SIGTERM (or `sig`), wait, then SIGKILL if it did not go.
    public func stop(signal sig: Int32 = SIGTERM, grace: Double = 10) {
        guard process.isRunning else { return }
        _ = kill(pid, sig)
        if !wait(timeout: grace) {
            _ = kill(pid, SIGKILL)
            wait(timeout: 5)
        }
    }

    public var stdoutText: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    public var stderrText: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    deinit {
        if process.isRunning {
            _ = kill(pid, SIGKILL)
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
