internal import CKnitCrypto

/// An OpenSSL `EVP_MD_CTX` running one digest: the one place that feeds and frees a context, behind
/// ``MD5Digest`` and ``SHA256Stream``. `~Copyable`, so the context is freed exactly once.
struct EVPDigestContext: ~Copyable {
    private let context: OpaquePointer
    private let name: String

    /// Allocation failure inside OpenSSL means the process is out of memory; that traps, as does an
    /// algorithm OpenSSL does not offer (MD5 under a FIPS-only provider).
    init(_ algorithm: OpaquePointer?, name: String) {
        guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed: out of memory") }
        guard EVP_DigestInit_ex(context, algorithm, nil) == 1 else {
            EVP_MD_CTX_free(context)
            fatalError("EVP_DigestInit_ex(\(name)) failed: OpenSSL does not offer it")
        }
        self.context = context
        self.name = name
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let ok = EVP_DigestUpdate(context, base, bytes.count)
        precondition(ok == 1, "EVP_DigestUpdate(\(name)) failed")
    }

    consuming func finalizeHex() -> String {
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = output.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        precondition(ok == 1, "EVP_DigestFinal_ex(\(name)) failed")
        return hexString(output.prefix(Int(length)))
    }

    deinit { EVP_MD_CTX_free(context) }
}

/// A running MD5, for the `x-checksum-md5` of Data archives, fed chunk by chunk as bytes stream past.
public struct MD5Digest: ~Copyable {
    private var context = EVPDigestContext(EVP_md5(), name: "md5")

    /// Starts an empty digest.
    public init() {}

    /// Adds `bytes` to the digest.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) { context.update(bytes) }

    /// Adds `bytes` to the digest.
    public mutating func update(_ bytes: some Collection<UInt8>) {
        let done: Void? = bytes.withContiguousStorageIfAvailable { update(UnsafeRawBufferPointer($0)) }
        if done == nil { Array(bytes).withUnsafeBytes { update($0) } }
    }

    /// The digest as 32 lower-case hex characters.
    public consuming func finalizeHex() -> String { context.finalizeHex() }

    /// MD5 of `bytes` in one go, as lower-case hex.
    public static func hex(of bytes: some Collection<UInt8>) -> String {
        var digest = MD5Digest()
        digest.update(bytes)
        return digest.finalizeHex()
    }
}

/// SHA-256 in one shot, used to store tokens without storing the tokens.
public enum SHA256Digest {
    /// OpenSSL's SHA-256, fetched once: `EVP_sha256()` makes every `EVP_Digest` look the algorithm up in
    /// the provider again (locks and a hash table), which was half of the token check's digest cost.
    /// Immutable after the fetch, and OpenSSL allows a fetched method in any number of threads at once.
    nonisolated(unsafe) private static let method: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)

    /// SHA-256 of `bytes` as 64 lower-case hex characters. Uses `EVP_Digest`.
    public static func hex(of bytes: some Collection<UInt8>) -> String {
        let done: String? = bytes.withContiguousStorageIfAvailable { hex(of: UnsafeRawBufferPointer($0)) }
        return done ?? Array(bytes).withUnsafeBytes { hex(of: $0) }
    }

    /// SHA-256 of the UTF-8 bytes of `text`.
    public static func hex(of text: String) -> String {
        var text = text
        return text.withUTF8 { hex(of: UnsafeRawBufferPointer($0)) }
    }

    private static func hex(of input: UnsafeRawBufferPointer) -> String {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Int(EVP_MAX_MD_SIZE)) { output in
            var length: UInt32 = 0
            let ok = EVP_Digest(
                input.baseAddress,
                input.count,
                output.baseAddress,
                &length,
                method ?? EVP_sha256(),
                nil
            )
            precondition(ok == 1, "EVP_Digest(sha256) failed")
            return hexString(UnsafeBufferPointer(rebasing: output[..<Int(length)]))
        }
    }
}

/// `count` bytes from the system CSPRNG, for tokens and secrets.
///
/// CKnitCrypto does not expose `RAND_bytes`, and `getrandom` is not in Swift's Glibc module, so this uses
/// `SystemRandomNumberGenerator`, which on Linux reads `getrandom(2)` (the source OpenSSL seeds from too).
public func randomBytes(_ count: Int) -> [UInt8] {
    precondition(count >= 0, "randomBytes: negative count")
    var generator = SystemRandomNumberGenerator()
    var bytes: [UInt8] = []
    bytes.reserveCapacity(count + 8)
    while bytes.count < count {
        withUnsafeBytes(of: generator.next() as UInt64) { bytes.append(contentsOf: $0) }
    }
    return Array(bytes.prefix(count))
}

/// Lower-case hex of `bytes`.
public func hexString(_ bytes: some Collection<UInt8>) -> String {
    let digits: StaticString = "0123456789abcdef"
    return String(unsafeUninitializedCapacity: bytes.count * 2) { out in
        var index = 0
        for byte in bytes {
            out[index] = digits.utf8Start[Int(byte >> 4)]
            out[index + 1] = digits.utf8Start[Int(byte & 0x0F)]
            index += 2
        }
        return index
    }
}
