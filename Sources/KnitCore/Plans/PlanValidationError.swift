/// Every reason a plan spec (or a change to a plan's mutable fields) was refused.
///
/// Validation does not stop at the first problem: a user fixing a plan file wants the whole list. Each
/// problem names where it is with a path in the spec's own key spelling (`inputs[1].path`,
/// `on_node.must[0]`, `resources.cpu`), so the API can send them as advice and the plan-file reader can map
/// them back to `line:col`. Problems about one tag of a tag set name the set (`inputs[0].tags`) and carry
/// the tag's text as `item`, because tag sets are normalized (sorted, de-duplicated) before validation.
public struct PlanValidationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of rule a problem broke.
    public enum Code: String, Sendable, Equatable {
        case image, path, overlap, missing, tag, systemTag, onNode, annotation, resource, serviceAccount
    }

    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public let code: Code
        /// Where, in spec keys: `image`, `inputs[0].path`, `outputs[1].tags`, `log.tags`, `annotations[2]`.
        public let path: String
        /// The offending element of a set or list at `path`, e.g. the tag `knit#transient:failed`.
        public let item: String?
        public let message: String

        public init(_ code: Code, at path: String, item: String? = nil, _ message: String) {
            self.code = code
            self.path = path
            self.item = item
            self.message = message
        }

        /// `inputs[0].path: "in/x" is not absolute`.
        public var description: String { "\(path): \(message)" }
    }

    public let problems: [Problem]

    public init(problems: [Problem]) {
        precondition(!problems.isEmpty, "a PlanValidationError needs at least one problem")
        self.problems = problems
    }

    public var codes: [Code] { problems.map(\.code) }

    /// One problem per line.
    public var description: String { problems.map(\.description).joined(separator: "\n") }

    /// The 400 the API answers with; the problems are the advice.
    public var apiError: KnitAPIError { .badRequest("invalid plan spec", advice: description) }
}

/// Collects problems while a spec is checked.
struct ProblemList {
    var problems: [PlanValidationError.Problem] = []

    mutating func add(_ code: PlanValidationError.Code, at path: String, item: String? = nil, _ message: String) {
        problems.append(.init(code, at: path, item: item, message))
    }

    func check() throws(PlanValidationError) {
        if !problems.isEmpty { throw PlanValidationError(problems: problems) }
    }
}

/// Text quoted for a message, shortened so a megabyte annotation does not become a megabyte error.
func quoted(_ text: String) -> String {
    let shown = text.count > 80 ? String(text.prefix(80)) + "…" : text
    return "\"\(shown)\""
}
