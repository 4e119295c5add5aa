import KnitCore
import KnitStore

/// Bounds on what one request may ask of the server, so that no single request can hold the store's one
/// write transaction, a worker thread or memory for long. Documented in the README's security section.
public enum RequestLimits {
    /// JSON request bodies (tag changes, plans, resources, annotations): beyond this, 413. nginx buffers
    /// such bodies and refuses larger ones itself with the same limit.
    public static let jsonBodyBytes = 8 << 20
    /// Tags one tag change may add, remove or name by key: beyond this, 400.
    public static let tagsPerChange = 100_000
    /// User tags one Data may carry (the store refuses a change that would leave more, with 400).
    public static var tagsPerData: Int { KnitStore.maximumUserTags }
}
