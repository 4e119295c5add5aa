import KnitClient
import KnitSystem

#if canImport(Glibc)
    import Glibc
#endif

/// stdout for JSON and data, stderr for everything else; raw `write(2)` because C's `stdout`/`stderr`
/// globals are not concurrency-safe in Swift 6 and buffering would interleave with the progress bar.
enum Console {
    static func output(_ text: String) { writeAll(1, Array(text.utf8)) }

    static func error(_ text: String) { writeAll(2, Array((text + "\n").utf8)) }

    static var stderrIsTerminal: Bool { isatty(2) == 1 }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { try? writeAll(fd, $0) }
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw KnitClientError(.io, "write to fd \(fd) failed: \(Errno.current)")
            }
            offset += n
        }
    }

    /// Local time's offset from UTC in minutes, for `--since` without an offset.
    static func localOffsetMinutes() -> Int {
        var now = time(nil)
        var parts = tm()
        guard localtime_r(&now, &parts) != nil else { return 0 }
        return parts.tm_gmtoff / 60
    }
}

/// `label  12.3 MiB / 45.6 MiB  78.9 MiB/s` on one stderr line, redrawn at most 10 times a second,
/// and only when stderr is a terminal.
final class ProgressBar {
    private let label: String
    private let start = ProgressBar.now()
    private var lastDraw = 0.0
    private var drawn = false

    init(label: String) { self.label = label }

    /// A progress callback, or nil when stderr is not a terminal.
    static func make(_ label: String) -> ProgressBar? { Console.stderrIsTerminal ? ProgressBar(label: label) : nil }

    func update(_ progress: TransferProgress) {
        let now = Self.now()
        guard now - lastDraw >= 0.1 else { return }
        lastDraw = now
        draw(progress, elapsed: now - start)
    }

    func finish(_ progress: TransferProgress? = nil) {
        if let progress { draw(progress, elapsed: Self.now() - start) }
        if drawn { Console.writeAll(2, Array("\n".utf8)) }
    }

    private func draw(_ progress: TransferProgress, elapsed: Double) {
        var line = "\r\u{1B}[K" + label + "  " + Self.mebibytes(progress.bytes)
        if let total = progress.total, total > 0 { line += " / " + Self.mebibytes(total) }
        if elapsed > 0 { line += "  " + Self.decimal(Double(progress.bytes) / 1_048_576 / elapsed) + " MiB/s" }
        Console.writeAll(2, Array(line.utf8))
        drawn = true
    }

    static func mebibytes(_ bytes: Int64) -> String { decimal(Double(bytes) / 1_048_576) + " MiB" }

    /// One decimal place without `String(format:)`, which would pull in Foundation.
    static func decimal(_ value: Double) -> String {
        let tenths = Int64((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    static func now() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
}
