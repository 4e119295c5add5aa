public import KnitCore
internal import KnitYAML

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// Where and how to reach one Knit server: what a knitprofile handout holds and the profile store keeps.
public struct KnitProfile: Sendable, Equatable {
    /// Absolute `http(s)://host:port/api` URL, without a trailing slash.
    public let apiRoot: String
    /// The CA certificate as the handout carries it: base64 of PEM. Nil means the system trust store.
    public let caBase64: String?
    /// Bearer token; nil for servers without authentication.
    public let token: String?

    /// Validates and normalizes.
    /// - Throws: ``KnitClientError/Code/profile`` when `apiRoot` is not an absolute http(s) URL or `caBase64`
    ///   is not base64 of a PEM block.
    public init(apiRoot: String, caBase64: String?, token: String?) throws(KnitClientError) {
        guard Self.isAbsoluteHTTPURL(apiRoot) else {
            throw KnitClientError(.profile, "apiRoot '\(apiRoot)' is not an absolute http(s) URL")
        }
        var root = Substring(apiRoot)
        while root.hasSuffix("/") { root.removeLast() }
        self.apiRoot = String(root)
        let ca = caBase64.map(Self.withoutWhitespace).flatMap { $0.isEmpty ? nil : $0 }
        if let ca, Self.decodePEM(ca) == nil {
            throw KnitClientError(.profile, "cert.ca is not base64 of a PEM certificate")
        }
        self.caBase64 = ca
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The CA certificate in PEM, decoded from ``caBase64``.
    public var caPEM: String? { caBase64.flatMap(Self.decodePEM) }

    /// Reads the knitprofile handout at `path`.
    public static func loadHandout(path: String) throws(KnitClientError) -> KnitProfile {
        guard FileSystem.exists(path) else { throw KnitClientError(.profile, "knitprofile \(path) is not found") }
        return try parseHandout(String(decoding: try FileSystem.readFile(path), as: UTF8.self), source: path)
    }

    /// Reads a knitprofile handout (`apiRoot`, `cert: {ca}`, optional `token`).
    /// - Parameter source: named in error messages.
    public static func parseHandout(_ text: String, source: String) throws(KnitClientError) -> KnitProfile {
        let root: YAMLNode?
        do { root = try parseYAML(text) } catch {
            throw KnitClientError(.profile, "knitprofile \(error.described(file: source))", underlying: error)
        }
        guard let root, root.entries != nil else {
            throw KnitClientError(.profile, "knitprofile \(source) is not a YAML mapping")
        }
        do { return try profile(from: root) } catch {
            throw KnitClientError(.profile, "knitprofile \(source): \(error.message)", underlying: error)
        }
    }

    /// Reads the `{apiRoot, cert: {ca}, token}` mapping used by handouts and store entries alike.
    static func profile(from node: YAMLNode) throws(KnitClientError) -> KnitProfile {
        guard let apiRoot = node["apiRoot"]?.scalar, !apiRoot.isEmpty else {
            throw KnitClientError(.profile, "\(node.mark): apiRoot is missing")
        }
        var ca: String?
        if let cert = node["cert"], !cert.isNull {
            guard cert.entries != nil else {
                throw KnitClientError(.profile, "\(cert.mark): cert must be a mapping, not \(cert.kindDescription)")
            }
            if let caNode = cert["ca"], !caNode.isNull {
                guard let text = caNode.scalar else {
                    throw KnitClientError(.profile, "\(caNode.mark): cert.ca must be a string")
                }
                ca = text
            }
        }
        var token: String?
        if let tokenNode = node["token"], !tokenNode.isNull {
            guard let text = tokenNode.scalar else {
                throw KnitClientError(.profile, "\(tokenNode.mark): token must be a string")
            }
            token = text
        }
        return try KnitProfile(apiRoot: apiRoot, caBase64: ca, token: token)
    }

    var yamlValue: YAMLValue {
        var fields = [YAMLPair("apiRoot", .string(apiRoot))]
        fields.append(YAMLPair("cert", .mapping(caBase64.map { [YAMLPair("ca", .string($0))] } ?? [])))
        if let token { fields.append(YAMLPair("token", .string(token))) }
        return .mapping(fields)
    }

    static func isAbsoluteHTTPURL(_ text: String) -> Bool {
        let lower = text.lowercased()
        let rest: Substring
        if lower.hasPrefix("https://") {
            rest = lower.dropFirst(8)
        } else if lower.hasPrefix("http://") {
            rest = lower.dropFirst(7)
        } else {
            return false
        }
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let host = authority.split(separator: "@").last.map(Substring.init) ?? ""
        return !host.isEmpty && !host.hasPrefix(":") && !text.contains(where: { $0 == " " || $0 == "\n" })
    }

    static func decodePEM(_ base64: String) -> String? {
        guard let data = Data(base64Encoded: base64) else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        let lines = text.split(whereSeparator: \.isNewline)
        guard let begin = lines.firstIndex(where: { $0.hasPrefix("-----BEGIN ") }),
            lines[begin...].contains(where: { $0.hasPrefix("-----END ") })
        else { return nil }
        return text
    }

    private static func withoutWhitespace(_ text: String) -> String {
        String(text.unicodeScalars.filter { !$0.properties.isWhitespace }.map(Character.init))
    }
}

/// The profile store: a YAML map `name: {apiRoot, cert: {ca}, token}` in one file (0600, directory 0700).
public struct ProfileStore: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// `~/.knit/profile`.
    public static var defaultPath: String { FileSystem.homeDirectory() + "/.knit/profile" }

    /// Every profile, in file order.
    /// - Throws: ``KnitClientError/Code/profile`` when the store is missing ("Please try `knit init` first")
    ///   or malformed.
    public func load() throws(KnitClientError) -> [(name: String, profile: KnitProfile)] {
        guard FileSystem.exists(path) else {
            throw KnitClientError(.profile, "knitprofile store (\(path)) is not found. Please try `knit init` first")
        }
        return try entries()
    }

    /// The profile named `name`.
    /// - Throws: ``KnitClientError/Code/profile`` "profile 'NAME' not found in the profile store".
    public func profile(named name: String) throws(KnitClientError) -> KnitProfile {
        guard let found = try load().first(where: { $0.name == name }) else {
            throw KnitClientError(.profile, "profile '\(name)' not found in the profile store")
        }
        return found.profile
    }

    /// Adds or replaces `name`, creating the store (and its directory, 0700) when missing.
    public func save(_ profile: KnitProfile, as name: String) throws(KnitClientError) {
        var all = FileSystem.exists(path) ? try entries() : []
        if let index = all.firstIndex(where: { $0.name == name }) {
            all[index].profile = profile
        } else {
            all.append((name, profile))
        }
        try FileSystem.makeDirectories(FileSystem.parentDirectory(of: path), mode: 0o700)
        let text = YAMLValue.mapping(all.map { YAMLPair($0.name, $0.profile.yamlValue) }).rendered()
        try FileSystem.writeAtomically(Array(text.utf8), to: path, mode: 0o600)
    }

    private func entries() throws(KnitClientError) -> [(name: String, profile: KnitProfile)] {
        let text = String(decoding: try FileSystem.readFile(path), as: UTF8.self)
        let root: YAMLNode?
        do { root = try parseYAML(text) } catch {
            throw KnitClientError(.profile, "knitprofile store \(error.described(file: path))", underlying: error)
        }
        guard let root, !root.isNull else { return [] }
        guard let entries = root.entries else {
            throw KnitClientError(.profile, "knitprofile store \(path) is not a YAML mapping")
        }
        var result: [(name: String, profile: KnitProfile)] = []
        for entry in entries {
            do { result.append((entry.key, try KnitProfile.profile(from: entry.value))) } catch {
                throw KnitClientError(.profile, "knitprofile store \(path): profile '\(entry.key)': \(error.message)")
            }
        }
        return result
    }
}

/// Where a command's profile and knitenv come from, per Knitfab's rules.
public enum ProfileResolution {
    /// `flag` if given; else the first line of the nearest `.knitprofile` at or above `directory`; else
    /// `directory` itself (absolute).
    public static func profileName(flag: String?, directory: String? = nil) throws(KnitClientError) -> String {
        if let flag, !flag.isEmpty { return flag }
        let start = try FileSystem.absolute(directory != nil ? directory! : try FileSystem.currentDirectory())
        var from = start
        while let file = FileSystem.findUpward(".knitprofile", from: from) {
            let text = String(decoding: try FileSystem.readFile(file, limit: 1 << 20), as: UTF8.self)
            let name = String(text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
                .trimmedWhitespace()
            if !name.isEmpty { return name }
            let directoryOfFile = FileSystem.parentDirectory(of: file)
            if directoryOfFile == "/" { break }
            from = FileSystem.parentDirectory(of: directoryOfFile)  // an empty .knitprofile names nothing
        }
        return start
    }

    /// The absolute path of the current directory: the profile name when nothing else names one.
    public static func currentDirectory() throws(KnitClientError) -> String { try FileSystem.currentDirectory() }

    /// Writes `directory/.knitprofile` (0600) naming `profileName`.
    public static func writeProjectFile(profileName: String, in directory: String) throws(KnitClientError) {
        let path = (directory.hasSuffix("/") ? directory : directory + "/") + ".knitprofile"
        try FileSystem.writeAtomically(Array((profileName + "\n").utf8), to: path, mode: 0o600)
    }

    /// The knitenv path: `flag` if given, else the nearest file named `knitenv` at or above `directory`.
    public static func knitenvPath(flag: String?, directory: String? = nil) throws(KnitClientError) -> String? {
        if let flag, !flag.isEmpty { return flag }
        let start = directory != nil ? directory! : try FileSystem.currentDirectory()
        return FileSystem.findUpward("knitenv", from: try FileSystem.absolute(start))
    }
}

/// A project's `knitenv`: tags for every pushed Data and default plan resources.
public struct KnitEnv: Sendable, Equatable {
    public var tags: [Tag]
    /// `resource:` entries in file order, values as written (`"1"`, `"1Gi"`).
    public var resources: [Resource]

    public struct Resource: Sendable, Equatable {
        public let name: String
        public let quantity: String
        public init(name: String, quantity: String) {
            self.name = name
            self.quantity = quantity
        }
    }

    public init(tags: [Tag] = [], resources: [Resource] = []) {
        self.tags = tags
        self.resources = resources
    }

    /// Loads `path`; nil `path` means no knitenv (an empty one). A given path that does not exist is an error.
    public static func load(path: String?) throws(KnitClientError) -> KnitEnv {
        guard let path else { return KnitEnv() }
        guard FileSystem.exists(path) else { throw KnitClientError(.profile, "knitenv \(path) is not found") }
        return try parse(String(decoding: try FileSystem.readFile(path), as: UTF8.self), source: path)
    }

    public static func parse(_ text: String, source: String) throws(KnitClientError) -> KnitEnv {
        let root: YAMLNode?
        do { root = try parseYAML(text) } catch {
            throw KnitClientError(.profile, "knitenv \(error.described(file: source))", underlying: error)
        }
        guard let root, !root.isNull else { return KnitEnv() }
        func fail(_ mark: YAMLMark, _ problem: String) -> KnitClientError {
            KnitClientError(.profile, "knitenv \(source):\(mark.line):\(mark.column): error: \(problem)")
        }
        guard root.entries != nil else { throw fail(root.mark, "expected a mapping, found \(root.kindDescription)") }
        var env = KnitEnv()
        if let tags = root["tag"], !tags.isNull {
            guard let items = tags.items else { throw fail(tags.mark, "tag must be a sequence of \"key:value\"") }
            for item in items {
                guard let text = item.scalar else { throw fail(item.mark, "a tag must be a \"key:value\" string") }
                let tag: Tag
                do { tag = try Tag(parsing: text) } catch { throw fail(item.mark, error.description) }
                guard !tag.isSystem else {
                    throw fail(item.mark, TagError(text: text, problem: .systemKey).description)
                }
                env.tags.append(tag)
            }
        }
        if let resources = root["resource"], !resources.isNull {
            guard let entries = resources.entries else { throw fail(resources.mark, "resource must be a mapping") }
            for entry in entries {
                guard let quantity = entry.value.scalar, !entry.value.isNull else {
                    throw fail(entry.value.mark, "resource '\(entry.key)' must have a quantity")
                }
                env.resources.append(Resource(name: entry.key, quantity: quantity))
            }
        }
        return env
    }
}

extension String {
    func trimmedWhitespace() -> String {
        var scalars = unicodeScalars[...]
        while let first = scalars.first, first.properties.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.properties.isWhitespace { scalars.removeLast() }
        return String(String.UnicodeScalarView(scalars))
    }
}
