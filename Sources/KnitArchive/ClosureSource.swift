internal import CKnitArchive

/// Bytes pulled from a caller's `read` closure into the one buffer libarchive reads from: the source of every
/// archive reader in this module. Remembers what the closure threw, how much came, and the last 8 bytes
/// (a gzip member's trailer, which libarchive 3.6 does not check).
final class ClosureSource {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: ioBlockSize, alignment: 16)
    let read: (UnsafeMutableRawBufferPointer) throws -> Int
    var failure: (any Error)?
    var totalBytes: Int64 = 0
    var tail: [UInt8] = []

    init(read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        self.read = read
    }

    deinit { buffer.deallocate() }

    /// One libarchive read callback: the bytes read, 0 at end, -1 after the closure threw.
    func fill() -> Int {
        do {
            let count = try read(buffer)
            precondition(
                count >= 0 && count <= buffer.count,
                "read closure returned \(count) for a \(buffer.count)-byte buffer"
            )
            totalBytes += Int64(count)
            tail.append(contentsOf: buffer[max(0, count - 8)..<count])
            if tail.count > 8 { tail.removeFirst(tail.count - 8) }
            return count
        } catch {
            failure = error
            return -1
        }
    }
}

/// The libarchive read callback for a ``ClosureSource`` passed as client data.
func readFromClosureSource(
    _ archive: OpaquePointer?,
    _ client: UnsafeMutableRawPointer?,
    _ buffer: UnsafeMutablePointer<UnsafeRawPointer?>?
) -> Int {
    let source = Unmanaged<ClosureSource>.fromOpaque(client!).takeUnretainedValue()
    let count = source.fill()
    buffer?.pointee = UnsafeRawPointer(source.buffer.baseAddress)
    return count
}
