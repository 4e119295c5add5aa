import KnitAPI
import KnitSystem
import KnitTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Upload throughput through the in-process API (body reader → prefetcher → extraction → fsync → publish), to
/// compare extraction changes. Off by default: `KNIT_UPLOAD_BENCH=/path/to/archive.tar swift test --filter
/// UploadThroughput` (e.g. a tar of 1 GiB of random bytes).
@Suite(.serialized, .enabled(if: getenv("KNIT_UPLOAD_BENCH") != nil))
struct UploadThroughputTests {
    @Test func uploadThroughput() throws {
        let path = String(cString: getenv("KNIT_UPLOAD_BENCH")!)
        for round in 1...2 {
            let harness = try APIHarness()
            let fd = open(path, O_RDONLY)
            try #require(fd >= 0)
            defer { close(fd) }
            let request = APIRequest(
                method: "POST",
                uri: "/api/data/",
                headers: ["authorization": "Bearer \(harness.tokens["alice"]!)"]
            )!
            var total = 0
            let start = ContinuousClock.now
            let response = harness.api.handle(request) { buffer in
                let count = read(fd, buffer.baseAddress, buffer.count)
                total += max(count, 0)
                return count
            }
            let elapsed = ContinuousClock.now - start
            #expect(response.status == 200)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let rate = Int(Double(total) / 1e6 / seconds)
            print("upload bench round \(round): \(total) bytes in \(seconds) s = \(rate) MB/s")
        }
    }
}
