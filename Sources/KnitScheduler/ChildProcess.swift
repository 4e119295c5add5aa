internal import Glibc

/// What a finished runtime command left behind.
struct CommandOutput: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Where a child's stdout and stderr go.
enum ChildOutput {
    /// Each into its own unlinked temporary file, returned as text (capped at `outputLimit`).
    case capture
    /// Both into one descriptor the caller owns (e.g. a Run's log file).
    case descriptor(Int32)
}

/// The longest output kept from one command; podman's answers are a few KiB.
private let outputLimit = 4 << 20

/// Runs `argv[0]` in `directory` to completion without blocking a thread: the child is reaped by polling
/// `waitpid(WNOHANG)` between short sleeps, and killed (SIGKILL) when `timeout` passes or the
/// task is cancelled.
///
/// Spawned with posix_spawn and an explicitly empty signal mask plus default dispositions,
/// because the mask is inherited across exec: a caller thread that blocks SIGTERM (Swift
/// Testing's do) would otherwise hand a podman that cannot be stopped. Output goes to files,
/// never pipes, so a chatty child cannot stall on a full pipe.
func runChild(
    _ argv: [String],
    environment: [String],
    directory: String,
    output: ChildOutput = .capture,
    timeout: Duration
) async throws -> CommandOutput {
    precondition(!argv.isEmpty, "runChild needs a program")
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

    let pid = try spawn(argv, environment: environment, directory: directory, stdout: targetOut, stderr: targetErr)
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    var pause = Duration.milliseconds(1)
    var status: Int32 = 0
    while true {
        let reaped = waitpid(pid, &status, WNOHANG)
        if reaped == pid { break }
        if reaped < 0 && errno != EINTR {
            throw ExecutorError(.commandFailed, "\(argv[0]): waitpid failed: \(errnoText(errno))")
        }
        if clock.now >= deadline || Task.isCancelled {
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let verb = Task.isCancelled ? "was cancelled" : "did not finish within \(timeout)"
            throw ExecutorError(.timedOut, "\(commandLine(argv)) \(verb) and was killed")
        }
        try? await Task.sleep(for: pause)
        // Most podman calls take 20–300 ms: poll finely at first, then settle at 10 ms.
        pause = min(pause * 2, .milliseconds(10))
    }
    let signal = status & 0x7f
    let code = signal == 0 ? (status >> 8) & 0xff : 128 + signal
    return CommandOutput(
        status: code,
        stdout: outFD >= 0 ? readAll(outFD) : "",
        stderr: errFD >= 0 ? readAll(errFD) : ""
    )
}

private func spawn(
    _ argv: [String],
    environment: [String],
    directory: String,
    stdout: Int32,
    stderr: Int32
) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }

    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, stdout, 1)
    posix_spawn_file_actions_adddup2(&actions, stderr, 2)
    var program = argv[0]
    var arguments = argv
    if let addChdir = addChdirAction {
        _ = directory.withCString { addChdir(&actions, $0) }
    } else {
        // A libc without the action: a shell changes directory, then execs (mask stays reset).
        program = "/bin/sh"
        arguments = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", directory] + argv
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

    let cArguments = arguments.map { strdup($0) } + [nil]
    let cEnvironment = environment.map { strdup($0) } + [nil]
    defer {
        for pointer in cArguments { free(pointer) }
        for pointer in cEnvironment { free(pointer) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, program, &actions, &attributes, cArguments, cEnvironment)
    guard rc == 0 else {
        throw ExecutorError(.commandFailed, "cannot start \(argv[0]): \(errnoText(rc))")
    }
    return pid
}

/// glibc's posix_spawn_file_actions_addchdir_np (2.29+), which the Glibc module does not import.
private let addChdirAction:
    (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np")
        else { return nil }
        return unsafeBitCast(
            symbol,
            to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32)
                .self
        )
    }()

/// A read-write file with no name, closed on exec (only the dup2 in the child survives), so
/// nothing needs deleting. (mkostemp is not visible to Swift; a spawn racing between mkstemp
/// and fcntl may inherit the descriptor, which costs nothing: podman never reads it.)
private func anonymousFile() throws -> Int32 {
    var template = Array("/tmp/knit-executor-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else {
        throw ExecutorError(.commandFailed, "cannot create a temporary file in /tmp: \(errnoText(errno))")
    }
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    return fd
}

/// Reads a whole (small) file from its start.
func readAll(_ fd: Int32, from offset: Int = 0) -> String {
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
func readTextFile(_ path: String) -> String? {
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

func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// The command as a human would type it, for error messages.
func commandLine(_ argv: [String]) -> String {
    argv.map { $0.contains(" ") || $0.isEmpty ? "'\($0)'" : $0 }.joined(separator: " ")
}
