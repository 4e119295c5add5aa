/// Who may change or destroy what (Knit's ownership rule; Knitfab has none).
///
/// Everyone may read everything. A `user` may change only what they own: the Data they uploaded, the Plans
/// they registered, the Runs of those Plans and the Data those Runs made (a Run and its outputs belong to the
/// Plan's owner, whoever's Data fed it), and the image repositories they pushed first. An `admin` may change
/// anything; a `reader` nothing.
public enum Ownership {
    /// Whether `caller` with `role` may change or delete something owned by `owner`. An empty owner
    /// (records from before owners were kept) belongs to nobody but the admins.
    public static func mayChange(owner: String, caller: String, role: Role) -> Bool {
        switch role {
        case .admin: return true
        case .user: return !owner.isEmpty && owner == caller
        case .reader: return false
        }
    }
}

/// Something a user can own, named for messages and audit lines.
public enum OwnedThing: Sendable, Equatable, CustomStringConvertible {
    case data(knitId: String)
    case run(runId: String)
    case plan(planId: String)
    case imageRepository(name: String)

    public var description: String {
        switch self {
        case .data(let knitId): return "data \(knitId)"
        case .run(let runId): return "run \(runId)"
        case .plan(let planId): return "plan \(planId)"
        case .imageRepository(let name): return "image repository \(name)"
        }
    }
}
