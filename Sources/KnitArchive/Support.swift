internal import CKnitArchive
internal import KnitSystem

#if canImport(Glibc)
    internal import Glibc
#endif

/// Size of the buffers handed to libarchive and to read()/write(). 256 KiB measured best here: 64 KiB pays
/// libarchive's per-call overhead, 1 MiB falls out of the CPU caches between decompressing and writing
/// (README, "Speed").
let ioBlockSize = 1 << 18

// File type bits, spelled out because libarchive's AE_IF* macros carry a cast Swift cannot import.
let fileTypeMask: UInt32 = 0o170000
let typeRegular: UInt32 = 0o100000
let typeDirectory: UInt32 = 0o040000
let typeSymlink: UInt32 = 0o120000
let typeCharDevice: UInt32 = 0o020000
let typeBlockDevice: UInt32 = 0o060000
let typeFifo: UInt32 = 0o010000
let typeSocket: UInt32 = 0o140000

/// Runs `body` with this thread's LC_CTYPE set to UTF-8.
///
/// libarchive converts entry names between the pax headers (UTF-8) and "the current locale". A Swift process
/// never calls setlocale, so that locale is "C" (ASCII) and every non-ASCII name fails to convert. uselocale()
/// changes only the calling thread, and the archive functions here are synchronous, so the thread cannot change
/// under us; the previous locale is restored on the way out.
func withUTF8Locale<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
    guard let utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", nil) else { return try body() }
    let previous = uselocale(utf8)
    defer {
        uselocale(previous)
        freelocale(utf8)
    }
    return try body()
}

/// The last error libarchive recorded on `archive`, or a fallback.
func archiveMessage(_ archive: OpaquePointer?) -> String {
    if let archive, let text = archive_error_string(archive) { return String(cString: text) }
    return "unknown libarchive error"
}

/// Text of an errno for archive messages, naming a full disk plainly.
func ioReason(_ code: Int32) -> String {
    code == ENOSPC ? "disk full" : Errno(code).description
}

/// Bytes of a C string (no terminator).
func bytes(ofCString pointer: UnsafePointer<CChar>) -> [UInt8] {
    let length = strlen(pointer)
    return pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
        Array(UnsafeBufferPointer(start: $0, count: length))
    }
}

/// Calls `body` with `bytes` as a NUL-terminated C string.
func withCString<T, E: Error>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) throws(E) -> T) throws(E) -> T {
    var terminated = bytes
    terminated.append(0)
    // A typed-throws body cannot pass through withUnsafeBufferPointer's rethrows, so carry the result out.
    var result: Result<T, E>!
    terminated.withUnsafeBufferPointer { buffer in
        buffer.withMemoryRebound(to: CChar.self) { chars in
            do throws(E) { result = .success(try body(chars.baseAddress!)) } catch { result = .failure(error) }
        }
    }
    return try result.get()
}

/// A path for messages: UTF-8 where valid, with replacement characters elsewhere.
func display(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// Entry names and link targets split into components, as Knit interprets them.
enum EntryPath {
    enum Problem: Error { case absolute, dotDot }

    /// Components of a relative name with empty and `.` components dropped; `./a//b/` gives `[a, b]`.
    static func components(_ name: [UInt8]) -> Result<[[UInt8]], Problem> {
        if name.first == UInt8(ascii: "/") { return .failure(.absolute) }
        var parts: [[UInt8]] = []
        for part in name.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if part.count == 1 && part.first == UInt8(ascii: ".") { continue }
            if part.count == 2 && part.allSatisfy({ $0 == UInt8(ascii: ".") }) { return .failure(.dotDot) }
            parts.append(Array(part))
        }
        return .success(parts)
    }

    static func join(_ parts: some Sequence<[UInt8]>) -> [UInt8] {
        Array(parts.joined(separator: [UInt8(ascii: "/")]))
    }
}

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
