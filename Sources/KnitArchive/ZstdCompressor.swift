internal import CKnitArchive

/// Compresses a byte stream into one zstd frame with a content checksum, passing the output on.
///
/// libarchive 3.6.2's zstd filter only knows `compression-level` and `threads`, so archives it writes carry
/// no checksum and a receiver cannot tell a damaged upload from a good one. Knit writes the tar itself with
/// libarchive and compresses it here with libzstd, checksum on.
final class ZstdCompressor {
    private let context: OpaquePointer
    private let output: UnsafeMutableRawBufferPointer
    private let write: (UnsafeRawBufferPointer) throws -> Void

    /// - Parameters:
    ///   - level: zstd level (1 is fast and still shrinks compressible data a lot).
    ///   - workers: compression threads inside libzstd; reading files overlaps with compressing.
    init(level: Int, workers: Int, write: @escaping (UnsafeRawBufferPointer) throws -> Void) throws(ArchiveError) {
        guard let context = ZSTD_createCCtx() else {
            throw ArchiveError(code: .io, message: "archive: out of memory creating a zstd compressor")
        }
        self.context = context
        self.write = write
        output = UnsafeMutableRawBufferPointer.allocate(byteCount: ZSTD_CStreamOutSize(), alignment: 16)
        try check(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, Int32(level)), "level")
        try check(ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1), "checksum")
        // A libzstd built without threads refuses workers; single-threaded is still correct.
        if ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_nbWorkers, Int32(workers))) == 0 && workers > 0 {
            try check(ZSTD_CCtx_setParameter(context, ZSTD_c_jobSize, Int32(Self.jobSize)), "job size")
        }
    }

    /// Bytes of input per multithreaded job: 1 MiB instead of libzstd's default of 4 windows (2 MiB at level 1).
    /// Its buffers scale with the job size (a ring of input for the jobs in flight plus an output buffer per
    /// job): at 2 MiB they were 28 of a push's 38 MB of heap (heaptrack) and the push's peak RSS 61 MiB, at 1 MiB
    /// it is 45 MiB. `zstd -1 -T2` on 1 GiB of random data and on 1 GiB of Swift's libraries took the same time
    /// and CPU at 1 as at 2 MiB; the minimum, 512 KiB (40 MiB), was slower on the libraries (5.0 against 3.9 s).
    static let jobSize = 1 << 20

    deinit {
        ZSTD_freeCCtx(context)
        output.deallocate()
    }

    /// Compresses `bytes`, writing whatever output is ready.
    func compress(_ bytes: UnsafeRawBufferPointer) throws {
        var input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
        while input.pos < input.size {
            try step(&input, ZSTD_e_continue)
        }
    }

    /// Ends the frame: flushes everything and writes the checksum.
    func finish() throws {
        var input = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
        while try step(&input, ZSTD_e_end) != 0 {}
    }

    @discardableResult
    private func step(_ input: inout ZSTD_inBuffer, _ directive: ZSTD_EndDirective) throws -> Int {
        var out = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
        let remaining = ZSTD_compressStream2(context, &out, &input, directive)
        if ZSTD_isError(remaining) != 0 {
            throw ArchiveError(code: .io, message: "archive: zstd: \(String(cString: ZSTD_getErrorName(remaining)))")
        }
        if out.pos > 0 { try write(UnsafeRawBufferPointer(start: output.baseAddress, count: out.pos)) }
        return remaining
    }

    private func check(_ result: Int, _ what: String) throws(ArchiveError) {
        if ZSTD_isError(result) != 0 {
            throw ArchiveError(
                code: .io,
                message: "archive: zstd rejected its \(what) setting: \(String(cString: ZSTD_getErrorName(result)))"
            )
        }
    }
}
