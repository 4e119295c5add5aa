// The JSON shapes of a Data in Knitfab's REST API (v1.6.1), field for field, so Knitfab's own CLI reads
// ours.
// Optional fields are omitted when nil, as Go's `omitempty` does.

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
    /// Knit's addition: the user who uploaded the Data or owns the Plan whose Run made it (omitted when
    /// unknown). Knitfab's CLI ignores fields it does not know.
    public var creator: String?
    public init(
        knitId: String,
        tags: TagSet,
        upstream: DataUpstreamJSON,
        downstreams: [DataDownstreamJSON] = [],
        nomination: [NominationJSON] = [],
        creator: String? = nil
    ) {
        self.knitId = knitId
        self.tags = tags
        self.upstream = upstream
        self.downstreams = downstreams
        self.nomination = nomination
        self.creator = creator
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
