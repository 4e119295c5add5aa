/// An input of a validated Plan: where the Data is mounted and what it must carry.
public struct PlanInput: Sendable, Hashable {
    public let path: String
    /// All tags as shown in the API; a `knit#timestamp` value is re-rendered in Knitfab's form.
    public let tags: TagSet
    /// The tags without `knit#…` ones: what a Data's user tags must include.
    public let userTags: TagSet
    /// The `knit#id` this input insists on, if any.
    public let knitId: String?
    /// The `knit#timestamp` this input insists on, if any.
    public let timestamp: KnitTime?

    /// Inputs pinned to one Data (by id or timestamp) take no part in plan-to-plan dependencies.
    public var isPinned: Bool { knitId != nil || timestamp != nil }

    public var mountpoint: MountpointJSON { MountpointJSON(path: path, tags: tags) }
}

/// An output of a validated Plan.
public struct PlanOutput: Sendable, Hashable {
    public let path: String
    public let tags: TagSet
    public var mountpoint: MountpointJSON { MountpointJSON(path: path, tags: tags) }
}

/// A free-form `key=value` note on a Plan. The same key may appear with several values.
public struct PlanAnnotation: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let key: String
    public let value: String

    public static let maximumKeyLength = 253
    public static let maximumValueLength = 1 << 20

    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }

    /// Parses `key=value` (split at the first `=`, both parts trimmed).
    /// - Throws: the reason as text when there is no `=`, the key is empty or a part is too long.
    public init(parsing text: String) throws(PlanTextError) {
        guard let equal = text.firstIndex(of: "=") else {
            throw PlanTextError("\(quoted(text)) is not KEY=VALUE")
        }
        let key = Tag.trimmed(text[..<equal])
        let value = Tag.trimmed(text[text.index(after: equal)...])
        guard !key.isEmpty else { throw PlanTextError("\(quoted(text)) has an empty key") }
        guard key.utf8.count <= Self.maximumKeyLength else {
            throw PlanTextError("annotation key is longer than \(Self.maximumKeyLength) bytes")
        }
        guard value.utf8.count <= Self.maximumValueLength else {
            throw PlanTextError("annotation value is longer than 1 MiB")
        }
        self.init(key: key, value: value)
    }

    public var description: String { "\(key)=\(value)" }

    public static func < (lhs: PlanAnnotation, rhs: PlanAnnotation) -> Bool {
        let keyOrder = compareBytes(lhs.key, rhs.key)
        return keyOrder != 0 ? keyOrder < 0 : compareBytes(lhs.value, rhs.value) < 0
    }
}

/// How strongly a Plan wants nodes with a label: tolerate, prefer, or require.
public enum OnNodeMode: String, Sendable, Hashable, CaseIterable, Comparable {
    case may, prefer, must
    public static func < (lhs: OnNodeMode, rhs: OnNodeMode) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// One `on_node` entry: a Kubernetes label `key=value` under a mode.
public struct OnNodeLabel: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let mode: OnNodeMode
    public let key: String
    public let value: String

    public init(mode: OnNodeMode, key: String, value: String) {
        self.mode = mode
        self.key = key
        self.value = value
    }

    /// Parses `key=value` where both parts follow Kubernetes' label syntax.
    public init(mode: OnNodeMode, parsing text: String) throws(PlanTextError) {
        guard let equal = text.firstIndex(of: "=") else {
            throw PlanTextError("\(quoted(text)) is not KEY=VALUE")
        }
        let key = String(text[..<equal])
        let value = String(text[text.index(after: equal)...])
        if let problem = LabelSyntax.keyProblem(key) { throw PlanTextError("\(quoted(text)): \(problem)") }
        if let problem = LabelSyntax.valueProblem(value) { throw PlanTextError("\(quoted(text)): \(problem)") }
        self.init(mode: mode, key: key, value: value)
    }

    public var description: String { "\(key)=\(value)" }

    public static func < (lhs: OnNodeLabel, rhs: OnNodeLabel) -> Bool {
        if lhs.mode != rhs.mode { return lhs.mode < rhs.mode }
        let keyOrder = compareBytes(lhs.key, rhs.key)
        return keyOrder != 0 ? keyOrder < 0 : compareBytes(lhs.value, rhs.value) < 0
    }
}

/// A one-line reason some text in a plan spec was refused.
public struct PlanTextError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// A Plan as registered: validated and normalized from a ``PlanSpecJSON``.
///
/// `image`, `version`, `entrypoint`, `args`, `inputs`, `outputs`, `log` and `onNode` are fixed for life and
/// make up the plan's identity; `active`, `resources`, `annotations` and `serviceAccount` may change.
public struct Plan: Sendable, Equatable {
    /// The image name without its tag: `localhost:5000/repo/train`.
    public let image: String
    /// The image tag: `v1.0`.
    public let version: String
    /// Empty means "the image's own ENTRYPOINT"; an empty list in the spec means the same.
    public let entrypoint: [String]
    /// Empty means "the image's own CMD".
    public let args: [String]
    /// In the spec's order (the order Runs list their inputs in).
    public let inputs: [PlanInput]
    public let outputs: [PlanOutput]
    /// Tags of the log Data; nil when the plan keeps no log.
    public let log: TagSet?
    /// Sorted by mode, key, value; no duplicates.
    public let onNode: [OnNodeLabel]
    public var active: Bool
    public var resources: [String: ResourceQuantity]
    /// Sorted by key, value; no duplicates.
    public var annotations: [PlanAnnotation]
    public var serviceAccount: String?

    public static let maximumImageLength = 512
    public static let maximumVersionLength = 128
    public static let maximumServiceAccountLength = 63
    /// The smallest memory limit podman accepts (6 MiB).
    public static let minimumMemoryBytes: Int64 = 6 << 20

    /// `image:version`, as the API shows it.
    public var imageReference: String { "\(image):\(version)" }
}

extension Plan {
    /// Validates `spec` against every registration rule and normalizes it; absent resources get
    /// ``defaultResources``.
    /// - Parameter runnable: also apply the rules that say whether a local container can run the plan at all
    ///   (no `:` or `,` in a mount path, an image not starting with `-`, cpu and memory limits that fit in 64
    ///   bits, cpu above 0, memory at least ``minimumMemoryBytes``). A store reading plans registered before
    ///   those rules existed passes false, so such a plan still loads (its Runs fail with the executor's reason).
    /// - Throws: ``PlanValidationError`` listing every problem found.
    public init(validating spec: PlanSpecJSON, runnable: Bool = true) throws(PlanValidationError) {
        var problems = ProblemList()
        let (image, version) = Self.splitImage(spec.image, runnable: runnable, into: &problems)

        if spec.inputs.isEmpty { problems.add(.missing, at: "inputs", "a plan needs at least one input") }
        var inputs: [PlanInput] = []
        for (index, input) in spec.inputs.enumerated() {
            let path = Self.cleanPath(input.path, at: "inputs[\(index)].path", runnable: runnable, into: &problems)
            if let checked = Self.inputTags(input.tags, at: "inputs[\(index)].tags", into: &problems) {
                inputs.append(
                    PlanInput(
                        path: path,
                        tags: checked.all,
                        userTags: checked.user,
                        knitId: checked.knitId,
                        timestamp: checked.timestamp
                    )
                )
            }
        }
        var outputs: [PlanOutput] = []
        for (index, output) in spec.outputs.enumerated() {
            let path = Self.cleanPath(output.path, at: "outputs[\(index)].path", runnable: runnable, into: &problems)
            Self.checkNoSystemTags(output.tags, at: "outputs[\(index)].tags", into: &problems)
            outputs.append(PlanOutput(path: path, tags: output.tags))
        }
        if let log = spec.log { Self.checkNoSystemTags(log.tags, at: "log.tags", into: &problems) }
        Self.checkOverlaps(
            spec.inputs.map(\.path) + spec.outputs.map(\.path),
            inputCount: spec.inputs.count,
            into: &problems
        )

        var onNode = Set<OnNodeLabel>()
        for mode in OnNodeMode.allCases {
            let texts: [String]?
            switch mode {
            case .may: texts = spec.onNode?.may
            case .prefer: texts = spec.onNode?.prefer
            case .must: texts = spec.onNode?.must
            }
            for (index, text) in (texts ?? []).enumerated() {
                do { onNode.insert(try OnNodeLabel(mode: mode, parsing: text)) } catch {
                    problems.add(.onNode, at: "on_node.\(mode.rawValue)[\(index)]", error.description)
                }
            }
        }

        var annotations = Set<PlanAnnotation>()
        for (index, text) in (spec.annotations ?? []).enumerated() {
            do { annotations.insert(try PlanAnnotation(parsing: text)) } catch {
                problems.add(.annotation, at: "annotations[\(index)]", error.description)
            }
        }

        var resources = Self.defaultResources
        for (key, text) in spec.resources ?? [:] {
            if let quantity = Self.resource(key: key, text: text, runnable: runnable, into: &problems) {
                resources[key] = quantity
            }
        }

        let serviceAccount = Self.serviceAccount(spec.serviceAccount, into: &problems)

        try problems.check()
        self.init(
            image: image,
            version: version,
            entrypoint: spec.entrypoint ?? [],
            args: spec.args ?? [],
            inputs: inputs,
            outputs: outputs,
            log: spec.log?.tags,
            onNode: onNode.sorted(),
            active: spec.active ?? true,
            resources: resources,
            annotations: annotations.sorted(),
            serviceAccount: serviceAccount
        )
    }

    /// The spec this plan was made from, normalized: validating it again gives an equal plan, so a store
    /// may keep specs and re-validate them on load.
    public var spec: PlanSpecJSON {
        PlanSpecJSON(
            image: imageReference,
            entrypoint: entrypoint.isEmpty ? nil : entrypoint,
            args: args.isEmpty ? nil : args,
            annotations: annotations.isEmpty ? nil : annotations.map(\.description),
            inputs: inputs.map(\.mountpoint),
            outputs: outputs.map(\.mountpoint),
            log: log.map(LogPointJSON.init),
            active: active,
            resources: resources.mapValues(\.text),
            onNode: onNodeJSON,
            serviceAccount: serviceAccount
        )
    }

    /// `on_node` as the API shows it; nil when the plan has none.
    public var onNodeJSON: OnNodeJSON? {
        guard !onNode.isEmpty else { return nil }
        func labels(_ mode: OnNodeMode) -> [String]? {
            let texts = onNode.filter { $0.mode == mode }.map(\.description)
            return texts.isEmpty ? nil : texts
        }
        return OnNodeJSON(may: labels(.may), prefer: labels(.prefer), must: labels(.must))
    }

    /// `PlanSummary` for this plan registered as `planId`.
    public func summary(planId: String) -> PlanSummaryJSON {
        PlanSummaryJSON(
            planId: planId,
            image: imageReference,
            entrypoint: entrypoint.isEmpty ? nil : entrypoint,
            args: args.isEmpty ? nil : args,
            annotations: annotations.isEmpty ? nil : annotations.map(\.description)
        )
    }

    // MARK: - Mutable fields

    /// Applies `PUT /plans/{id}/resources`: `set` first, then `unset` (so unset wins, as in Knitfab).
    /// Unsetting `cpu` or `memory` removes the limit rather than restoring the default (Knitfab v1.6.1).
    public mutating func apply(_ change: PlanResourceChangeJSON) throws(PlanValidationError) {
        var problems = ProblemList()
        var updated = resources
        for (key, text) in change.set {
            if let quantity = Self.resource(key: key, text: text, into: &problems) { updated[key] = quantity }
        }
        for key in change.unset { updated[key] = nil }
        try problems.check()
        resources = updated
    }

    /// Applies `PUT /plans/{id}/annotations`: `remove_key`, `remove`, then `add`; idempotent.
    public mutating func apply(_ change: PlanAnnotationChangeJSON) throws(PlanValidationError) {
        var problems = ProblemList()
        func parse(_ texts: [String], _ field: String) -> [PlanAnnotation] {
            var parsed: [PlanAnnotation] = []
            for (index, text) in texts.enumerated() {
                do { parsed.append(try PlanAnnotation(parsing: text)) } catch {
                    problems.add(.annotation, at: "\(field)[\(index)]", error.description)
                }
            }
            return parsed
        }
        let removals = Set(parse(change.remove, "remove"))
        let additions = parse(change.add, "add")
        try problems.check()
        let removedKeys = Set(change.removeKey.map { Tag.trimmed(Substring($0)) })
        var updated = Set(annotations.filter { !removedKeys.contains($0.key) && !removals.contains($0) })
        updated.formUnion(additions)
        annotations = updated.sorted()
    }

    /// Sets (or with nil or an empty name, removes) the service account.
    public mutating func setServiceAccount(_ name: String?) throws(PlanValidationError) {
        var problems = ProblemList()
        let checked = Self.serviceAccount(name, into: &problems)
        try problems.check()
        serviceAccount = checked
    }

    // MARK: - Rules

    /// Splits `host[:port]/repo/name:tag` at the last `:` after the last `/` (a port is not a tag).
    static func splitImage(_ text: String, runnable: Bool = true, into problems: inout ProblemList)
        -> (String, String)
    {
        let reference = Tag.trimmed(Substring(text))
        guard !reference.isEmpty else {
            problems.add(.image, at: "image", "image is required (IMAGE:TAG)")
            return ("", "")
        }
        // podman would read such a name as one of its own options; the executor refuses it at every start.
        if runnable, reference.hasPrefix("-") {
            problems.add(.image, at: "image", "\(quoted(reference)) starts with '-', which no image name does")
        }
        if reference.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 }) {
            problems.add(.image, at: "image", "\(quoted(reference)) contains white space")
        }
        let lastSlash = reference.lastIndex(of: "/")
        let nameStart = lastSlash.map { reference.index(after: $0) } ?? reference.startIndex
        guard let colon = reference[nameStart...].lastIndex(of: ":") else {
            problems.add(.image, at: "image", "\(quoted(reference)) has no tag (IMAGE:TAG, e.g. train:v1.0)")
            return (reference, "")
        }
        let image = String(reference[..<colon])
        let version = String(reference[reference.index(after: colon)...])
        if image.isEmpty || image.hasSuffix("/") {
            problems.add(.image, at: "image", "\(quoted(reference)) has an empty image name")
        }
        if version.isEmpty { problems.add(.image, at: "image", "\(quoted(reference)) has an empty tag") }
        if image.utf8.count > maximumImageLength {
            problems.add(.image, at: "image", "image name is longer than \(maximumImageLength) bytes")
        }
        if version.utf8.count > maximumVersionLength {
            problems.add(.image, at: "image", "image tag is longer than \(maximumVersionLength) bytes")
        }
        return (image, version)
    }

    /// The path with one trailing `/` dropped, if it is then absolute and clean (what Go's
    /// `filepath.Clean` would leave unchanged, and not `/` itself).
    static func cleanPath(_ text: String, at location: String, runnable: Bool = true, into problems: inout ProblemList)
        -> String
    {
        var path = Substring(text)
        if path.count > 1, path.hasSuffix("/") { path.removeLast() }
        guard !path.isEmpty else {
            problems.add(.path, at: location, "path is required")
            return ""
        }
        // A container volume is `host:container:options` with options split at ',': a path holding either
        // would be read as something else, so no container could be started for the plan.
        if runnable, path.contains(":") || path.contains(",") {
            problems.add(
                .path,
                at: location,
                "\(quoted(text)) contains ':' or ',', which a container mount cannot hold"
            )
        }
        guard path.hasPrefix("/") else {
            problems.add(.path, at: location, "\(quoted(text)) is not absolute")
            return String(path)
        }
        guard path != "/" else {
            problems.add(.path, at: location, "\(quoted(text)) is the root directory")
            return String(path)
        }
        let components = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        if components.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            problems.add(
                .path,
                at: location,
                "\(quoted(text)) is not clean (no '//', '.' or '..' components; write it as \(quoted(lexicallyCleaned(path))))"
            )
        }
        return String(path)
    }

    /// What `filepath.Clean` makes of an absolute path, to suggest in a message.
    static func lexicallyCleaned(_ path: Substring) -> String {
        var parts: [Substring] = []
        for component in path.split(separator: "/") {
            if component == "." { continue }
            if component == ".." {
                if !parts.isEmpty { parts.removeLast() }
                continue
            }
            parts.append(component)
        }
        return "/" + parts.joined(separator: "/")
    }

    struct CheckedInputTags {
        var all: TagSet
        var user: TagSet
        var knitId: String?
        var timestamp: KnitTime?
    }

    /// Input tags: at least one; of the system keys only `knit#id` and `knit#timestamp`, each once.
    static func inputTags(_ tags: TagSet, at location: String, into problems: inout ProblemList) -> CheckedInputTags? {
        var checked = CheckedInputTags(all: [], user: [])
        let before = problems.problems.count
        if tags.isEmpty { problems.add(.missing, at: location, "an input needs at least one tag") }
        var normalized: [Tag] = []
        for tag in tags {
            switch tag.key {
            case SystemTag.id:
                if checked.knitId != nil {
                    problems.add(.systemTag, at: location, item: tag.description, "knit#id may be given only once")
                }
                checked.knitId = tag.value
                normalized.append(tag)
            case SystemTag.timestamp:
                do {
                    let time = try KnitTime(rfc3339: tag.value)
                    if checked.timestamp != nil, checked.timestamp != time {
                        problems.add(
                            .systemTag,
                            at: location,
                            item: tag.description,
                            "knit#timestamp may be given only once"
                        )
                    }
                    checked.timestamp = time
                    normalized.append(Tag(key: SystemTag.timestamp, value: time.description))
                } catch {
                    problems.add(
                        .systemTag,
                        at: location,
                        item: tag.description,
                        "knit#timestamp: \(error.description)"
                    )
                }
            case _ where tag.isSystem:
                problems.add(
                    .systemTag,
                    at: location,
                    item: tag.description,
                    "\(quoted(tag.description)): only knit#id and knit#timestamp may be required by an input"
                )
            default:
                normalized.append(tag)
            }
        }
        guard problems.problems.count == before else { return nil }
        checked.all = TagSet(normalized)
        checked.user = TagSet(normalized.filter { !$0.isSystem })
        return checked
    }

    static func checkNoSystemTags(_ tags: TagSet, at location: String, into problems: inout ProblemList) {
        for tag in tags where tag.isSystem {
            problems.add(
                .systemTag,
                at: location,
                item: tag.description,
                "\(quoted(tag.description)): knit# tags are set by the system, not by a plan"
            )
        }
    }

    /// No mountpoint may equal another or lie inside another (the log is not a mountpoint).
    static func checkOverlaps(_ rawPaths: [String], inputCount: Int, into problems: inout ProblemList) {
        func location(_ index: Int) -> String {
            index < inputCount ? "inputs[\(index)].path" : "outputs[\(index - inputCount)].path"
        }
        // Paths that are not absolute and clean already have their own problem; comparing them says nothing.
        let paths = rawPaths.map { path -> String in
            var trimmed = Substring(path)
            if trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
            return trimmed.hasPrefix("/") && trimmed != "/" ? String(trimmed) : ""
        }
        for i in paths.indices where !paths[i].isEmpty {
            for j in paths.indices where j > i && !paths[j].isEmpty {
                let a = paths[i]
                let b = paths[j]
                if a == b {
                    problems.add(.overlap, at: location(j), "\(quoted(b)) is also used by \(location(i))")
                } else if b.hasPrefix(a + "/") {
                    problems.add(.overlap, at: location(j), "\(quoted(b)) is inside \(location(i)) \(quoted(a))")
                } else if a.hasPrefix(b + "/") {
                    problems.add(.overlap, at: location(i), "\(quoted(a)) is inside \(location(j)) \(quoted(b))")
                }
            }
        }
    }

    static func resource(key rawKey: String, text: String, runnable: Bool = true, into problems: inout ProblemList)
        -> ResourceQuantity?
    {
        let key = Tag.trimmed(Substring(rawKey))
        let location = "resources.\(key)"
        if let problem = LabelSyntax.keyProblem(key) {
            problems.add(.resource, at: location, "resource name \(quoted(key)): \(problem)")
            return nil
        }
        let quantity: ResourceQuantity
        do { quantity = try ResourceQuantity(parsing: text) } catch {
            problems.add(.resource, at: location, error.description)
            return nil
        }
        guard runnable else { return quantity }
        // A limit that does not fit in 64 bits used to become "no limit" (and count as nothing against the
        // scheduler's budget); 0 and tiny memory limits could only fail every Run at its start.
        switch key {
        case "cpu":
            guard let millis = quantity.scaled(by: 1000) else {
                problems.add(.resource, at: location, "\(quoted(quantity.text)) is too large for a cpu limit")
                return nil
            }
            guard millis > 0 else {
                problems.add(
                    .resource,
                    at: location,
                    "\(quoted(quantity.text)): a cpu limit must be above 0 (e.g. 100m)"
                )
                return nil
            }
        case "memory":
            guard let bytes = quantity.scaled(by: 1) else {
                problems.add(.resource, at: location, "\(quoted(quantity.text)) is too large for a memory limit")
                return nil
            }
            guard bytes >= minimumMemoryBytes else {
                problems.add(
                    .resource,
                    at: location,
                    "\(quoted(quantity.text)): a memory limit must be at least 6Mi (the container runtime's minimum)"
                )
                return nil
            }
        default:
            break
        }
        return quantity
    }

    static func serviceAccount(_ name: String?, into problems: inout ProblemList) -> String? {
        guard let name = name.map({ Tag.trimmed(Substring($0)) }), !name.isEmpty else { return nil }
        if name.utf8.count > maximumServiceAccountLength {
            problems.add(
                .serviceAccount,
                at: "service_account",
                "\(quoted(name)) is longer than \(maximumServiceAccountLength) characters"
            )
        }
        return name
    }
}

/// Kubernetes' syntax for label keys and values (also used for resource names).
public enum LabelSyntax {
    /// Why `key` is not a label key (`[prefix/]name`), or nil when it is one.
    public static func keyProblem(_ key: String) -> String? {
        guard !key.isEmpty else { return "key is empty" }
        var name = Substring(key)
        if let slash = key.firstIndex(of: "/") {
            let prefix = key[..<slash]
            name = key[key.index(after: slash)...]
            guard !prefix.isEmpty, prefix.utf8.count <= 253, isDNSSubdomain(prefix) else {
                return "key prefix \(quoted(String(prefix))) must be a DNS subdomain of at most 253 characters"
            }
        }
        guard !name.isEmpty, name.utf8.count <= 63, isLabelName(name) else {
            return "key name \(quoted(String(name))) must be 1-63 characters of [A-Za-z0-9-_.], "
                + "starting and ending with a letter or digit"
        }
        return nil
    }

    /// Why `value` is not a label value, or nil when it is one (empty is fine).
    public static func valueProblem(_ value: String) -> String? {
        guard value.isEmpty || (value.utf8.count <= 63 && isLabelName(Substring(value))) else {
            return "value \(quoted(value)) must be at most 63 characters of [A-Za-z0-9-_.], "
                + "starting and ending with a letter or digit"
        }
        return nil
    }

    /// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`
    static func isLabelName(_ text: Substring) -> Bool {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, let last = bytes.last, isAlphanumeric(first), isAlphanumeric(last) else {
            return false
        }
        return bytes.allSatisfy {
            isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")
        }
    }

    /// Lower-case RFC 1123 labels joined by dots.
    static func isDNSSubdomain(_ text: Substring) -> Bool {
        text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            let bytes = Array(label.utf8)
            guard let first = bytes.first, let last = bytes.last, bytes.count <= 63,
                isLowerAlphanumeric(first), isLowerAlphanumeric(last)
            else { return false }
            return bytes.allSatisfy { isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") }
        }
    }

    static func isAlphanumeric(_ byte: UInt8) -> Bool {
        isLowerAlphanumeric(byte) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
    }

    static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
    }
}
