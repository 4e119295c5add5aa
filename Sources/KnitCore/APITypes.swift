// The JSON shapes of Knitfab's REST API (v1.6.1), field for field, so Knitfab's own CLI reads ours.
// Optional fields are omitted when nil, as Go's `omitempty` does.

/// `{path, tags}` of a Plan input or output as shown on Data and Runs.
public struct MountpointJSON: Codable, Sendable, Equatable {
    public var path: String
    public var tags: TagSet
    public init(path: String, tags: TagSet) {
        self.path = path
        self.tags = tags
    }
}

/// `{tags}` of a Plan's log point.
public struct LogPointJSON: Codable, Sendable, Equatable {
    public var tags: TagSet
    public init(tags: TagSet) { self.tags = tags }
}

/// `PlanSummary`: an image plan has `image`, a pseudo plan (`knit#uploaded`) has `name`.
public struct PlanSummaryJSON: Codable, Sendable, Equatable {
    public var planId: String
    public var image: String?
    public var name: String?
    public var entrypoint: [String]?
    public var args: [String]?
    public var annotations: [String]?
    public init(
        planId: String,
        image: String? = nil,
        name: String? = nil,
        entrypoint: [String]? = nil,
        args: [String]? = nil,
        annotations: [String]? = nil
    ) {
        self.planId = planId
        self.image = image
        self.name = name
        self.entrypoint = entrypoint
        self.args = args
        self.annotations = annotations
    }
}

/// `{code, message}` of a finished Run.
public struct RunExitJSON: Codable, Sendable, Equatable {
    public var code: Int
    public var message: String
    public init(code: Int, message: String) {
        self.code = code
        self.message = message
    }
}

/// `RunSummary` as embedded in Data Detail.
public struct RunSummaryJSON: Codable, Sendable, Equatable {
    public var runId: String
    public var status: String
    public var updatedAt: String
    public var exit: RunExitJSON?
    public var plan: PlanSummaryJSON
    public init(runId: String, status: String, updatedAt: String, exit: RunExitJSON? = nil, plan: PlanSummaryJSON) {
        self.runId = runId
        self.status = status
        self.updatedAt = updatedAt
        self.exit = exit
        self.plan = plan
    }
}

/// Where a Data came from: an output mountpoint or the log of `run`.
public struct DataUpstreamJSON: Codable, Sendable, Equatable {
    public var mountpoint: MountpointJSON?
    public var log: LogPointJSON?
    public var run: RunSummaryJSON
    public init(mountpoint: MountpointJSON? = nil, log: LogPointJSON? = nil, run: RunSummaryJSON) {
        self.mountpoint = mountpoint
        self.log = log
        self.run = run
    }
}

/// A Run that consumed a Data, and at which input.
public struct DataDownstreamJSON: Codable, Sendable, Equatable {
    public var mountpoint: MountpointJSON
    public var run: RunSummaryJSON
    public init(mountpoint: MountpointJSON, run: RunSummaryJSON) {
        self.mountpoint = mountpoint
        self.run = run
    }
}

/// A Plan input a Data is currently assignable to.
public struct NominationJSON: Codable, Sendable, Equatable {
    public var path: String
    public var tags: TagSet
    public var plan: PlanSummaryJSON
    public init(path: String, tags: TagSet, plan: PlanSummaryJSON) {
        self.path = path
        self.tags = tags
        self.plan = plan
    }
}

/// `data.Detail`.
public struct DataDetailJSON: Codable, Sendable, Equatable {
    public var knitId: String
    public var tags: TagSet
    public var upstream: DataUpstreamJSON
    public var downstreams: [DataDownstreamJSON]
    public var nomination: [NominationJSON]
    public init(
        knitId: String,
        tags: TagSet,
        upstream: DataUpstreamJSON,
        downstreams: [DataDownstreamJSON] = [],
        nomination: [NominationJSON] = []
    ) {
        self.knitId = knitId
        self.tags = tags
        self.upstream = upstream
        self.downstreams = downstreams
        self.nomination = nomination
    }
}

/// Body of `PUT /api/data/{knitId}`: removals (`remove_key`, then `remove`) are applied before `add`.
public struct TagChangeJSON: Codable, Sendable, Equatable {
    public var add: [Tag]
    public var remove: [Tag]
    public var removeKey: [String]
    public init(add: [Tag] = [], remove: [Tag] = [], removeKey: [String] = []) {
        self.add = add
        self.remove = remove
        self.removeKey = removeKey
    }
    enum CodingKeys: String, CodingKey {
        case add, remove
        case removeKey = "remove_key"
    }
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        add = try container.decodeIfPresent([Tag].self, forKey: .add) ?? []
        remove = try container.decodeIfPresent([Tag].self, forKey: .remove) ?? []
        removeKey = try container.decodeIfPresent([String].self, forKey: .removeKey) ?? []
    }
}

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

/// Names of the built-in pseudo plans.
public enum PseudoPlan {
    public static let uploaded = "knit#uploaded"
    public static let uploadPath = "/upload"
}

/// User roles: `reader` may only read, `user` may also write, `admin` may also manage users.
public enum Role: String, Codable, Sendable, CaseIterable, Comparable {
    case reader, user, admin

    public var canWrite: Bool { self != .reader }

    public static func < (lhs: Role, rhs: Role) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}
