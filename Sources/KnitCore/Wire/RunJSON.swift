/// One input or output of a Run: the mountpoint's path and tags (not the Data's) and the Data assigned.
public struct RunAssignmentJSON: Codable, Sendable, Equatable {
    public var path: String
    public var tags: TagSet
    public var knitId: String
    public init(path: String, tags: TagSet, knitId: String) {
        self.path = path
        self.tags = tags
        self.knitId = knitId
    }
}

/// The log of a Run: the log point's tags and the Data that holds the log.
public struct RunLogJSON: Codable, Sendable, Equatable {
    public var tags: TagSet
    public var knitId: String
    public init(tags: TagSet, knitId: String) {
        self.tags = tags
        self.knitId = knitId
    }
}

/// `runs.Detail`, the answer of the run endpoints and the payload of lifecycle hooks.
///
/// Unlike every other optional field of the API, `log` is written as `"log": null` when the plan has no
/// log, because Knitfab's Go struct has no `omitempty` on it. KnitJSON omits nil optionals, so
/// `encode(to:)` writes the null explicitly with `encodeNil`; `exit` stays omitted while unset.
public struct RunDetailJSON: Codable, Sendable, Equatable {
    public var runId: String
    /// A ``RunStatus`` raw value; kept as text so a client can show statuses it does not know.
    public var status: String
    public var updatedAt: String
    public var exit: RunExitJSON?
    public var plan: PlanSummaryJSON
    public var inputs: [RunAssignmentJSON]
    public var outputs: [RunAssignmentJSON]
    public var log: RunLogJSON?
    /// Knit's addition: the Run's owner, who uploaded (for an upload) or owns its Plan (omitted when unknown).
    public var creator: String?
    /// Knit's addition: why a `starting` Run has not started yet (a pod no node can take), while it waits;
    /// omitted otherwise. Knitfab's clients ignore fields they do not know.
    public var waitingFor: String?

    public init(
        runId: String,
        status: String,
        updatedAt: String,
        exit: RunExitJSON? = nil,
        plan: PlanSummaryJSON,
        inputs: [RunAssignmentJSON] = [],
        outputs: [RunAssignmentJSON] = [],
        log: RunLogJSON? = nil,
        creator: String? = nil,
        waitingFor: String? = nil
    ) {
        self.runId = runId
        self.status = status
        self.updatedAt = updatedAt
        self.exit = exit
        self.plan = plan
        self.inputs = inputs
        self.outputs = outputs
        self.log = log
        self.creator = creator
        self.waitingFor = waitingFor
    }

    enum CodingKeys: String, CodingKey {
        case runId, status, updatedAt, exit, plan, inputs, outputs, log, creator, waitingFor
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        runId = try container.decode(String.self, forKey: .runId)
        status = try container.decode(String.self, forKey: .status)
        updatedAt = try container.decode(String.self, forKey: .updatedAt)
        exit = try container.decodeIfPresent(RunExitJSON.self, forKey: .exit)
        plan = try container.decode(PlanSummaryJSON.self, forKey: .plan)
        inputs = try container.decodeIfPresent([RunAssignmentJSON].self, forKey: .inputs) ?? []
        outputs = try container.decodeIfPresent([RunAssignmentJSON].self, forKey: .outputs) ?? []
        log = try container.decodeIfPresent(RunLogJSON.self, forKey: .log)
        creator = try container.decodeIfPresent(String.self, forKey: .creator)
        waitingFor = try container.decodeIfPresent(String.self, forKey: .waitingFor)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(runId, forKey: .runId)
        try container.encode(status, forKey: .status)
        try container.encode(updatedAt, forKey: .updatedAt)
        try container.encodeIfPresent(exit, forKey: .exit)
        try container.encode(plan, forKey: .plan)
        try container.encode(inputs, forKey: .inputs)
        try container.encode(outputs, forKey: .outputs)
        if let log {
            try container.encode(log, forKey: .log)
        } else {
            try container.encodeNil(forKey: .log)
        }
        try container.encodeIfPresent(creator, forKey: .creator)
        try container.encodeIfPresent(waitingFor, forKey: .waitingFor)
    }

    /// The summary form embedded in Data Detail.
    public var summary: RunSummaryJSON {
        RunSummaryJSON(runId: runId, status: status, updatedAt: updatedAt, exit: exit, plan: plan)
    }
}
