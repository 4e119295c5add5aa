internal import Glibc

// Two ways to run a command to completion on top of ``Subprocess``: a filter fed bytes on stdin (blocking),
// and a command whose output lands in files, awaited without blocking a thread.

/// What ``runFilter(_:environment:input:captureOutput:stderr:)`` saw.
public struct FilterResult: Sendable {
    public var status: ExitStatus
    /// The child's stdout, when captured.
    public var output: [UInt8]
    /// Why the input could not all be written (the child stopped reading), if so.
    public var inputError: SystemError?
}

/// Runs `argv` with `input` on stdin until it ends. Its stdout is captured (`captureOutput`) or ours. stdin is
/// written from a second thread, so that neither pipe can fill up and stall the other. The caller decides
/// whether SIGPIPE is ignored (knitd and knit do) when the child stops reading early.
public func runFilter(
    _ argv: [String],
    environment: [String]? = nil,
    input: [UInt8],
    captureOutput: Bool = true,
    stderr: StandardStream = .null
) throws(SystemError) -> FilterResult {
    let stdinPipe = try makePipe()
    var stdoutPipe: (read: Int32, write: Int32)?
    if captureOutput {
        do { stdoutPipe = try makePipe() } catch {
            close(stdinPipe.read)
            close(stdinPipe.write)
            throw error
        }
    }
    let child: Subprocess
    do {
        child = try Subprocess.spawn(
            argv,
            environment: environment,
            stdin: .descriptor(stdinPipe.read),
            stdout: stdoutPipe.map { .descriptor($0.write) } ?? .inherit,
            stderr: stderr
        )
    } catch {
        for fd in [stdinPipe.read, stdinPipe.write, stdoutPipe?.read ?? -1, stdoutPipe?.write ?? -1] where fd >= 0 {
            close(fd)
        }
        throw error
    }
    close(stdinPipe.read)
    if let stdoutPipe { close(stdoutPipe.write) }
    let writer = PipeWriter(fd: stdinPipe.write, bytes: input, shown: argv[0])
    var thread = pthread_t()
    let started = pthread_create(
        &thread,
        nil,
        { raw in
            Unmanaged<PipeWriter>.fromOpaque(raw!).takeUnretainedValue().run()
            return nil
        },
        Unmanaged.passUnretained(writer).toOpaque()
    )
    if started != 0 { writer.run() }
    var output: [UInt8] = []
    if let stdoutPipe {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(stdoutPipe.read, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            output.append(contentsOf: buffer[0..<count])
        }
        close(stdoutPipe.read)
    }
    if started == 0 { pthread_join(thread, nil) }
    let status = try child.wait()
    return withExtendedLifetime(writer) { FilterResult(status: status, output: output, inputError: writer.failure) }
}

/// A pipe whose ends are closed on exec, so a child spawned meanwhile by another thread does not inherit them
/// (the dup2 onto a child's stdin or stdout survives).
private func makePipe() throws(SystemError) -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else { throw SystemError("create a pipe") }
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return (fds[0], fds[1])
}

/// Writes a buffer to a pipe and closes it; run by one thread, read after that thread is joined.
private final class PipeWriter: @unchecked Sendable {
    let fd: Int32
    let bytes: [UInt8]
    let shown: String
    var failure: SystemError?

    init(fd: Int32, bytes: [UInt8], shown: String) {
        self.fd = fd
        self.bytes = bytes
        self.shown = shown
    }

    func run() {
        var offset = 0
        bytes.withUnsafeBytes { raw in
            while offset < raw.count {
                let written = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 {
                    failure = SystemError("write to \(shown)")
                    break
                }
                offset += written
            }
        }
        close(fd)
    }
}

/// What a finished command left behind.
public struct CommandOutput: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// Where a command's stdout and stderr go.
public enum ChildOutput: Sendable {
    /// Each into its own unlinked temporary file, returned as text (capped at `outputLimit`).
    case capture
    /// Both into one descriptor the caller owns (e.g. a Run's log file).
    case descriptor(Int32)
}

/// Why ``runCommand(_:environment:directory:output:timeout:)`` has no output to give.
public enum CommandError: Error, Sendable {
    /// The command could not be started or reaped, or its output files could not be made.
    case failed(String)
    /// The timeout passed or the task was cancelled; the child was killed.
    case timedOut(String)
}

/// The longest output kept from one command; podman's answers are a few KiB.
private let outputLimit = 4 << 20

/// Runs `argv[0]` in `directory` to completion without blocking a thread: the child is reaped by polling
/// `waitpid(WNOHANG)` between short sleeps, and killed (SIGKILL) when `timeout` passes or the task is
/// cancelled. stdin is /dev/null. Output goes to files, never pipes, so a chatty child cannot stall on a full
/// pipe.
public func runCommand(
    _ argv: [String],
    environment: [String],
    directory: String,
    output: ChildOutput = .capture,
    timeout: Duration
) async throws(CommandError) -> CommandOutput {
    precondition(!argv.isEmpty, "runCommand needs a program")
    var outFD: Int32 = -1
    var errFD: Int32 = -1
    defer {
        if outFD >= 0 { close(outFD) }
        if errFD >= 0 { close(errFD) }
    }
    let targetOut: Int32
    let targetErr: Int32
    switch output {
    case .capture:
        outFD = try anonymousFile()
        errFD = try anonymousFile()
        targetOut = outFD
        targetErr = errFD
    case .descriptor(let fd):
        targetOut = fd
        targetErr = fd
    }

    let child: Subprocess
    do {
        child = try Subprocess.spawn(
            argv,
            environment: environment,
            directory: directory,
            stdout: .descriptor(targetOut),
            stderr: .descriptor(targetErr)
        )
    } catch {
        throw .failed("cannot start \(argv[0]): \(error.errno)")
    }
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    var pause = Duration.milliseconds(1)
    var status: ExitStatus
    while true {
        do {
            if let ended = try child.poll() {
                status = ended
                break
            }
        } catch {
            throw .failed("\(argv[0]): waitpid failed: \(error.errno)")
        }
        if clock.now >= deadline || Task.isCancelled {
            child.kill(SIGKILL)
            _ = try? child.wait()
            let verb = Task.isCancelled ? "was cancelled" : "did not finish within \(timeout)"
            throw .timedOut("\(commandLine(argv)) \(verb) and was killed")
        }
        try? await Task.sleep(for: pause)
        // Most podman calls take 20–300 ms: poll finely at first, then settle at 10 ms.
        pause = min(pause * 2, .milliseconds(10))
    }
    return CommandOutput(
        status: status.code,
        stdout: outFD >= 0 ? readAll(outFD) : "",
        stderr: errFD >= 0 ? readAll(errFD) : ""
    )
}

/// A read-write file with no name, closed on exec (only the dup2 in the child survives), so nothing needs
/// deleting. (mkostemp is not visible to Swift; a spawn racing between mkstemp and fcntl may inherit the
/// descriptor, which costs nothing: the child never reads it.)
private func anonymousFile() throws(CommandError) -> Int32 {
    var template = Array("/tmp/knit-executor-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else {
        throw .failed("cannot create a temporary file in /tmp: \(Errno.current)")
    }
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    return fd
}

/// Reads a whole (small) file from `offset` on, at most `outputLimit` bytes.
public func readAll(_ fd: Int32, from offset: Int = 0) -> String {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    var position = offset
    while bytes.count < outputLimit {
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(position)) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        bytes.append(contentsOf: buffer[0..<count])
        position += count
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Reads a small text file by path (cgroup and proc files), or nil when it cannot be opened.
public func readTextFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    // proc and cgroup files report size 0 and do not support pread offsets reliably: read().
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while bytes.count < 1 << 20 {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        bytes.append(contentsOf: buffer[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The command as a human would type it, for error messages.
public func commandLine(_ argv: [String]) -> String {
    argv.map { $0.contains(" ") || $0.isEmpty ? "'\($0)'" : $0 }.joined(separator: " ")
}
