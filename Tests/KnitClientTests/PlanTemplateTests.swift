import KnitArchive
import KnitClient
import KnitCore
import KnitSystem
import KnitTestSupport
import Testing

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

private func tag(_ text: String) -> KnitCore.Tag { try! KnitCore.Tag(parsing: text) }
private func tags(_ texts: String...) -> TagSet { TagSet(texts.map(tag)) }

/// An image config document as `docker save` writes it.
private func configJSON(
    entrypoint: [String]? = nil,
    cmd: [String]? = nil,
    volumes: [String] = [],
    workingDir: String? = nil
) -> String {
    func list(_ items: [String]?) -> String {
        guard let items else { return "null" }
        return "[" + items.map { JSONValue.quoted($0) }.joined(separator: ",") + "]"
    }
    var config = #""Env":["PATH=/usr/bin"],"Entrypoint":\#(list(entrypoint)),"Cmd":\#(list(cmd))"#
    if !volumes.isEmpty {
        config += #","Volumes":{"# + volumes.map { JSONValue.quoted($0) + ":{}" }.joined(separator: ",") + "}"
    }
    if let workingDir { config += #","WorkingDir":"# + JSONValue.quoted(workingDir) }
    return
        #"{"architecture":"amd64","os":"linux","config":{\#(config)},"rootfs":{"type":"layers","diff_ids":["sha256:00"]},"history":[]}"#
}

/// A `docker save` archive: per image a layer directory and a config file, then manifest.json and
/// repositories last, as Docker orders them.
private func dockerSave(
    _ images: [(tags: [String], config: String)],
    format: ArchiveFormat = .tar,
    layerBytes: Int = 10_000,
    manifest: Bool = true
) throws -> [UInt8] {
    var entries: [ArchiveBuilder.Entry] = []
    var manifestItems: [String] = []
    for (index, image) in images.enumerated() {
        let layer = "\(index)aaaa"
        let configName = "\(index)cccc.json"
        entries.append(.directory(layer))
        entries.append(.file("\(layer)/VERSION", Array("1.0".utf8)))
        entries.append(.file("\(layer)/json", Array(#"{"id":"\#(layer)","os":"linux","config":{}}"#.utf8)))
        entries.append(.file("\(layer)/layer.tar", [UInt8](repeating: 7, count: layerBytes)))
        entries.append(.file(configName, Array(image.config.utf8)))
        let repoTags = "[" + image.tags.map { JSONValue.quoted($0) }.joined(separator: ",") + "]"
        manifestItems.append(#"{"Config":"\#(configName)","RepoTags":\#(repoTags),"Layers":["\#(layer)/layer.tar"]}"#)
    }
    if manifest {
        entries.append(.file("manifest.json", Array(("[" + manifestItems.joined(separator: ",") + "]").utf8)))
        entries.append(.file("repositories", Array("{}".utf8)))
    }
    return try ArchiveBuilder(format: format, entries: entries).build()
}

private func images(_ bytes: [UInt8], chunk: Int = 4096) throws(KnitClientError) -> [ArchivedImage] {
    var offset = 0
    return try ImageArchive.images(source: "STDIN") { buffer in
        let count = min(chunk, buffer.count, bytes.count - offset)
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: count) }
        offset += count
        return count
    }
}

private func template(_ bytes: [UInt8], tag: String? = nil, env: KnitEnv = KnitEnv()) throws -> PlanTemplate {
    let (image, config) = try ImageArchive.select(try images(bytes), tag: tag)
    return PlanTemplate(image: image, config: config, env: env)
}

/// The lines that are not comments or blank: the YAML a reader sees.
private func yamlLines(_ text: String) -> [String] {
    text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter {
        let content = $0.drop(while: { $0 == " " })
        return !content.isEmpty && !content.hasPrefix("#")
    }
}

private func clientError(_ body: () throws -> Void) -> KnitClientError? {
    do {
        try body()
        Issue.record("expected an error")
        return nil
    } catch let error as KnitClientError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

private let trainConfig = configJSON(
    entrypoint: ["python", "-u", "train.py"],
    cmd: ["--dataset", "/in/dataset", "--save-to", "/out/model"],
    workingDir: "/work"
)
private let validationConfig = configJSON(
    entrypoint: ["python", "-u", "validation.py", "--dataset", "/in/dataset", "--model", "/in/model/model.pth"],
    workingDir: "/work"
)

@Suite("knit plan template")
struct PlanTemplateTests {
    @Test("the tutorial's training image gives the tutorial's template", arguments: ArchiveFormat.allCases)
    func tutorialTrain(format: ArchiveFormat) throws {
        let archive = try dockerSave(
            [(["localhost:30503/knitfab-first-train:v1.0"], trainConfig)],
            format: format
        )
        let text = try template(archive).render()
        #expect(
            yamlLines(text) == [
                "annotations: []",
                #"image: "localhost:30503/knitfab-first-train:v1.0""#,
                #"entrypoint: ["python", "-u", "train.py"]"#,
                #"args: ["--dataset", "/in/dataset", "--save-to", "/out/model"]"#,
                "inputs:",
                #"  - path: "/in/dataset""#,
                "    tags:",
                #"      - "type:dataset""#,
                "outputs:",
                #"  - path: "/out/model""#,
                "    tags:",
                #"      - "type:model""#,
                "log:",
                "  tags:",
                #"    - "type:log""#,
                "active: true",
                "resources:",
                "  cpu: 1",
                "  memory: 1Gi",
            ]
        )
        // Every key is introduced by a comment, and on_node / service_account are offered commented out.
        for key in ["annotations", "image", "entrypoint", "args", "inputs", "outputs", "log", "active", "resources"] {
            #expect(text.contains("\n# \(key)"), "no comment for \(key)")
        }
        #expect(text.contains("\n# on_node:\n"))
        #expect(text.contains("\n# service_account: \"default\"\n"))
        let spec = try PlanFile.parse(text, file: "train.plan.yaml")
        #expect(
            spec
                == PlanSpecJSON(
                    image: "localhost:30503/knitfab-first-train:v1.0",
                    entrypoint: ["python", "-u", "train.py"],
                    args: ["--dataset", "/in/dataset", "--save-to", "/out/model"],
                    annotations: [],
                    inputs: [MountpointJSON(path: "/in/dataset", tags: tags("type:dataset"))],
                    outputs: [MountpointJSON(path: "/out/model", tags: tags("type:model"))],
                    log: LogPointJSON(tags: tags("type:log")),
                    active: true,
                    resources: ["cpu": "1", "memory": "1Gi"]
                )
        )
    }

    @Test("the tutorial's validation image: a file path in the entrypoint is an input, typed by its name")
    func tutorialValidation() throws {
        let archive = try dockerSave([(["localhost:30503/knitfab-first-validation:v1.0"], validationConfig)])
        let result = try template(archive)
        #expect(result.entrypoint.last == "/in/model/model.pth")
        #expect(result.args == [])
        #expect(
            result.inputs == [
                .init(path: "/in/dataset", tags: [tag("type:dataset")]),
                .init(path: "/in/model/model.pth", tags: [tag("type:model.pth")]),
            ]
        )
        #expect(result.outputs == [])
        let text = result.render()
        #expect(text.contains("\nargs: []\n"))
        #expect(text.contains("\noutputs: []\n"))
        let spec = try PlanFile.parse(text, file: "validation.plan.yaml")
        #expect(spec.inputs.map(\.path) == ["/in/dataset", "/in/model/model.pth"])
        #expect(spec.outputs == [])
    }

    @Test("VOLUMEs with an in/out segment become inputs and outputs; others are ignored")
    func volumes() throws {
        let config = configJSON(
            entrypoint: ["/app/run"],
            volumes: ["/var/cache", "/out/metrics", "/in/data/", "/data/input", "/mnt/in"]
        )
        let result = try template(try dockerSave([(["repo/app:1"], config)]))
        #expect(
            result.inputs == [
                .init(path: "/in/data", tags: [tag("type:data")]), .init(path: "/mnt/in", tags: [tag("type:mnt")]),
            ]
        )
        #expect(result.outputs == [.init(path: "/out/metrics", tags: [tag("type:metrics")])])
        _ = try PlanFile.parse(result.render(), file: "plan.yaml")
    }

    @Test("relative paths are resolved against WorkingDir (default /); duplicates collapse")
    func relativePaths() throws {
        let config = configJSON(
            entrypoint: ["sh", "run.sh"],
            cmd: ["in/x", "./out/y/", "../in/z", "/in/dataset", "/in/dataset", "inbox"],
            volumes: ["/in/dataset"],
            workingDir: "/app"
        )
        let result = try template(try dockerSave([(["repo/app:1"], config)]))
        #expect(result.inputs.map(\.path) == ["/app/in/x", "/in/z", "/in/dataset"])
        #expect(result.inputs.map(\.tags) == [[tag("type:x")], [tag("type:z")], [tag("type:dataset")]])
        #expect(result.outputs == [.init(path: "/app/out/y", tags: [tag("type:y")])])
        let noWorkingDir = try template(try dockerSave([(["repo/app:1"], configJSON(cmd: ["in/x", "out"]))]))
        #expect(noWorkingDir.inputs.map(\.path) == ["/in/x"])
        // "/out" has no segment besides "out": it gets no type tag.
        #expect(noWorkingDir.outputs == [.init(path: "/out", tags: [])])
    }

    @Test("knitenv tags go on every input, output and the log; knitenv resources replace the defaults")
    func knitenv() throws {
        let env = try KnitEnv.parse(
            """
            tag: ["project:first-knitfab", "owner:alice"]
            resource:
              memory: 4Gi
              nvidia.com/gpu: "1"
              cpu: 500m
            """,
            source: "knitenv"
        )
        let result = try template(try dockerSave([(["repo/train:v1"], trainConfig)]), env: env)
        #expect(result.inputs[0].tags == [tag("project:first-knitfab"), tag("owner:alice"), tag("type:dataset")])
        #expect(result.outputs[0].tags == [tag("project:first-knitfab"), tag("owner:alice"), tag("type:model")])
        #expect(result.logTags == [tag("type:log"), tag("project:first-knitfab"), tag("owner:alice")])
        #expect(result.resources.map(\.name) == ["cpu", "memory", "nvidia.com/gpu"])
        let spec = try PlanFile.parse(result.render(), file: "plan.yaml")
        #expect(spec.resources == ["cpu": "500m", "memory": "4Gi", "nvidia.com/gpu": "1"])
        #expect(spec.inputs[0].tags == tags("project:first-knitfab", "owner:alice", "type:dataset"))
        #expect(spec.log?.tags == tags("type:log", "project:first-knitfab", "owner:alice"))
    }

    @Test("several images: the tag selects one; without it, or with an unknown one, a clear error")
    func multipleImages() throws {
        let archive = try dockerSave([
            (["repo/train:v1", "repo/train:latest"], trainConfig), (["repo/validation:v1"], validationConfig),
        ])
        let error = clientError { _ = try template(archive) }
        #expect(error?.message == "multiple images found, specify the image tag")
        let missing = clientError { _ = try template(archive, tag: "repo/other:v1") }
        #expect(missing?.message == "specified image tag 'repo/other:v1' is not found")
        let latest = try template(archive, tag: "repo/train:latest")
        #expect(latest.image == "repo/train:latest")
        #expect(latest.outputs.map(\.path) == ["/out/model"])
        let validation = try template(archive, tag: "repo/validation:v1")
        #expect(validation.inputs.count == 2)
        // One image: the tag must still be one of its tags; without a tag its first RepoTag names it.
        let single = try dockerSave([(["repo/train:v1", "repo/train:latest"], trainConfig)])
        #expect(try template(single).image == "repo/train:v1")
        #expect(
            clientError { _ = try template(single, tag: "repo/train:v2") }?.message
                == "specified image tag 'repo/train:v2' is not found"
        )
    }

    @Test("no image in the archive, untagged images, and configs found only by sniffing")
    func sniffing() throws {
        let none = try ArchiveBuilder(entries: [
            .file("hello.txt", Array("hi".utf8)), .file("x.json", Array("{}".utf8)),
        ])
        .build()
        #expect(clientError { _ = try template(none) }?.message == "no image found")
        // Saved by image id: no RepoTags, so the plan names the placeholder, or the tag given.
        let untagged = try dockerSave([([], trainConfig)])
        #expect(try template(untagged).image == "IMAGE:TAG")
        #expect(try template(untagged, tag: "repo/train:v9").image == "repo/train:v9")
        // No manifest.json (e.g. an OCI layout): every JSON file shaped like an image config is an image.
        let oci = try ArchiveBuilder(entries: [
            .file("index.json", Array(#"{"schemaVersion":2,"manifests":[]}"#.utf8)),
            .file("blobs/sha256/aaaa", Array(#"{"schemaVersion":2,"config":{"digest":"sha256:bbbb"}}"#.utf8)),
            .file("blobs/sha256/bbbb", Array(trainConfig.utf8)),
            .file("blobs/sha256/cccc", [UInt8](repeating: 0x1f, count: 5000)),
        ]).build()
        let found = try images(oci)
        #expect(found.count == 1)
        #expect(found.first?.config.entrypoint == ["python", "-u", "train.py"])
        // Docker ≥ 25 writes both: manifest.json pointing into blobs/ (without a .json suffix).
        let both = try ArchiveBuilder(entries: [
            .file("blobs/sha256/bbbb", Array(validationConfig.utf8)),
            .file("./manifest.json", Array(#"[{"Config":"blobs/sha256/bbbb","RepoTags":["v:1"],"Layers":[]}]"#.utf8)),
        ]).build()
        #expect(try template(both).inputs.count == 2)
    }

    @Test("--scratch: placeholder image, /in and /out, example tag or the knitenv tags")
    func scratch() throws {
        let plain = PlanTemplate.scratch(env: KnitEnv())
        let spec = try PlanFile.parse(plain.render(), file: "plan.yaml")
        #expect(spec.image == "image:version")
        #expect(spec.inputs == [MountpointJSON(path: "/in", tags: tags("example:tag"))])
        #expect(spec.outputs == [MountpointJSON(path: "/out", tags: tags("example:tag"))])
        #expect(spec.log?.tags == tags("type:log", "example:tag"))
        #expect(spec.resources == ["cpu": "1", "memory": "1Gi"])
        let withEnv = PlanTemplate.scratch(env: KnitEnv(tags: [tag("project:p")]))
        let envSpec = try PlanFile.parse(withEnv.render(), file: "plan.yaml")
        #expect(envSpec.inputs == [MountpointJSON(path: "/in", tags: tags("project:p"))])
        #expect(envSpec.log?.tags == tags("type:log", "project:p"))
    }

    @Test("strings that need YAML quoting survive the round trip")
    func quoting() throws {
        let config = configJSON(entrypoint: ["sh", "-c", "echo \"a: b\" # \\ 'x'"], cmd: ["--in=/in/weird name:1"])
        let result = try template(try dockerSave([(["repo/app:1"], config)]))
        // The derived input path keeps the ':', which no container mount can hold: the file reads back as
        // written, and the plan rules then name the path to fix.
        let spec = try PlanFile.parse(result.render(), file: "plan.yaml", validate: false)
        #expect(spec.entrypoint == ["sh", "-c", "echo \"a: b\" # \\ 'x'"])
        #expect(spec.args == ["--in=/in/weird name:1"])
        #expect(spec.inputs.map(\.path) == ["/--in=/in/weird name:1"])
        let refused = #expect(throws: PlanFileError.self) { try PlanFile.parse(result.render(), file: "plan.yaml") }
        #expect(refused?.description.contains("inputs[0].path") == true)
    }

    @Test("garbage, empty and truncated input give a clear error")
    func badInput() throws {
        let garbage = clientError { _ = try images(Array("not an image\n".utf8) + [UInt8](repeating: 1, count: 2000)) }
        #expect(garbage?.code == .archive)
        #expect(garbage?.message.hasPrefix("image archive from STDIN is not a tar archive") == true)
        let empty = clientError { _ = try images([]) }
        #expect(empty?.code == .archive)
        let archive = try dockerSave([(["repo/train:v1"], trainConfig)], layerBytes: 100_000)
        let truncated = clientError { _ = try images(Array(archive.prefix(50_000))) }
        #expect(truncated?.code == .archive)
    }

    @Test("a docker-save archive with a 200 MB layer is read through in bounded memory")
    func largeLayer() throws {
        let scratch = TemporaryDirectory()
        let root = scratch.path
        let path = root + "/image.tar"
        let script = """
            import io, json, sys, tarfile
            class Zeros(io.RawIOBase):
                def __init__(self, n): self.left = n
                def readable(self): return True
                def readinto(self, b):
                    n = min(len(b), self.left); b[:n] = bytes(n); self.left -= n; return n
            def add(t, name, data):
                info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
            with tarfile.open(sys.argv[1], "w") as t:
                size = 200 * 1024 * 1024
                info = tarfile.TarInfo("abcd/layer.tar"); info.size = size
                t.addfile(info, io.BufferedReader(Zeros(size)))
                add(t, "cfg.json", sys.argv[2].encode())
                add(t, "manifest.json", json.dumps([{"Config": "cfg.json", "RepoTags": ["big:1"], "Layers": ["abcd/layer.tar"]}]).encode())
            """
        let scriptPath = root + "/gen.py"
        #expect(FileManager.default.createFile(atPath: scriptPath, contents: Data(script.utf8)))
        try #require(run(["/usr/bin/env", "python3", scriptPath, path, trainConfig]) == 0)
        let fd = open(path, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }

        let reset = resetPeakRSS()
        let before = peakRSSKiB()
        var total = 0
        // A pipe-like source: nothing can be seeked over, every layer byte goes through the reader.
        let found = try ImageArchive.images(source: "STDIN") { buffer in
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n < 0 { throw KnitClientError(.io, "read failed") }
            total += n
            return n
        }
        let grown = peakRSSKiB() - before
        print("PlanTemplateTests.largeLayer: read \(total) bytes, peak RSS +\(grown) KiB")
        #expect(total > 200 << 20)
        #expect(found.map(\.repoTags) == [["big:1"]])
        if reset { #expect(grown < 64 * 1024) }
        // The file-descriptor path seeks over the layer instead.
        #expect(lseek(fd, 0, SEEK_SET) == 0)
        let result = try PlanTemplate.fromArchive(fileDescriptor: fd, source: path, tag: nil, env: KnitEnv())
        #expect(result.image == "big:1")
        #expect(result.inputs.map(\.path) == ["/in/dataset"])
    }

    @Test(
        "podman save of the quickstart image",
        .enabled(if: access("/usr/bin/podman", X_OK) == 0, "needs podman")
    )
    func podmanSave() throws {
        guard run(["/usr/bin/podman", "image", "exists", "localhost/knit-quickstart:1"]) == 0 else {
            print("PlanTemplateTests.podmanSave: localhost/knit-quickstart:1 not built; skipped")
            return
        }
        let path = "/tmp/knit-template-podman-\(getpid()).tar"
        defer { unlink(path) }
        try #require(run(["/usr/bin/podman", "save", "-q", "-o", path, "localhost/knit-quickstart:1"]) == 0)
        let fd = open(path, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        let result = try PlanTemplate.fromArchive(fileDescriptor: fd, source: path, tag: nil, env: KnitEnv())
        #expect(result.image == "localhost/knit-quickstart:1")
        #expect(result.entrypoint == ["/bin/sh", "-c"])
        #expect(result.args == ["echo hello from knit-quickstart"])
        #expect(result.inputs == [])
        // Syntactically a plan file; the image declares no inputs, so only the registration rules object.
        _ = try PlanFile.parse(result.render(), file: "plan.yaml", validate: false)
    }
}

private func peakRSSKiB() -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
    }
    return 0
}

private func resetPeakRSS() -> Bool {
    let fd = open("/proc/self/clear_refs", O_WRONLY)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return write(fd, "5", 1) == 1
}
