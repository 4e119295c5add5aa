internal import KnitArchive
public import KnitCore
internal import KnitYAML

#if canImport(Glibc)
    internal import Glibc
#endif

/// What `knit plan template` needs from an image config (the `config` object of an OCI / Docker image config).
public struct ImageConfig: Sendable, Equatable {
    public var entrypoint: [String]?
    public var cmd: [String]?
    /// Declared `VOLUME` paths, sorted (the config holds them as object keys, so there is no order to keep).
    public var volumes: [String]
    /// Empty when the image does not set one; templates then resolve relative paths against `/`.
    public var workingDir: String

    public init(entrypoint: [String]? = nil, cmd: [String]? = nil, volumes: [String] = [], workingDir: String = "") {
        self.entrypoint = entrypoint
        self.cmd = cmd
        self.volumes = volumes
        self.workingDir = workingDir
    }

    /// Parses an image config document; nil unless it looks like one (`os` or `architecture`, and `rootfs`).
    ///
    /// The shape test is what lets a reader sniff every small JSON file of an archive: Docker's per-layer
    /// `json` files and OCI manifests/indexes have no `rootfs`.
    public init?(json bytes: some Collection<UInt8>) {
        guard let document = JSONValue.parse(bytes), case .object = document,
            document["os"] != nil || document["architecture"] != nil,
            case .object = document["rootfs"]
        else { return nil }
        self.init()
        guard let config = document["config"], case .object = config else { return }
        entrypoint = Self.strings(config["Entrypoint"])
        cmd = Self.strings(config["Cmd"])
        if case .object(let members) = config["Volumes"] { volumes = members.map(\.0).sorted() }
        workingDir = config["WorkingDir"]?.stringValue ?? ""
    }

    private static func strings(_ value: JSONValue?) -> [String]? {
        guard let items = value?.arrayValue else { return nil }
        return items.compactMap(\.stringValue)
    }
}

/// One image found in a `docker save` archive.
public struct ArchivedImage: Sendable, Equatable {
    /// `RepoTags` from `manifest.json` (empty for an image saved by id, or found only by sniffing).
    public var repoTags: [String]
    public var config: ImageConfig

    public init(repoTags: [String], config: ImageConfig) {
        self.repoTags = repoTags
        self.config = config
    }
}

/// Reads the images of a `docker save` / `podman save` archive without holding its layers.
public enum ImageArchive {
    /// Entries larger than this are never read: image configs are kilobytes, layers are what is skipped.
    static let sniffLimit = 8 << 20

    /// The images of the archive read from `fileDescriptor` (stdin, or an opened `-i` file), which stays open.
    /// - Parameter source: names the input in messages (`STDIN`, the file path).
    public static func images(fileDescriptor: Int32, source: String) throws(KnitClientError) -> [ArchivedImage] {
        let reader: ArchiveEntryReader
        do { reader = try ArchiveEntryReader(fileDescriptor: fileDescriptor) } catch {
            throw archiveError(error, source: source)
        }
        return try images(from: reader, source: source)
    }

    /// The images of the archive whose bytes `read` pulls (fills the buffer, returns the count, 0 at the end).
    public static func images(
        source: String,
        read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int
    ) throws(KnitClientError) -> [ArchivedImage] {
        let reader: ArchiveEntryReader
        do { reader = try ArchiveEntryReader(read: read) } catch { throw archiveError(error, source: source) }
        return try images(from: reader, source: source)
    }

    private static func images(from reader: consuming ArchiveEntryReader, source: String) throws(KnitClientError)
        -> [ArchivedImage]
    {
        var manifest: [UInt8]?
        // Configs by entry name, in archive order (the order matters only when there is no manifest.json).
        var configs: [(name: String, config: ImageConfig)] = []
        var entries = 0
        do {
            while let header = try reader.next() {
                entries += 1
                guard header.kind == .file, header.size <= sniffLimit, header.size > 0 else { continue }
                if header.name == "manifest.json" {
                    manifest = try reader.readData(limit: sniffLimit)
                    continue
                }
                if header.name.hasSuffix(".tar") || header.name.hasSuffix(".tar.gz") { continue }
                let bytes = try reader.readData(limit: sniffLimit)
                guard bytes.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) == UInt8(ascii: "{")
                else { continue }
                if let config = ImageConfig(json: bytes) { configs.append((header.name, config)) }
            }
        } catch {
            throw archiveError(error, source: source)
        }
        if entries == 0 {
            throw KnitClientError(
                .archive,
                "image archive from \(source) is empty: expected the output of `docker save`"
            )
        }
        guard let manifest else { return configs.map { ArchivedImage(repoTags: [], config: $0.config) } }
        guard let items = JSONValue.parse(manifest)?.arrayValue else {
            throw KnitClientError(.archive, "image archive from \(source): manifest.json is not a JSON array")
        }
        var images: [ArchivedImage] = []
        for item in items {
            guard let configName = item["Config"]?.stringValue else {
                throw KnitClientError(.archive, "image archive from \(source): a manifest.json entry has no Config")
            }
            let wanted = strippingDotSlash(configName)
            guard let config = configs.first(where: { $0.name == wanted })?.config else {
                throw KnitClientError(
                    .archive,
                    "image archive from \(source): config \(configName) named in manifest.json is missing or not an image config"
                )
            }
            let tags = item["RepoTags"]?.arrayValue?.compactMap(\.stringValue) ?? []
            images.append(ArchivedImage(repoTags: tags, config: config))
        }
        return images
    }

    /// The image to template and the name the plan gives it.
    ///
    /// Without `tag` the archive must hold exactly one image, named by its first RepoTag (`IMAGE:TAG` when it
    /// has none). With `tag`, the image carrying that RepoTag; an archive of one untagged image takes `tag` as
    /// its name.
    public static func select(_ images: [ArchivedImage], tag: String?) throws(KnitClientError)
        -> (image: String, config: ImageConfig)
    {
        if images.isEmpty { throw KnitClientError(.usage, "no image found") }
        guard let tag, !tag.isEmpty else {
            guard images.count == 1 else {
                throw KnitClientError(.usage, "multiple images found, specify the image tag")
            }
            return (images[0].repoTags.first ?? "IMAGE:TAG", images[0].config)
        }
        if let found = images.first(where: { $0.repoTags.contains(tag) }) { return (tag, found.config) }
        if images.count == 1, images[0].repoTags.isEmpty { return (tag, images[0].config) }
        throw KnitClientError(.usage, "specified image tag '\(tag)' is not found")
    }

    /// An entry name without the leading `./` some archivers write.
    static func strippingDotSlash(_ name: String) -> String {
        var name = Substring(name)
        while name.hasPrefix("./") { name = name.dropFirst(2) }
        return String(name)
    }

    /// A read failure or a non-tar input, said the same way by every command that reads image archives.
    static func archiveError(_ error: ArchiveError, source: String) -> KnitClientError {
        switch error.code {
        case .readFailed:
            return KnitClientError(.io, "cannot read image archive from \(source): \(error.message)", underlying: error)
        default:
            return KnitClientError(
                .archive,
                "image archive from \(source) is not a tar archive as `docker save` writes (\(error.message))",
                underlying: error
            )
        }
    }
}

/// A plan file skeleton, as `knit plan template` prints it.
public struct PlanTemplate: Sendable, Equatable {
    public struct Mount: Sendable, Equatable {
        public var path: String
        /// knitenv tags first, then the `type:` tag, as written to the file.
        public var tags: [Tag]
        public init(path: String, tags: [Tag]) {
            self.path = path
            self.tags = tags
        }
    }

    public var image: String
    public var entrypoint: [String]
    public var args: [String]
    public var inputs: [Mount]
    public var outputs: [Mount]
    public var logTags: [Tag]
    /// `cpu` and `memory` first, then other knitenv resources in file order.
    public var resources: [KnitEnv.Resource]

    /// The template of a plan for `image` whose config is `config`.
    ///
    /// Every Entrypoint and Cmd element and every VOLUME with a path segment `in` becomes an input, else with a
    /// segment `out` an output (relative ones resolved against the working directory); each is tagged with the
    /// knitenv tags and `type:<last segment that is not in/out>`.
    public init(image: String, config: ImageConfig, env: KnitEnv) {
        let workingDir = config.workingDir.isEmpty ? "/" : config.workingDir
        var inputs: [String] = []
        var outputs: [String] = []
        let candidates = (config.entrypoint ?? []) + (config.cmd ?? []) + config.volumes
        for text in candidates {
            // The segment test looks at the text as written; the mount path is where it lands in the container.
            let path = Self.cleanPath(text.hasPrefix("/") ? text : workingDir + "/" + text)
            if Self.hasSegment("in", text) {
                if !inputs.contains(path) { inputs.append(path) }
            } else if Self.hasSegment("out", text) {
                if !outputs.contains(path) { outputs.append(path) }
            }
        }
        self.image = image
        entrypoint = config.entrypoint ?? []
        args = config.cmd ?? []
        self.inputs = inputs.map { Mount(path: $0, tags: Self.tags(for: $0, skipping: "in", env: env.tags)) }
        self.outputs = outputs.map { Mount(path: $0, tags: Self.tags(for: $0, skipping: "out", env: env.tags)) }
        logTags = Self.uniqued([Tag(key: "type", value: "log")] + env.tags)
        resources = Self.resources(env)
    }

    /// The `--scratch` template: placeholder image, `/in` and `/out` tagged with the knitenv tags (or
    /// `example:tag` when there are none).
    public static func scratch(env: KnitEnv) -> PlanTemplate {
        let tags = env.tags.isEmpty ? [Tag(key: "example", value: "tag")] : Self.uniqued(env.tags)
        return PlanTemplate(
            image: "image:version",
            entrypoint: [],
            args: [],
            inputs: [Mount(path: "/in", tags: tags)],
            outputs: [Mount(path: "/out", tags: tags)],
            logTags: Self.uniqued([Tag(key: "type", value: "log")] + tags),
            resources: Self.resources(env)
        )
    }

    public init(
        image: String,
        entrypoint: [String],
        args: [String],
        inputs: [Mount],
        outputs: [Mount],
        logTags: [Tag],
        resources: [KnitEnv.Resource]
    ) {
        self.image = image
        self.entrypoint = entrypoint
        self.args = args
        self.inputs = inputs
        self.outputs = outputs
        self.logTags = logTags
        self.resources = resources
    }

    /// Reads a `docker save` archive from `fileDescriptor` and templates the image `tag` selects.
    public static func fromArchive(
        fileDescriptor: Int32,
        source: String,
        tag: String?,
        env: KnitEnv
    ) throws(KnitClientError) -> PlanTemplate {
        let images = try ImageArchive.images(fileDescriptor: fileDescriptor, source: source)
        let (image, config) = try ImageArchive.select(images, tag: tag)
        return PlanTemplate(image: image, config: config, env: env)
    }

    // MARK: - Derivation

    /// `(^|/)NAME(/|$)`: a whole path segment, so `/input` or `/in.txt` do not count.
    static func hasSegment(_ name: String, _ text: String) -> Bool {
        text.split(separator: "/", omittingEmptySubsequences: false).contains { $0 == name }
    }

    /// An absolute path cleaned as Go's `path.Clean` does: no empty, `.` or `..` segments, no trailing `/`.
    static func cleanPath(_ absolute: String) -> String {
        var parts: [Substring] = []
        for part in absolute.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": if !parts.isEmpty { parts.removeLast() }
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    static func tags(for path: String, skipping ignored: String, env: [Tag]) -> [Tag] {
        var tags = env
        if let type = path.split(separator: "/").last(where: { $0 != ignored }) {
            tags.append(Tag(key: "type", value: String(type)))
        }
        return uniqued(tags)
    }

    static func uniqued(_ tags: [Tag]) -> [Tag] {
        var seen = Set<Tag>()
        return tags.filter { seen.insert($0).inserted }
    }

    static func resources(_ env: KnitEnv) -> [KnitEnv.Resource] {
        let given = env.resources
        var result: [KnitEnv.Resource] = []
        for (name, fallback) in [("cpu", "1"), ("memory", "1Gi")] {
            result.append(given.last(where: { $0.name == name }) ?? KnitEnv.Resource(name: name, quantity: fallback))
        }
        for resource in given where resource.name != "cpu" && resource.name != "memory" {
            if let index = result.firstIndex(where: { $0.name == resource.name }) {
                result[index] = resource
            } else {
                result.append(resource)
            }
        }
        return result
    }

    // MARK: - Rendering

    /// The commented YAML text; `PlanFile.parse` reads it back into the same spec.
    public func render() -> String {
        var out = "\n"
        out += """
            # annotations (optional, mutable):
            #   Free "key=value" notes on this Plan (what it is for, who owns it). Knit does not read them
            #   for lineage or run generation; extensions and people may.
            annotations: []
            #   - "key=value"
            #   - "description=what this Plan does"


            # image:
            #   The container image every Run of this Plan executes, as "name:tag".
            #   The machine running Knit's executor must be able to pull or find it.
            image: \(Self.quoted(image))

            # entrypoint:
            #   The command run in the container; replaces the image's ENTRYPOINT.
            entrypoint: \(Self.flow(entrypoint))

            # args:
            #   Arguments for the entrypoint; replace the image's CMD.
            args: \(Self.flow(args))

            # inputs:
            #   Where each input Data is mounted (read-only), and the tags a Data needs to be mounted there.
            #   At least one input is required. Paths are absolute; tags are "key:value".
            inputs:\(Self.mounts(inputs))

            # outputs:
            #   Directories whose contents become new Data after a Run, and the tags those Data get.
            #   Same form as "inputs".
            outputs:\(Self.mounts(outputs))

            # log (optional):
            #   Tags for the Data holding each Run's stdout and stderr.
            #   Remove it (or set null) to keep no log.
            log:
              tags:\(Self.tagList(logTags, indent: "    "))

            # active (optional, mutable):
            #   false keeps new Runs of this Plan waiting until it is activated again.
            #   Missing or null means true.
            active: true

            # resources (optional, mutable):
            #   What one Run may use; the executor enforces these as limits.
            #   They can be changed after the Plan is applied. Other resource names may exist:
            #   ask your administrator.
            resources:

            """
        for resource in resources {
            switch resource.name {
            case "cpu":
                out += """

                      # cpu (optional; default 1):
                      #   Number of cores; fractions such as "0.5" or "500m" (500 millicores) are allowed.

                    """
            case "memory":
                out += """

                      # memory (optional; default 1Gi):
                      #   Bytes of memory; suffixes Ki, Mi, Gi (powers of 1024) or k, M, G (powers of 1000),
                      #   case sensitive. A bare number is bytes.

                    """
            default: break
            }
            out += "  \(Self.plain(resource.name)): \(Self.plain(resource.quantity))\n"
        }
        out += """


            # # on_node (optional):
            # #   Node placement, as "key=value" labels or taints on three levels. Ignored by the local
            # #   podman executor; honoured by cluster executors. Empty means any node without taints.
            # on_node:
            #   # may: (optional)
            #   #   Nodes with these taints may run this Plan.
            #   may:
            #     - "label-a=value1"
            #     - "label-b=value2"
            #
            #   # prefer: (optional)
            #   #   Nodes with these labels (and taints) are preferred when available.
            #   prefer:
            #     - "vram=large"
            #
            #   # must: (optional)
            #   #   Only nodes with all of these labels (and taints) run this Plan; with none matching,
            #   #   its Runs wait.
            #   must:
            #     - "accelerator=gpu"
            #
            # # service_account (optional, mutable):
            # #   The service account a Run executes as. Missing or null means none.
            # service_account: "default"

            """
        return out
    }

    static func quoted(_ text: String) -> String { YAMLValue.quoted(text) }

    static func flow(_ items: [String]) -> String { "[" + items.map(quoted).joined(separator: ", ") + "]" }

    static func mounts(_ mounts: [Mount]) -> String {
        if mounts.isEmpty { return " []" }
        var out = ""
        for mount in mounts {
            out += "\n  - path: \(quoted(mount.path))\n    tags:"
            out += tagList(mount.tags, indent: "      ")
        }
        return out
    }

    static func tagList(_ tags: [Tag], indent: String) -> String {
        if tags.isEmpty { return " []" }
        return tags.map { "\n\(indent)- \(quoted($0.description))" }.joined()
    }

    /// Plain when YAML reads it back as the same string, as `cpu: 1` and `memory: 1Gi` are; quoted otherwise.
    static func plain(_ text: String) -> String {
        let safe =
            !text.isEmpty
            && text.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "_")
                    || byte == UInt8(ascii: "-")
            }
            && text.first != "-" && text.first != "."
            && !["true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"].contains(text.lowercased())
        return safe ? text : quoted(text)
    }
}
