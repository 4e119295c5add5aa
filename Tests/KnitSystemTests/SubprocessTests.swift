import Glibc
import KnitSystem
import Testing

@Suite("Subprocess, runFilter, runCommand and findExecutable")
struct SubprocessTests {
    @Test("a child spawned from a thread that blocks SIGTERM can still be stopped with SIGTERM")
    func childGetsAnEmptySignalMask() throws {
        // Block SIGTERM on this thread, as knitd's workers and Swift Testing's threads do.
        var blocked = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, SIGTERM)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        let child = try Subprocess.spawn(["/bin/sleep", "30"], stdout: .null, stderr: .null)
        child.kill(SIGTERM)
        #expect(try child.wait() == ExitStatus(code: 128 + SIGTERM))
    }

    @Test("stdin from a file, stdout and stderr appended to files, in a given directory with a given environment")
    func streamsDirectoryAndEnvironment() throws {
        let scratch = try TemporaryDirectory(prefix: "knit-system-test-")
        let input = scratch.path + "/in"
        let output = scratch.path + "/out"
        #expect(try runFilter(["/bin/sh", "-c", "cat > \(input)"], input: Array("from stdin\n".utf8)).status.isSuccess)
        let child = try Subprocess.spawn(
            ["/bin/sh", "-c", "cat; pwd; echo \"$GREETING\"; echo oops >&2; exit 3"],
            environment: ["GREETING=hello"],
            directory: scratch.path,
            stdin: .file(input),
            stdout: .file(output),
            stderr: .standardOutput
        )
        #expect(try child.wait().code == 3)
        let text = String(decoding: try readBytes(output), as: UTF8.self)
        #expect(text == "from stdin\n\(scratch.path)\nhello\noops\n")
    }

    @Test("runFilter feeds more than a pipe holds while reading the output, so neither side stalls")
    func filterDoesNotDeadlock() throws {
        let input = [UInt8](repeating: 0x78, count: 4 << 20)
        let result = try runFilter(["/bin/cat"], input: input)
        #expect(result.status.isSuccess)
        #expect(result.output == input)
        #expect(result.inputError == nil)
    }

    @Test("a program that cannot start is an error naming it; a failing one is its exit status")
    func startFailureAndExitStatus() throws {
        let error = #expect(throws: SystemError.self) { try Subprocess.spawn(["/nonexistent/program"]) }
        #expect(error?.errno == .noSuchFile)
        #expect(error?.description == "cannot start /nonexistent/program: No such file or directory")
        #expect(try runFilter(["/bin/sh", "-c", "exit 7"], input: []).status.code == 7)
    }

    @Test("runCommand kills a command at its timeout and says so")
    func commandTimeout() async throws {
        let started = ContinuousClock.now
        await #expect {
            try await runCommand(["/bin/sleep", "120"], environment: [], directory: "/", timeout: .milliseconds(200))
        } throws: { error in
            guard case CommandError.timedOut(let message) = error else { return false }
            return message == "/bin/sleep 120 did not finish within 0.2 seconds and was killed"
        }
        // Killed, not waited for: well before the command would have ended (generous for a loaded machine).
        #expect(ContinuousClock.now - started < .seconds(60))
    }

    @Test("runCommand captures stdout and stderr separately, with the exit status")
    func commandCapture() async throws {
        let output = try await runCommand(
            ["/bin/sh", "-c", "echo out; echo err >&2; exit 4"],
            environment: [],
            directory: "/",
            timeout: .seconds(30)
        )
        #expect(output.status == 4 && output.stdout == "out\n" && output.stderr == "err\n")
    }

    @Test("findExecutable takes the first executable match on the path and skips non-executables")
    func findExecutableOnPath() throws {
        let first = try TemporaryDirectory(prefix: "knit-system-test-")
        let second = try TemporaryDirectory(prefix: "knit-system-test-")
        try writeBytes(first.path + "/tool", Array("#!/bin/sh\n".utf8), mode: 0o644)
        try writeBytes(second.path + "/tool", Array("#!/bin/sh\n".utf8), mode: 0o755)
        #expect(findExecutable("tool", onPath: "\(first.path)::\(second.path)") == second.path + "/tool")
        #expect(findExecutable("tool", onPath: first.path) == nil)
    }
}

@Suite("Files: removeTree, TemporaryDirectory, isDirectory, trimmed, Errno")
struct FileOperationTests {
    @Test("removeTree removes names that are not UTF-8, and never follows a symlink out of the tree")
    func removeTreeIsByteExact() throws {
        let outside = try TemporaryDirectory(prefix: "knit-system-test-")
        try writeBytes(outside.path + "/keep", [1])
        let root = try makeTemporaryDirectory(prefix: "knit-system-test-")
        #expect(mkdir(root + "/sub", 0o755) == 0)
        // 0xff 0xfe is no UTF-8: a String round trip would turn it into U+FFFD and miss the file.
        let badName: [UInt8] = Array((root + "/sub/").utf8) + [0xff, 0xfe]
        let fd = withCName(badName) { open($0, O_WRONLY | O_CREAT, 0o644) }
        #expect(fd >= 0)
        close(fd)
        #expect(symlink(outside.path, root + "/link") == 0)
        try removeTree(root)
        #expect(!pathExists(root))
        #expect(pathExists(outside.path + "/keep"))
        try removeTree(root)  // absent: no error
    }

    @Test(
        "removeTree removes what it can and then reports the first failure with its path",
        .enabled(if: geteuid() == 0, "mounts a tmpfs, which needs root")
    )
    func removeTreeReportsFailure() throws {
        let root = try makeTemporaryDirectory(prefix: "knit-system-test-")
        defer { try? removeTree(root) }
        #expect(mkdir(root + "/mnt", 0o755) == 0)
        // A mount point cannot be removed (EBUSY), even by root; everything around it can.
        let mount = try Subprocess.spawn(["/bin/mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", root + "/mnt"])
        try #require(try mount.wait().isSuccess)
        defer { _ = try? Subprocess.spawn(["/bin/umount", root + "/mnt"]).wait() }
        try writeBytes(root + "/mnt/inside", [1])
        try writeBytes(root + "/loose", [1])
        let error = #expect(throws: SystemError.self) { try removeTree(root) }
        #expect(error?.operation == "remove directory \(root)/mnt")
        #expect(error?.errno == Errno(EBUSY))
        #expect(!pathExists(root + "/loose") && !pathExists(root + "/mnt/inside"))
    }

    @Test("a TemporaryDirectory is a fresh 0700 directory removed with its content when dropped")
    func temporaryDirectoryLifetime() throws {
        var path = ""
        do {
            let directory = try TemporaryDirectory(prefix: "knit-system-test-")
            path = directory.path
            var info = stat()
            #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o700)
            #expect(isDirectory(path))
            #expect(mkdir(path + "/nested", 0o755) == 0)
            try writeBytes(path + "/nested/file", [1, 2, 3])
        }
        #expect(!pathExists(path))
        #expect(!isDirectory("/etc/hostname"))
    }

    @Test("trimmed removes ASCII blanks only, and only at the ends")
    func trimming() {
        #expect(" \t a b \t".trimmed() == "a b")
        #expect("\r value \r".trimmed() == "\r value \r")
        #expect("\r value \r".trimmed(.spaceTabAndReturn) == "value")
        #expect("\u{00A0}x\u{00A0}".trimmed() == "\u{00A0}x\u{00A0}")
        #expect("a; b"[...].split(separator: ";").map { $0.trimmed() } == ["a", "b"])
    }

    @Test("Errno tells the system's description; SystemError names the operation")
    func errnoDescription() {
        #expect(Errno(ENOENT).description == "No such file or directory")
        #expect(SystemError("open /x", Errno(EACCES)).description == "open /x: Permission denied")
    }
}

func pathExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

func writeBytes(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { throw SystemError("create \(path)") }
    defer { close(fd) }
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    _ = fchmod(fd, mode)
}

func readBytes(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SystemError("open \(path)") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count <= 0 { break }
        bytes += buffer[0..<count]
    }
    return bytes
}
