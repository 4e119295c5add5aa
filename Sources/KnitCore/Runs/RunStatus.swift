/// Run statuses, spelled as in the API.
public enum RunStatus: String, Codable, Sendable, CaseIterable {
    case deactivated, waiting, ready, starting, running, completing, aborting, done, failed, invalidated

    /// Statuses whose outputs carry `knit#transient:processing`.
    public var isProcessing: Bool {
        switch self {
        case .deactivated, .waiting, .ready, .starting, .running, .completing, .aborting: return true
        case .done, .failed, .invalidated: return false
        }
    }
}
