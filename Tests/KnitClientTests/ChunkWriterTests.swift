import Testing

@testable import KnitClient

struct ChunkWriterTests {
    /// Writes of the sizes zstd (~128 KiB) and curl (up to 512 KiB) hand over, crossing the chunk size at every
    /// offset, come out as chunks of exactly the chunk size, each one allocation of about that size, and the same
    /// bytes in the same order. (Appending whole writes made chunks of up to size + write − 1 bytes in arrays
    /// grown to twice that.)
    @Test func chunksHaveExactlyTheChunkSizeAndKeepTheBytes() throws {
        let size = 256 << 10
        let queue = ChunkQueue(capacity: 1 << 20)
        var writer = ChunkWriter(queue, size: size)
        var written: [UInt8] = []
        var next: UInt8 = 0
        for length in [131_075, 200_000, 1, 524_288, 131_075, 255_999, 300_000, 7] {
            var bytes = [UInt8](repeating: 0, count: length)
            for index in bytes.indices {
                bytes[index] = next
                next &+= 31
            }
            try bytes.withUnsafeBytes { try writer.write($0) }
            written += bytes
        }
        try writer.flush()
        queue.finish()

        var chunks: [[UInt8]] = []
        while let chunk = try queue.pop() { chunks.append(chunk) }
        #expect(chunks.count == (written.count + size - 1) / size)
        for (index, chunk) in chunks.enumerated() {
            if index < chunks.count - 1 { #expect(chunk.count == size, "chunk \(index): \(chunk.count) bytes") }
            #expect(chunk.capacity < size + (16 << 10), "chunk \(index): capacity \(chunk.capacity)")
        }
        #expect(chunks.last?.count == written.count % size)
        #expect(Array(chunks.joined()) == written)
    }

    /// The second queue gets the very same chunks, so a pull's MD5 sees every byte the extractor sees.
    @Test func aSecondQueueGetsTheSameChunks() throws {
        let first = ChunkQueue(capacity: 64)
        let second = ChunkQueue(capacity: 64)
        var writer = ChunkWriter(first, alsoTo: second, size: 1000)
        let bytes = (0..<4321).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try bytes.withUnsafeBytes { try writer.write($0) }
        try writer.flush()
        first.finish()
        second.finish()
        var a: [[UInt8]] = []
        var b: [[UInt8]] = []
        while let chunk = try first.pop() { a.append(chunk) }
        while let chunk = try second.pop() { b.append(chunk) }
        #expect(a.map(\.count) == [1000, 1000, 1000, 1000, 321])
        #expect(a == b)
        #expect(Array(a.joined()) == bytes)
    }
}
