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

/// Everything a walk saw: each header, and the data of the entries `wanted` selected.
private func walk(
    _ reader: consuming ArchiveEntryReader,
    reading wanted: (ArchiveEntryHeader) -> Bool = { _ in false },
    limit: Int = 1 << 20
) throws -> (headers: [ArchiveEntryHeader], data: [String: [UInt8]]) {
    var headers: [ArchiveEntryHeader] = []
    var data: [String: [UInt8]] = [:]
    while let header = try reader.next() {
        headers.append(header)
        if wanted(header) { data[header.name] = try reader.readData(limit: limit) }
    }
    return (headers, data)
}

/// A reader over `bytes`, handed over in `chunk`-sized pieces as a pipe would.
private func memoryReader(_ bytes: [UInt8], chunk: Int = 10_000) throws -> ArchiveEntryReader {
    var offset = 0
    return try ArchiveEntryReader { buffer in
        let count = min(chunk, buffer.count, bytes.count - offset)
        bytes.withUnsafeBytes { source in
            buffer.baseAddress!.copyMemory(from: source.baseAddress! + offset, byteCount: count)
        }
        offset += count
        return count
    }
}

/// This process's resident-set high-water mark in KiB.
func peakResidentKiB() -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
    }
    return 0
}

/// Resets the high-water mark to the current RSS (Linux ≥ 4.0); false when the kernel refuses.
func resetPeakResident() -> Bool {
    let fd = open("/proc/self/clear_refs", O_WRONLY)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return write(fd, "5", 1) == 1
}

@Suite("ArchiveEntryReader")
struct ArchiveEntriesTests {
    static let entries: [ArchiveBuilder.Entry] = [
        .directory("./layer1"),
        .file("./layer1/layer.tar", randomBytes(300_000)),
        .file("config.json", Array(#"{"os":"linux"}"#.utf8)),
        .symlink("layer2", target: "layer1"),
        .hardlink("copy.json", target: "config.json"),
        .fifo("pipe"),
        .file("manifest.json", Array("[]".utf8)),
    ]

    @Test("lists names, kinds and sizes and reads only the entries asked for", arguments: ArchiveFormat.allCases)
    func walksEntries(format: ArchiveFormat) throws {
        let bytes = try ArchiveBuilder(format: format, entries: Self.entries).build()
        let (headers, data) = try walk(try memoryReader(bytes)) { $0.name.hasSuffix(".json") && $0.kind == .file }
        #expect(
            headers.map(\.name) == [
                "layer1", "layer1/layer.tar", "config.json", "layer2", "copy.json", "pipe", "manifest.json",
            ]
        )
        #expect(headers.map(\.kind) == [.directory, .file, .file, .symlink, .hardlink, .other, .file])
        #expect(headers[1].size == 300_000)
        #expect(data == ["config.json": Array(#"{"os":"linux"}"#.utf8), "manifest.json": Array("[]".utf8)])
    }

    @Test("reads from a file descriptor, skipping what is not read")
    func fileDescriptor() throws {
        let directory = try TempDir()
        let path = directory.sub("image.tar.gz")
        let layer = randomBytes(2_000_000)
        let bytes = try ArchiveBuilder(
            format: .tarGzip,
            entries: [.file("big/layer.tar", layer), .file("manifest.json", Array("{}".utf8))]
        ).build()
        try writeFile(path, bytes)
        let fd = open(path, O_RDONLY)
        #expect(fd >= 0)
        defer { close(fd) }
        let (headers, data) = try walk(
            try ArchiveEntryReader(fileDescriptor: fd),
            reading: { _ in true },
            limit: 4 << 20
        )
        #expect(headers.map(\.name) == ["big/layer.tar", "manifest.json"])
        #expect(data["big/layer.tar"] == layer)
        #expect(data["manifest.json"] == Array("{}".utf8))
    }

    @Test("an entry above the limit is refused unread and the walk goes on")
    func limit() throws {
        let bytes = try ArchiveBuilder(entries: [.file("big", randomBytes(100_000)), .file("small", [1, 2, 3])]).build()
        var reader = try memoryReader(bytes)
        let big = try #require(try reader.next())
        let error = #expect(throws: ArchiveError.self) { try reader.readData(limit: 99_999) }
        #expect(error?.code == .tooLarge)
        #expect(error?.path == big.name)
        let small = try #require(try reader.next())
        #expect(small.name == "small")
        #expect(try reader.readData(limit: 3) == [1, 2, 3])
        #expect(try reader.next() == nil)
        #expect(try reader.next() == nil)
    }

    @Test("garbage and empty input are corrupt, not an empty archive")
    func garbage() throws {
        let garbage = Array("this is not a docker save archive\n".utf8) + randomBytes(5000)
        let error = #expect(throws: ArchiveError.self) { _ = try walk(try memoryReader(garbage)) }
        #expect(error?.code == .corrupt)
        let empty = #expect(throws: ArchiveError.self) { _ = try walk(try memoryReader([])) }
        #expect(empty?.code == .corrupt)
    }

    @Test("a tar cut inside an entry's data fails when that data is read or skipped")
    func truncated() throws {
        let bytes = try ArchiveBuilder(entries: [.file("a", randomBytes(50_000)), .file("b", [1])]).build()
        let cut = Array(bytes.prefix(20_000))
        let reading = #expect(throws: ArchiveError.self) { _ = try walk(try memoryReader(cut)) { _ in true } }
        #expect(reading?.code == .corrupt)
        let skipping = #expect(throws: ArchiveError.self) { _ = try walk(try memoryReader(cut)) }
        #expect(skipping?.code == .corrupt)
    }

    @Test("the read closure's error comes back as readFailed")
    func readFailure() throws {
        struct Gone: Error {}
        let bytes = try ArchiveBuilder(entries: [.file("a", randomBytes(600_000)), .file("b", [1])]).build()
        var offset = 0
        let read: (UnsafeMutableRawBufferPointer) throws -> Int = { buffer in
            if offset > 100_000 { throw Gone() }
            let count = min(buffer.count, bytes.count - offset)
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: count) }
            offset += count
            return count
        }
        let error = #expect(throws: ArchiveError.self) { _ = try walk(try ArchiveEntryReader(read: read)) }
        #expect(error?.code == .readFailed)
        #expect(error?.underlying is Gone)
    }

    /// Knitfab's template command held whole image archives in memory (knitfab#194). A 200 MB layer streamed
    /// through a pipe-like closure (so nothing can be seeked over) must not raise the peak RSS by more than a
    /// generous 64 MiB; other tests running in parallel in this process share the measurement, hence the slack.
    @Test("a 200 MB layer streams through in bounded memory", arguments: ["tar", "tar.gz"])
    func boundedMemory(kind: String) throws {
        let directory = try TempDir()
        let path = directory.sub("big.\(kind)")
        let script = """
            import io, sys, tarfile
            class Zeros(io.RawIOBase):
                def __init__(self, n): self.left = n
                def readable(self): return True
                def readinto(self, b):
                    n = min(len(b), self.left); b[:n] = bytes(n); self.left -= n; return n
            if sys.argv[2] == "tar.gz":
                t = tarfile.open(sys.argv[1], "w:gz", compresslevel=1)
            else:
                t = tarfile.open(sys.argv[1], "w")
            with t:
                size = 200 * 1024 * 1024
                info = tarfile.TarInfo("0123abcd/layer.tar"); info.size = size
                t.addfile(info, io.BufferedReader(Zeros(size)))
                data = b'{"os":"linux","rootfs":{"type":"layers"}}'
                info = tarfile.TarInfo("cfg.json"); info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            """
        try writeFile(directory.sub("gen.py"), Array(script.utf8))
        let status = run(["/usr/bin/env", "python3", directory.sub("gen.py"), path, kind])
        try #require(status == 0, "python3 could not write the test archive")

        let fd = open(path, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        let canReset = resetPeakResident()
        let before = peakResidentKiB()
        var total = 0
        let reader = try ArchiveEntryReader { buffer in
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n < 0 { throw TestFailure("read failed") }
            total += n
            return n
        }
        let (headers, data) = try walk(reader) { $0.name.hasSuffix(".json") }
        let grown = peakResidentKiB() - before
        print("boundedMemory \(kind): read \(total) bytes, peak RSS +\(grown) KiB (reset: \(canReset))")
        #expect(headers.map(\.size) == [200 << 20, 41])
        #expect(data["cfg.json"]?.count == 41)
        // Every byte went through the reader: nothing was seeked over.
        #expect(kind == "tar.gz" || total > 200 << 20)
        if canReset {
            #expect(grown < 64 * 1024, "peak RSS grew by \(grown) KiB while streaming a 200 MB layer")
        }
    }
}
