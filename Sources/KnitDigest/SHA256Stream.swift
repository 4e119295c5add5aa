internal import CKnitCrypto

/// A running SHA-256, fed chunk by chunk: the content digests (`sha256:…`) of image layers and configs that
/// `knit image load` streams to the registry without holding them.
///
/// Owns an OpenSSL `EVP_MD_CTX`; it is `~Copyable` so the context is freed exactly once.
public struct SHA256Stream: ~Copyable {
    private let context: OpaquePointer

    /// Starts an empty digest. Allocation failure inside OpenSSL means the process is out of memory; that traps.
    public init() {
        guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed: out of memory") }
        guard EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else {
            EVP_MD_CTX_free(context)
            fatalError("EVP_DigestInit_ex(sha256) failed")
        }
        self.context = context
    }

    /// Adds `bytes` to the digest.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let ok = EVP_DigestUpdate(context, base, bytes.count)
        precondition(ok == 1, "EVP_DigestUpdate(sha256) failed")
    }

    /// The digest as 64 lower-case hex characters.
    public consuming func finalizeHex() -> String {
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = output.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        precondition(ok == 1, "EVP_DigestFinal_ex(sha256) failed")
        return hexString(output.prefix(Int(length)))
    }

    deinit { EVP_MD_CTX_free(context) }
}
