// The summaries of Plans and Runs (and their mountpoints) that Knitfab's REST API (v1.6.1) embeds in Data and
// Run details, field for field, so Knitfab's own CLI reads ours.
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
