// The JSON shapes of Knitfab's plan API (v1.6.1): the spec a client posts and the detail every plan
// endpoint answers with. Maps (`resources`) are written with sorted keys, as Go writes them, so a response
// does not depend on hash order.

/// `{may, prefer, must}` node placement, each a list of `key=value` labels.
public struct OnNodeJSON: Codable, Sendable, Equatable {
    public var may: [String]?
    public var prefer: [String]?
    public var must: [String]?
    public init(may: [String]? = nil, prefer: [String]? = nil, must: [String]? = nil) {
        self.may = may
        self.prefer = prefer
        self.must = must
    }
}

/// Body of `POST /api/plans/` and the content of a plan file.
///
/// Decoding is lenient about absence (missing `inputs`/`outputs` are empty, `image` empty) so that
/// validation, not the decoder, explains what is wrong. `resources` values may be JSON numbers
/// (`{"cpu": 1}`), as Kubernetes quantities may.
public struct PlanSpecJSON: Codable, Sendable, Equatable {
    public var image: String
    public var entrypoint: [String]?
    public var args: [String]?
    public var annotations: [String]?
    public var inputs: [MountpointJSON]
    public var outputs: [MountpointJSON]
    public var log: LogPointJSON?
    public var active: Bool?
    public var resources: [String: String]?
    public var onNode: OnNodeJSON?
    public var serviceAccount: String?

    public init(
        image: String,
        entrypoint: [String]? = nil,
        args: [String]? = nil,
        annotations: [String]? = nil,
        inputs: [MountpointJSON],
        outputs: [MountpointJSON] = [],
        log: LogPointJSON? = nil,
        active: Bool? = nil,
        resources: [String: String]? = nil,
        onNode: OnNodeJSON? = nil,
        serviceAccount: String? = nil
    ) {
        self.image = image
        self.entrypoint = entrypoint
        self.args = args
        self.annotations = annotations
        self.inputs = inputs
        self.outputs = outputs
        self.log = log
        self.active = active
        self.resources = resources
        self.onNode = onNode
        self.serviceAccount = serviceAccount
    }

    enum CodingKeys: String, CodingKey {
        case image, entrypoint, args, annotations, inputs, outputs, log, active, resources
        case onNode = "on_node"
        case serviceAccount = "service_account"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        image = try container.decodeIfPresent(String.self, forKey: .image) ?? ""
        entrypoint = try container.decodeIfPresent([String].self, forKey: .entrypoint)
        args = try container.decodeIfPresent([String].self, forKey: .args)
        annotations = try container.decodeIfPresent([String].self, forKey: .annotations)
        inputs = try container.decodeIfPresent([MountpointJSON].self, forKey: .inputs) ?? []
        outputs = try container.decodeIfPresent([MountpointJSON].self, forKey: .outputs) ?? []
        log = try container.decodeIfPresent(LogPointJSON.self, forKey: .log)
        active = try container.decodeIfPresent(Bool.self, forKey: .active)
        resources = try container.decodeIfPresent(QuantityMap.self, forKey: .resources)?.values
        onNode = try container.decodeIfPresent(OnNodeJSON.self, forKey: .onNode)
        serviceAccount = try container.decodeIfPresent(String.self, forKey: .serviceAccount)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(image, forKey: .image)
        try container.encodeIfPresent(entrypoint, forKey: .entrypoint)
        try container.encodeIfPresent(args, forKey: .args)
        try container.encodeIfPresent(annotations, forKey: .annotations)
        try container.encode(inputs, forKey: .inputs)
        try container.encode(outputs, forKey: .outputs)
        try container.encodeIfPresent(log, forKey: .log)
        try container.encodeIfPresent(active, forKey: .active)
        try container.encodeIfPresent(resources.map(SortedStringMap.init), forKey: .resources)
        try container.encodeIfPresent(onNode, forKey: .onNode)
        try container.encodeIfPresent(serviceAccount, forKey: .serviceAccount)
    }
}

/// Where an input's Data may come from: an output or the log of another plan.
public struct PlanUpstreamJSON: Codable, Sendable, Equatable {
    public var plan: PlanSummaryJSON
    public var mountpoint: MountpointJSON?
    public var log: LogPointJSON?
    public init(plan: PlanSummaryJSON, mountpoint: MountpointJSON? = nil, log: LogPointJSON? = nil) {
        self.plan = plan
        self.mountpoint = mountpoint
        self.log = log
    }
}

/// Which input of another plan an output (or the log) may feed.
public struct PlanDownstreamJSON: Codable, Sendable, Equatable {
    public var plan: PlanSummaryJSON
    public var mountpoint: MountpointJSON
    public init(plan: PlanSummaryJSON, mountpoint: MountpointJSON) {
        self.plan = plan
        self.mountpoint = mountpoint
    }
}

/// An input in Plan Detail.
public struct PlanInputJSON: Codable, Sendable, Equatable {
    public var path: String
    public var tags: TagSet
    public var upstreams: [PlanUpstreamJSON]
    public init(path: String, tags: TagSet, upstreams: [PlanUpstreamJSON] = []) {
        self.path = path
        self.tags = tags
        self.upstreams = upstreams
    }
}

/// An output in Plan Detail.
public struct PlanOutputJSON: Codable, Sendable, Equatable {
    public var path: String
    public var tags: TagSet
    public var downstreams: [PlanDownstreamJSON]
    public init(path: String, tags: TagSet, downstreams: [PlanDownstreamJSON] = []) {
        self.path = path
        self.tags = tags
        self.downstreams = downstreams
    }
}

/// The log point in Plan Detail.
public struct PlanLogJSON: Codable, Sendable, Equatable {
    public var tags: TagSet
    public var downstreams: [PlanDownstreamJSON]
    public init(tags: TagSet, downstreams: [PlanDownstreamJSON] = []) {
        self.tags = tags
        self.downstreams = downstreams
    }
}

/// `plans.Detail`, the answer of every plan endpoint. Pseudo plans have `name` instead of `image`.
public struct PlanDetailJSON: Codable, Sendable, Equatable {
    public var planId: String
    public var image: String?
    public var name: String?
    public var entrypoint: [String]?
    public var args: [String]?
    public var annotations: [String]?
    public var inputs: [PlanInputJSON]
    public var outputs: [PlanOutputJSON]
    public var log: PlanLogJSON?
    public var active: Bool
    public var onNode: OnNodeJSON?
    public var resources: [String: String]
    public var serviceAccount: String?
    /// Knit's addition: the user who registered the plan (omitted for pseudo plans and unknown creators).
    public var creator: String?

    public init(
        planId: String,
        image: String? = nil,
        name: String? = nil,
        entrypoint: [String]? = nil,
        args: [String]? = nil,
        annotations: [String]? = nil,
        inputs: [PlanInputJSON] = [],
        outputs: [PlanOutputJSON] = [],
        log: PlanLogJSON? = nil,
        active: Bool = true,
        onNode: OnNodeJSON? = nil,
        resources: [String: String] = [:],
        serviceAccount: String? = nil
    ) {
        self.planId = planId
        self.image = image
        self.name = name
        self.entrypoint = entrypoint
        self.args = args
        self.annotations = annotations
        self.inputs = inputs
        self.outputs = outputs
        self.log = log
        self.active = active
        self.onNode = onNode
        self.resources = resources
        self.serviceAccount = serviceAccount
    }

    enum CodingKeys: String, CodingKey {
        case planId, image, name, entrypoint, args, annotations, inputs, outputs, log, active
        case onNode = "on_node"
        case resources
        case serviceAccount = "service_account"
        case creator
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        planId = try container.decode(String.self, forKey: .planId)
        image = try container.decodeIfPresent(String.self, forKey: .image)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        entrypoint = try container.decodeIfPresent([String].self, forKey: .entrypoint)
        args = try container.decodeIfPresent([String].self, forKey: .args)
        annotations = try container.decodeIfPresent([String].self, forKey: .annotations)
        inputs = try container.decodeIfPresent([PlanInputJSON].self, forKey: .inputs) ?? []
        outputs = try container.decodeIfPresent([PlanOutputJSON].self, forKey: .outputs) ?? []
        log = try container.decodeIfPresent(PlanLogJSON.self, forKey: .log)
        active = try container.decodeIfPresent(Bool.self, forKey: .active) ?? true
        onNode = try container.decodeIfPresent(OnNodeJSON.self, forKey: .onNode)
        resources = try container.decodeIfPresent(QuantityMap.self, forKey: .resources)?.values ?? [:]
        serviceAccount = try container.decodeIfPresent(String.self, forKey: .serviceAccount)
        creator = try container.decodeIfPresent(String.self, forKey: .creator)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(planId, forKey: .planId)
        try container.encodeIfPresent(image, forKey: .image)
        try container.encodeIfPresent(name, forKey: .name)
        try container.encodeIfPresent(entrypoint, forKey: .entrypoint)
        try container.encodeIfPresent(args, forKey: .args)
        try container.encodeIfPresent(annotations, forKey: .annotations)
        try container.encode(inputs, forKey: .inputs)
        try container.encode(outputs, forKey: .outputs)
        try container.encodeIfPresent(log, forKey: .log)
        try container.encode(active, forKey: .active)
        try container.encodeIfPresent(onNode, forKey: .onNode)
        try container.encode(SortedStringMap(resources), forKey: .resources)
        try container.encodeIfPresent(serviceAccount, forKey: .serviceAccount)
        try container.encodeIfPresent(creator, forKey: .creator)
    }

    /// The summary form embedded in Runs, Data and other plans' links.
    public var summary: PlanSummaryJSON {
        PlanSummaryJSON(
            planId: planId,
            image: image,
            name: name,
            entrypoint: entrypoint,
            args: args,
            annotations: annotations
        )
    }
}

/// Body of `PUT /api/plans/{id}/resources`: `set` is applied before `unset`, so unset wins.
public struct PlanResourceChangeJSON: Codable, Sendable, Equatable {
    public var set: [String: String]
    public var unset: [String]
    public init(set: [String: String] = [:], unset: [String] = []) {
        self.set = set
        self.unset = unset
    }
    enum CodingKeys: String, CodingKey { case set, unset }
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        set = try container.decodeIfPresent(QuantityMap.self, forKey: .set)?.values ?? [:]
        unset = try container.decodeIfPresent([String].self, forKey: .unset) ?? []
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(SortedStringMap(set), forKey: .set)
        try container.encode(unset, forKey: .unset)
    }
}

/// Body of `PUT /api/plans/{id}/annotations`: `remove_key`, then `remove`, then `add`.
public struct PlanAnnotationChangeJSON: Codable, Sendable, Equatable {
    public var add: [String]
    public var remove: [String]
    public var removeKey: [String]
    public init(add: [String] = [], remove: [String] = [], removeKey: [String] = []) {
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
        add = try container.decodeIfPresent([String].self, forKey: .add) ?? []
        remove = try container.decodeIfPresent([String].self, forKey: .remove) ?? []
        removeKey = try container.decodeIfPresent([String].self, forKey: .removeKey) ?? []
    }
}

/// Body of `PUT /api/plans/{id}/serviceaccount`.
public struct PlanServiceAccountJSON: Codable, Sendable, Equatable {
    public var serviceAccount: String
    public init(serviceAccount: String) { self.serviceAccount = serviceAccount }
    enum CodingKeys: String, CodingKey { case serviceAccount = "service_account" }
}

/// A `String: String` map written with its keys in byte order.
struct SortedStringMap: Encodable {
    let values: [String: String]
    init(_ values: [String: String]) { self.values = values }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: DynamicKey.self)
        for key in values.keys.sorted(by: { compareBytes($0, $1) < 0 }) {
            try container.encode(values[key]!, forKey: DynamicKey(key))
        }
    }
}

/// A map of resource quantities that accepts numbers as well as strings (`cpu: 1`, `{"cpu": 0.5}`).
struct QuantityMap: Decodable {
    let values: [String: String]

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: DynamicKey.self)
        var values: [String: String] = [:]
        for key in container.allKeys {
            if let text = try? container.decode(String.self, forKey: key) {
                values[key.stringValue] = text
            } else if let integer = try? container.decode(Int64.self, forKey: key) {
                values[key.stringValue] = String(integer)
            } else {
                values[key.stringValue] = renderQuantity(try container.decode(Double.self, forKey: key))
            }
        }
        self.values = values
    }
}

/// A JSON number as quantity text: integral values without `.0`, others in Swift's shortest form.
func renderQuantity(_ number: Double) -> String {
    if number.rounded() == number, abs(number) < 1e15 { return String(Int64(number)) }
    return String(describing: number)
}

struct DynamicKey: CodingKey {
    let stringValue: String
    init(_ text: String) { stringValue = text }
    init?(stringValue: String) { self.stringValue = stringValue }
    var intValue: Int? { nil }
    init?(intValue: Int) { nil }
}
