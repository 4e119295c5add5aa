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
