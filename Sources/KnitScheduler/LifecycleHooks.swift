public import KnitCore
internal import KnitHTTP
internal import KnitYAML
public import Logging

#if canImport(Glibc)
    internal import Glibc
#endif

/// The lifecycle hooks of a scheduler, as Knitfab's `hooks.lifecycle-hooks`: URLs POSTed the Run Detail JSON
/// before (`before`) and after (`after`) every status change the scheduler makes.
public struct LifecycleHookConfiguration: Sendable, Equatable {
    public var before: [String]
    public var after: [String]

    public init(before: [String] = [], after: [String] = []) {
        self.before = before
        self.after = after
    }

    public var isEmpty: Bool { before.isEmpty && after.isEmpty }

    /// Reads a hooks file: `before:` and `after:` lists of http(s) URLs at the top, or Knitfab's own layout
    /// (`hooks: {lifecycle-hooks: {before: …, after: …}}`, or `lifecycle-hooks:` at the top). An empty file
    /// means no hooks.
    /// - Throws: ``LifecycleHookConfigurationError`` naming `file`, line and column.
    public static func parse(_ text: String, file: String) throws(LifecycleHookConfigurationError) -> Self {
        let root: YAMLNode?
        do { root = try parseYAML(text) } catch { throw .init(error.described(file: file)) }
        guard var node = root else { return Self() }
        for wrapper in ["hooks", "lifecycle-hooks"] {
            guard let entries = node.entries, entries.contains(where: { $0.key == wrapper }) else { continue }
            guard entries.count == 1, let inner = entries.first?.value else {
                let extra = entries.first { $0.key != wrapper }!
                throw .init(file, extra.keyMark, "unknown key '\(extra.key)' beside '\(wrapper)'")
            }
            node = inner
        }
        guard let entries = node.entries else {
            throw .init(file, node.mark, "expected a mapping with 'before' and 'after', found \(node.kindDescription)")
        }
        var configuration = Self()
        for entry in entries {
            let urls = try urlList(entry.value, file: file)
            switch entry.key {
            case "before": configuration.before = urls
            case "after": configuration.after = urls
            default: throw .init(file, entry.keyMark, "unknown key '\(entry.key)' (expected 'before' or 'after')")
            }
        }
        return configuration
    }

    private static func urlList(_ node: YAMLNode, file: String) throws(LifecycleHookConfigurationError) -> [String] {
        if node.isNull { return [] }
        guard let items = node.items else {
            throw .init(file, node.mark, "expected a list of URLs, found \(node.kindDescription)")
        }
        var urls: [String] = []
        for item in items {
            guard let url = item.scalar else {
                throw .init(file, item.mark, "expected a URL, found \(item.kindDescription)")
            }
            if let problem = urlProblem(url) { throw .init(file, item.mark, "'\(url)' \(problem)") }
            urls.append(url)
        }
        return urls
    }

    /// Why `url` cannot be a hook (nil: it can): http or https with a host, and nothing libcurl would read as
    /// a second field.
    static func urlProblem(_ url: String) -> String? {
        let lower = url.lowercased()
        guard let scheme = ["http://", "https://"].first(where: { lower.hasPrefix($0) }) else {
            return "is not an http:// or https:// URL"
        }
        if url.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) { return "contains a space or a control character" }
        let rest = url.dropFirst(scheme.count)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let host = authority.split(separator: "@").last.map(String.init) ?? ""
        if host.isEmpty || host.hasPrefix(":") { return "has no host" }
        return nil
    }
}

/// A hooks file that cannot be used: `FILE:LINE:COLUMN: error: problem`.
public struct LifecycleHookConfigurationError: Error, Sendable, CustomStringConvertible {
    public let description: String

    init(_ description: String) { self.description = description }

    init(_ file: String, _ mark: YAMLMark, _ problem: String) {
        description = "\(file):\(mark.line):\(mark.column): error: \(problem)"
    }
}

/// What the before hooks said about one status change.
public enum HookVerdict: Sendable, Equatable {
    /// Every before hook answered 2xx: make the change. `environment`: the variables the hooks asked for
    /// (only for the change to `starting`; later hooks win).
    case proceed(environment: [String: String])
    /// Some hook did not answer 2xx (or not at all): the Run stays where it is and is asked about again later.
    case refused(reason: String)
}

/// The before hooks as the driver calls them, on its own thread, before each status change it makes.
public protocol RunHooks: Sendable {
    /// Asks every before hook, in order, whether `runId` may move on to `next` now.
    func before(runId: String, next: RunStatus) -> HookVerdict
}

/// ``RunHooks`` over HTTP: POSTs the Run Detail JSON (the Run as it is before the change) to each `before` URL
/// in turn and stops at the first that does not answer 2xx within ``timeoutSeconds``.
public final class HTTPRunHooks: RunHooks {
    public let urls: [String]
    public let timeoutSeconds: Int
    private let detail: @Sendable (String) throws -> [UInt8]?
    private let client: HTTPClient
    private let logger: Logger

    /// - Parameter detail: the Run Detail JSON of a Run as the API shows it, nil for a Run that is gone.
    public init(
        urls: [String],
        timeoutSeconds: Int = 10,
        logger: Logger,
        detail: @escaping @Sendable (String) throws -> [UInt8]?
    ) {
        self.urls = urls
        self.timeoutSeconds = timeoutSeconds
        self.detail = detail
        self.logger = logger
        client = HTTPClient(
            connectTimeoutSeconds: min(timeoutSeconds, 5),
            stallTimeoutSeconds: timeoutSeconds,
            userAgent: "knit-scheduler"
        )
    }

    public func before(runId: String, next: RunStatus) -> HookVerdict {
        guard !urls.isEmpty else { return .proceed(environment: [:]) }
        let body: [UInt8]
        do {
            guard let found = try detail(runId) else { return .refused(reason: "the run is gone") }
            body = found
        } catch {
            return .refused(reason: "cannot read the run: \(error)")
        }
        var environment: [String: String] = [:]
        for url in urls {
            let response: HTTPResponse
            do {
                response = try post(url: url, body: body, headers: [("X-Knit-Run-Id", runId)], client: client)
            } catch {
                return .refused(reason: "lifecycle hook \(url) did not answer: \(error.code)")
            }
            guard response.isSuccess else {
                return .refused(reason: "lifecycle hook \(url) answered \(response.status)")
            }
            guard next == .starting else { continue }
            switch Self.environment(contentType: response.headers["Content-Type"], body: response.body) {
            case .success(let found): environment.merge(found) { _, later in later }
            case .failure(let problem): return .refused(reason: "lifecycle hook \(url): \(problem.description)")
            }
        }
        logger.debug("before hooks passed", metadata: ["run.id": "\(runId)", "run.status.next": "\(next)"])
        return .proceed(environment: environment)
    }

    private func post(url: String, body: [UInt8], headers: [(String, String)], client: HTTPClient) throws(HTTPError)
        -> HTTPResponse
    {
        try Self.post(url: url, body: body, headers: headers, client: client, timeoutSeconds: timeoutSeconds)
    }

    /// POSTs `body` as JSON, giving up after about `timeoutSeconds` in all.
    static func post(
        url: String,
        body: [UInt8],
        headers: [(String, String)],
        client: HTTPClient,
        timeoutSeconds: Int
    ) throws(HTTPError) -> HTTPResponse {
        var fields = HTTPHeaders([("Content-Type", "application/json")])
        for (name, value) in headers { fields.append(name, value) }
        let deadline = ContinuousClock.now.advanced(by: .seconds(timeoutSeconds))
        let request = HTTPRequest(
            method: "POST",
            url: url,
            headers: fields,
            body: .bytes(body),
            isCancelled: { ContinuousClock.now >= deadline },
            maximumCollectedBody: 1 << 20
        )
        return try client.perform(request)
    }

    struct EnvironmentProblem: Error { let description: String }

    /// `{"knitfabExtension":{"env":{"NAME":"value"}}}` of a JSON answer; empty for any other answer. A name
    /// that is not a shell variable name, or a value that is not a string, is a problem.
    static func environment(contentType: String?, body: [UInt8]) -> Result<[String: String], EnvironmentProblem> {
        let type = contentType?.lowercased() ?? ""
        guard type.hasPrefix("application/json"), let json = JSONValue.parse(body),
            let env = json["knitfabExtension"]?["env"]
        else { return .success([:]) }
        guard case .object(let members) = env else {
            return .failure(EnvironmentProblem(description: "knitfabExtension.env is not an object"))
        }
        var found: [String: String] = [:]
        for (name, value) in members {
            guard isVariableName(name) else {
                return .failure(EnvironmentProblem(description: "environment variable name \"\(name)\" is not usable"))
            }
            guard let text = value.stringValue, !text.utf8.contains(0) else {
                return .failure(EnvironmentProblem(description: "environment variable \(name) is not a string"))
            }
            found[name] = text
        }
        return .success(found)
    }

    /// `[A-Za-z_][A-Za-z0-9_]*`: what a shell, podman and Kubernetes all take.
    static func isVariableName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(0x30...0x39).contains(first) else { return false }
        return name.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x5F
        }
    }
}
