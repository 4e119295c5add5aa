import Glibc
import KnitSystem
import KnitTestSupport
import Testing

/// The built `knit-scheduler` binary, run as a user runs it: a fresh store home, the given flags, its log in a
/// file the test reads.
final class SchedulerProcess {
    static var binary: String {
        let directory = getenv("KNIT_BIN_DIR").map { String(cString: $0) } ?? repositoryRoot + "/.build/debug"
        return directory + "/knit-scheduler"
    }

    let home: String
    let logPath: String
    private let process: Subprocess
    private var ended: KnitSystem.ExitStatus?

    init(_ arguments: [String], home: String? = nil) throws {
        self.home = home ?? scratchDirectory("knit-scheduler-home-")
        logPath = self.home + ".log"
        process = try Subprocess.spawn(
            [Self.binary, "--home", self.home] + arguments,
            stdout: .file(logPath),
            stderr: .standardOutput
        )
    }

    deinit {
        if ended == nil {
            process.kill()
            _ = try? process.wait()
        }
        try? removeTree(home)
        unlink(logPath)
    }

    var log: String { readText(logPath) ?? "" }

    /// Waits until the log holds `text`; false when the process ended or `within` passed first.
    func waitForLog(_ text: String, within: Duration = .seconds(60)) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: within)
        while clock.now < deadline {
            if log.contains(text) { return true }
            if ended == nil, let status = try? process.poll() { ended = status }
            if ended != nil { return log.contains(text) }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// Waits for the process to end by itself (a refused start), killing it after `within`.
    func waitForExit(within: Duration = .seconds(60)) async throws -> KnitSystem.ExitStatus {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: within)
        while ended == nil, clock.now < deadline {
            ended = try process.poll()
            if ended == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        if let ended { return ended }
        process.kill()
        let status = try process.wait()
        ended = status
        Issue.record("knit-scheduler did not exit within \(within); log:\n\(log)")
        return status
    }

    /// SIGTERM, as systemd stops it, and the exit status.
    func stop() async throws -> KnitSystem.ExitStatus {
        if let ended { return ended }
        process.kill(SIGTERM)
        return try await waitForExit(within: .seconds(60))
    }
}
