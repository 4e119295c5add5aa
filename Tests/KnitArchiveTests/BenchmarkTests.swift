import KnitArchive
import KnitSystem
import KnitTestSupport
import Testing

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// Throughput of create and extract for ~200 MB of random data, per format; the numbers in README.md.
/// Off by default (it writes ~1 GB): `KNIT_ARCHIVE_BENCH=1 swift test -c release --filter Benchmark`.
@Suite("benchmark", .serialized, .enabled(if: getenv("KNIT_ARCHIVE_BENCH") != nil))
struct BenchmarkTests {
    private func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = ContinuousClock.now
        try body()
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    private func mbps(_ bytes: Int64, _ seconds: Double) -> String {
        let rate = Double(bytes) / 1e6 / seconds
        return String(Int(rate.rounded()))
    }

    /// On the disk (/tmp) and in memory (/dev/shm, which shows the library's own cost).
    @Test("create + extract ~200 MB of random data", arguments: ["/tmp", "/dev/shm"])
    func throughput(base: String) throws {
        let temp = try TempDir(base: base)
        let source = try temp.mkdir("source")
        for index in 0..<3 { try writeFile(source + "/big\(index).bin", randomBytes(64 << 20)) }
        try temp.mkdir("source/small")
        for index in 0..<200 { try writeFile(source + "/small/f\(index)", randomBytes(40 << 10)) }
        let total = try treeSize(of: source, dereference: false)

        let copyTime = seconds { #expect(system("cp -r \(source) \(temp.sub("cp-copy"))") == 0) }
        print("bench \(base) baseline: cp -r \(mbps(total, copyTime)) MB/s (\(total) bytes)")

        for format in ArchiveFormat.allCases {
            let file = temp.sub("bench." + format.fileExtension)
            let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            try #require(fd >= 0)
            let createTime = try seconds {
                try writeArchive(of: source, format: format) { chunk in
                    var done = 0
                    while done < chunk.count {
                        let n = Glibc.write(fd, chunk.baseAddress! + done, chunk.count - done)
                        if n < 0 { throw TestFailure("write failed") }
                        done += n
                    }
                }
            }
            close(fd)
            var info = stat()
            stat(file, &info)

            let target = try temp.mkdir("out-\(format.rawValue)")
            let input = open(file, O_RDONLY | O_CLOEXEC)
            try #require(input >= 0)
            var summary = ExtractSummary()
            let extractTime = try seconds {
                summary = try extractArchive(into: target) { buffer in
                    let n = Glibc.read(input, buffer.baseAddress, buffer.count)
                    if n < 0 { throw TestFailure("read failed") }
                    return n
                }
            }
            close(input)
            #expect(summary.bytes == total)
            let ddTime = seconds { _ = system("dd if=\(file) of=\(temp.sub("dd.out")) bs=1M status=none") }
            let dd = mbps(Int64(info.st_size), ddTime)
            print(
                "bench \(base) \(format.rawValue): archive \(info.st_size) bytes; "
                    + "create \(mbps(total, createTime)) MB/s, extract \(mbps(total, extractTime)) MB/s, "
                    + "dd of the archive \(dd) MB/s"
            )
            try FileManager.default.removeItem(atPath: target)
            try FileManager.default.removeItem(atPath: file)
        }
    }
}
