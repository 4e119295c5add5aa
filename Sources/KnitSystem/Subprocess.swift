public import Glibc

/// Where one standard stream of a child goes.
public enum StandardStream: Sendable {
    /// `/dev/null`.
    case null
    /// The same descriptor as ours.
    case inherit
    /// A descriptor the caller owns, duplicated onto the stream.
    case descriptor(Int32)
    /// A file opened by path: read-only for stdin; created (0644) and appended to for stdout and stderr.
    case file(String)
    /// stderr only: wherever stdout goes.
    case standardOutput
}

/// How a child ended: its exit code, or 128 + the signal that killed it, as a shell reports it.
public struct ExitStatus: Sendable, Equatable, CustomStringConvertible {
    public var code: Int32

    public init(code: Int32) { self.code = code }

    /// Decodes a `waitpid` status.
    public init(waitStatus status: Int32) {
        let signal = status & 0x7f
        code = signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    public var isSuccess: Bool { code == 0 }
    public var description: String { "\(code)" }
}

/// A started child process, known by its pid. Whoever spawns it reaps it (``wait()`` or ``poll()``).
///
/// Started with `posix_spawn`, an explicitly empty signal mask and default dispositions, because the mask is
/// inherited across exec: a caller thread that blocks SIGTERM (Swift Testing's threads and knitd's workers
/// do) would otherwise hand the child a SIGTERM it can never receive. Not Foundation's `Process`, for the
/// same reason.
public struct Subprocess: Sendable {
    public let pid: pid_t

    /// Starts `argv[0]` (a path; PATH is not searched, see ``findExecutable(_:onPath:)``) with `argv`.
    /// - Parameters:
    ///   - environment: `NAME=value` entries; nil keeps ours.
    ///   - directory: the child's working directory; nil keeps ours.
    public static func spawn(
        _ argv: [String],
        environment: [String]? = nil,
        directory: String? = nil,
        stdin: StandardStream = .null,
        stdout: StandardStream = .inherit,
        stderr: StandardStream = .inherit
    ) throws(SystemError) -> Subprocess {
        precondition(!argv.isEmpty, "spawn needs a program")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        switch stdin {
        case .null, .standardOutput: posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        case .inherit: break
        case .descriptor(let fd): posix_spawn_file_actions_adddup2(&actions, fd, 0)
        case .file(let path): posix_spawn_file_actions_addopen(&actions, 0, path, O_RDONLY, 0)
        }
        for (target, stream) in [(Int32(1), stdout), (2, stderr)] {
            switch stream {
            case .null: posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_WRONLY, 0)
            case .inherit: break
            case .descriptor(let fd): posix_spawn_file_actions_adddup2(&actions, fd, target)
            case .file(let path):
                posix_spawn_file_actions_addopen(&actions, target, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            case .standardOutput: if target == 2 { posix_spawn_file_actions_adddup2(&actions, 1, 2) }
            }
        }
        var program = argv[0]
        var arguments = argv
        if let directory {
            if let addChdir = addChdirAction {
                _ = directory.withCString { addChdir(&actions, $0) }
            } else {
                // A libc without the action: a shell changes directory, then execs (the mask stays reset).
                program = "/bin/sh"
                arguments = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", directory] + argv
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

        let cArguments = arguments.map { strdup($0) } + [nil]
        let cEnvironment = environment.map { $0.map { strdup($0) } + [nil] }
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment ?? [] { free(pointer) }
        }
        var pid: pid_t = 0
        let rc =
            if let cEnvironment {
                posix_spawn(&pid, program, &actions, &attributes, cArguments, cEnvironment)
            } else {
                posix_spawn(&pid, program, &actions, &attributes, cArguments, environ)
            }
        guard rc == 0 else { throw SystemError("cannot start \(argv[0])", Errno(rc)) }
        return Subprocess(pid: pid)
    }

    /// Reaps the child if it has ended; nil while it runs. Never blocks (`waitpid(WNOHANG)`).
    public func poll() throws(SystemError) -> ExitStatus? {
        var status: Int32 = 0
        while true {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid { return ExitStatus(waitStatus: status) }
            if reaped == 0 { return nil }
            if errno != EINTR { throw SystemError("waitpid \(pid)") }
        }
    }

    /// Blocks until the child ends and reaps it.
    public func wait() throws(SystemError) -> ExitStatus {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw SystemError("waitpid \(pid)") }
        }
        return ExitStatus(waitStatus: status)
    }

    /// Sends `signal`; the child still has to be reaped.
    public func kill(_ signal: Int32 = SIGKILL) { _ = Glibc.kill(pid, signal) }
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

/// The first executable `name` in the directories of `searchPath` (default: `$PATH`, or `/usr/bin:/bin`
/// without one), or nil.
public func findExecutable(_ name: String, onPath searchPath: String? = nil) -> String? {
    let path = searchPath ?? getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") where !directory.isEmpty {
        let candidate = "\(directory)/\(name)"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}
