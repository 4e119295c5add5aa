internal import CKnitCrypto

/// A running SHA-256, fed chunk by chunk: the content digests (`sha256:…`) of image layers and configs that
/// `knit image load` streams to the registry without holding them.
public struct SHA256Stream: ~Copyable {
    private var context = EVPDigestContext(EVP_sha256(), name: "sha256")

    /// Starts an empty digest.
    public init() {}

    /// Adds `bytes` to the digest.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) { context.update(bytes) }

    /// The digest as 64 lower-case hex characters.
    public consuming func finalizeHex() -> String { context.finalizeHex() }
}
