import Foundation
import KnitCore
import KnitTesting
import Testing

/// The parent of every live suite. `.serialized` is recursive, so the nested suites (each with its
/// own Knit instance) run one after another: on a 2-core machine two live instances pushing
/// 50 MB archives at once would make the timing assertions of the slow-client suite meaningless.
@Suite(.serialized)
enum Live {}

/// Starts one `KnitInstance` around a whole suite and stops it afterwards (test scoping runs the
/// provider once per suite when the trait is not recursive).
struct KnitInstanceTrait: SuiteTrait, TestScoping {
    let options: KnitInstance.Options

    func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        let instance = try KnitInstance(options: options)
        defer { instance.stop() }
        try await LiveKnit.$current.withValue(instance) {
            try await function()
        }
    }
}

extension Trait where Self == KnitInstanceTrait {
    static func knitInstance(_ options: KnitInstance.Options = .init()) -> Self {
        KnitInstanceTrait(options: options)
    }
}

enum LiveKnit {
    @TaskLocal static var current: KnitInstance?

    static func instance() throws -> KnitInstance {
        try #require(current, "no KnitInstance: the suite needs the .knitInstance() trait")
    }
}

// MARK: - JSON

let jsonDecoder = JSONDecoder()

func decodeDetail(_ data: Data, sourceLocation: SourceLocation = #_sourceLocation) throws -> DataDetailJSON {
    do {
        return try jsonDecoder.decode(DataDetailJSON.self, from: data)
    } catch {
        Issue.record(
            "not a Data Detail: \(String(decoding: data.prefix(500), as: UTF8.self))",
            sourceLocation: sourceLocation
        )
        throw error
    }
}

func decodeDetails(_ data: Data, sourceLocation: SourceLocation = #_sourceLocation) throws -> [DataDetailJSON] {
    do {
        return try jsonDecoder.decode([DataDetailJSON].self, from: data)
    } catch {
        Issue.record(
            "not an array of Data Detail: \(String(decoding: data.prefix(500), as: UTF8.self))",
            sourceLocation: sourceLocation
        )
        throw error
    }
}

extension DataDetailJSON {
    var tagStrings: [String] { tags.map(\.description) }
}

/// The JSON error body must carry a non-empty "message".
func errorMessage(_ response: KnitInstance.HTTPResponse) -> String? {
    guard let object = response.json as? [String: Any], let message = object["message"] as? String,
        !message.isEmpty
    else { return nil }
    return message
}

// MARK: - Files

func makeScratchDirectory(_ knit: KnitInstance, _ name: String) throws -> String {
    let path = knit.root + "/scratch/\(name)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func writeRandomFile(_ path: String, bytes: Int) throws {
    let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/urandom"))
    defer { try? handle.close() }
    _ = FileManager.default.createFile(atPath: path, contents: nil)
    let out = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    defer { try? out.close() }
    var left = bytes
    while left > 0 {
        let chunk = try handle.read(upToCount: min(left, 1 << 20)) ?? Data()
        try out.write(contentsOf: chunk)
        left -= chunk.count
    }
}

/// Compares two trees without following symlinks: structure, bytes, link targets, empty dirs.
func treeDifferences(_ knit: KnitInstance, _ a: String, _ b: String) -> String? {
    let result = knit.run("/usr/bin/diff", ["-r", "--no-dereference", a, b])
    return result.status == 0 ? nil : result.stdoutText + result.stderr
}

/// Builds a tar(.gz) with python3's tarfile module, which can write any entry (.., absolute
/// paths, devices, escaping links) that a well-behaved archiver refuses to produce.
/// `entries` is python source: a list of (TarInfo-name, type, extra) handled by the script.
func craftTar(_ knit: KnitInstance, _ path: String, mode: String = "w:gz", entries python: String) throws {
    let script = """
        import io, sys, tarfile
        out, mode = sys.argv[1], sys.argv[2]
        with tarfile.open(out, mode, format=tarfile.GNU_FORMAT) as tar:
            def file(name, data=b"x"):
                info = tarfile.TarInfo(name); info.size = len(data); info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
            def directory(name):
                info = tarfile.TarInfo(name); info.type = tarfile.DIRTYPE; info.mode = 0o755
                tar.addfile(info)
            def symlink(name, target):
                info = tarfile.TarInfo(name); info.type = tarfile.SYMTYPE; info.linkname = target
                tar.addfile(info)
            def hardlink(name, target):
                info = tarfile.TarInfo(name); info.type = tarfile.LNKTYPE; info.linkname = target
                tar.addfile(info)
            def chardev(name, major, minor):
                info = tarfile.TarInfo(name); info.type = tarfile.CHRTYPE
                info.devmajor = major; info.devminor = minor; info.mode = 0o666
                tar.addfile(info)
            def fifo(name):
                info = tarfile.TarInfo(name); info.type = tarfile.FIFOTYPE; info.mode = 0o644
                tar.addfile(info)
        \(python.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        """
    let scriptPath = path + ".py"
    try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
    let result = knit.run("/usr/bin/env", ["python3", scriptPath, path, mode])
    guard result.status == 0 else { throw KnitTestingError("python3 tarfile failed: \(result.stderr)") }
}

/// A python3 HTTPS client that uploads a file with chunked encoding, `chunk` bytes every
/// `interval` seconds (after an initial burst), so a test controls exactly how slow a client is.
let slowUploadScript = """
    import http.client, ssl, sys, time, urllib.parse
    url, ca, token, ctype, body_path = sys.argv[1:6]
    chunk, interval, burst = int(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
    u = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=600)
    conn.putrequest("POST", u.path + ("?" + u.query if u.query else ""))
    conn.putheader("Authorization", "Bearer " + token)
    conn.putheader("Content-Type", ctype)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    def send(data):
        conn.send(b"%x\\r\\n" % len(data) + data + b"\\r\\n")
    with open(body_path, "rb") as f:
        first = f.read(burst)
        if first:
            send(first)
        print("started", flush=True)
        while True:
            data = f.read(chunk)
            if not data:
                break
            send(data)
            time.sleep(interval)
    conn.send(b"0\\r\\n\\r\\n")
    r = conn.getresponse()
    print(r.status, r.read().decode(errors="replace"), flush=True)
    """

/// Starts a slow chunked upload of `bodyPath` as `user` in the background.
func startSlowUpload(
    _ knit: KnitInstance,
    bodyPath: String,
    user: String = "alice",
    contentType: String = "application/tar+gzip",
    chunk: Int = 1024,
    interval: Double = 0.5,
    burst: Int = 16384
) throws -> BackgroundProcess {
    let scriptPath = knit.root + "/slow-upload.py"
    if !FileManager.default.fileExists(atPath: scriptPath) {
        try slowUploadScript.write(toFile: scriptPath, atomically: true, encoding: .utf8)
    }
    return try knit.background(
        "/usr/bin/env",
        [
            "python3", scriptPath, knit.apiRoot + "/data/", knit.caPath, knit.token(for: user), contentType, bodyPath,
            String(chunk), String(interval), String(burst),
        ],
        name: "slow-upload"
    )
}

/// Makes a small valid tar.gz of random content (the body of well-formed uploads).
func makeValidArchive(_ knit: KnitInstance, _ path: String, bytes: Int) throws {
    let dir = try makeScratchDirectory(knit, "archive-src")
    try writeRandomFile(dir + "/payload.bin", bytes: bytes)
    try "hello\n".write(toFile: dir + "/hello.txt", atomically: true, encoding: .utf8)
    let result = knit.run("/bin/tar", ["-czf", path, "-C", dir, "."])
    guard result.status == 0 else { throw KnitTestingError("tar failed: \(result.stderr)") }
}

/// Polls `condition` every 100 ms for up to `timeout` seconds.
func eventually(timeout: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    repeat {
        if condition() { return true }
        usleep(100_000)
    } while Date() < deadline
    return condition()
}

/// Every knitId the server knows (as admin, no filter).
func allKnitIds(_ knit: KnitInstance) throws -> Set<String> {
    let response = knit.request("GET", "/api/data/", user: "admin")
    try #require(response.status == 200, "GET /api/data/ answered \(response.status): \(response.text)")
    return Set(try decodeDetails(response.body).map(\.knitId))
}

/// Push with the real CLI and decode the printed Data Detail.
func push(
    _ knit: KnitInstance,
    _ dir: String,
    tags: [String] = [],
    user: String = "alice",
    extra: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> DataDetailJSON {
    let result = knit.runKnit(["data", "push"] + tags.flatMap { ["-t", $0] } + extra + [dir], user: user)
    try #require(
        result.status == 0,
        "knit data push failed (\(result.status)): \(result.stderr)",
        sourceLocation: sourceLocation
    )
    return try decodeDetail(result.stdout, sourceLocation: sourceLocation)
}

/// The current Data Detail of one knitId via `knit data find -t knit#id:ID`.
func detail(_ knit: KnitInstance, _ knitId: String) throws -> DataDetailJSON {
    let result = knit.runKnit(["data", "find", "-t", "knit#id:\(knitId)"])
    try #require(result.status == 0, "knit data find failed: \(result.stderr)")
    let found = try decodeDetails(result.stdout)
    try #require(found.count == 1, "expected exactly one Data for \(knitId), got \(found.count)")
    return found[0]
}

// MARK: - Pipelines with a real scheduler and real containers

/// The busybox image every pipeline test runs (examples/quickstart/build-image.sh; a no-op when it exists).
let quickstartImage = "localhost/knit-quickstart:1"

/// Whether podman is there, for `.enabled(if:)` on suites that start containers.
let podmanAvailable = FileManager.default.isExecutableFile(atPath: "/usr/bin/podman")

func buildQuickstartImage(_ knit: KnitInstance) throws {
    let result = knit.run("/bin/sh", [knit.packageRoot + "/examples/quickstart/build-image.sh"])
    try #require(result.status == 0, "examples/quickstart/build-image.sh failed: \(result.stderr)")
}

/// One knit-scheduler process of a test, with its own `knit.executor` label so its containers are told
/// apart from those of other tests; `restart` starts a new process with the same label (it adopts them).
final class LiveScheduler: @unchecked Sendable {
    // @unchecked: `process` is only touched by the test that owns the scheduler, one call at a time.
    let knit: KnitInstance
    let label: String
    /// More flags for every start (e.g. `--hooks FILE`).
    let arguments: [String]
    private(set) var process: BackgroundProcess

    /// Builds the image, then starts the scheduler with a budget large enough that no test Run waits
    /// for capacity (the tests' plans ask for little anyway).
    init(_ knit: KnitInstance, arguments: [String] = []) throws {
        try buildQuickstartImage(knit)
        self.knit = knit
        self.arguments = arguments
        label = "knit-live-\(UUID().uuidString.prefix(8).lowercased())"
        process = try Self.spawn(knit, label: label, arguments: arguments)
    }

    private static func spawn(_ knit: KnitInstance, label: String, arguments: [String]) throws -> BackgroundProcess {
        let path = String(knit.knitdPath.dropLast("knitd".count)) + "knit-scheduler"
        return try knit.background(
            path,
            [
                "--home", knit.home, "--containers-conf", knit.packageRoot + "/containers/containers.conf",
                "--instance", label, "--log-level", "debug", "--cpu-budget", "64000",
            ] + arguments,
            name: "knit-scheduler"
        )
    }

    /// SIGKILL, as a crash: no clean-up of any kind. Waits until the process is gone.
    func kill() throws {
        process.signal(SIGKILL)
        try #require(process.wait(timeout: 10), "knit-scheduler did not die after SIGKILL")
    }

    func restart() throws {
        if process.isRunning { process.stop(signal: SIGTERM, grace: 10) }
        process = try Self.spawn(knit, label: label, arguments: arguments)
    }

    /// Stops the scheduler and removes every container it left (by label).
    func stop() {
        process.stop(signal: SIGTERM, grace: 10)
        _ = podman(["ps", "-aq", "--filter", "label=knit.executor=\(label)"]).stdoutText
            .split(separator: "\n").map { podman(["rm", "-f", "-t", "0", String($0)]) }
    }

    /// Names of this scheduler's containers in `state` (podman's status filter: running, exited…), or all.
    func containers(status: String? = nil) -> [String] {
        var args = ["ps", "-a", "--filter", "label=knit.executor=\(label)", "--format", "{{.Names}}"]
        if let status { args += ["--filter", "status=\(status)"] }
        return podman(args).stdoutText.split(separator: "\n").map(String.init).sorted()
    }

    /// Container names, one per `start` event of this scheduler's containers (podman's event log, which
    /// outlives the containers): a Run started twice shows up twice.
    func containerStarts() -> [String] {
        podman([
            "events", "--stream=false", "--since", "30m", "--filter", "label=knit.executor=\(label)",
            "--filter", "event=start", "--format", "{{.Name}}",
        ]).stdoutText.split(separator: "\n").map(String.init)
    }

    /// The last lines of the scheduler's log (both processes' when restarted), for failure messages.
    func logTail(_ lines: Int = 30) -> String {
        let text = process.stderrText + process.stdoutText
        return "--- knit-scheduler log:\n"
            + text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// podman with Knit's containers.conf, so it sees the executor's containers and events.
    func podman(_ args: [String]) -> ProcessResult {
        var env = ProcessInfo.processInfo.environment
        env["CONTAINERS_CONF"] = knit.packageRoot + "/containers/containers.conf"
        return knit.run("/usr/bin/podman", args, environment: env)
    }
}

/// Writes `yaml` to a scratch file and applies it with `knit plan apply`.
func applyPlan(
    _ knit: KnitInstance,
    _ yaml: String,
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> PlanDetailJSON {
    let path = try makeScratchDirectory(knit, "plan") + "/plan.yaml"
    try yaml.write(toFile: path, atomically: true, encoding: .utf8)
    let applied = knit.runKnit(["plan", "apply", path])
    try #require(applied.status == 0, "knit plan apply: \(applied.stderr)\n\(yaml)", sourceLocation: sourceLocation)
    return try jsonDecoder.decode(PlanDetailJSON.self, from: applied.stdout)
}

/// A plan YAML for the quickstart image: `script` is the shell script (the image's entrypoint is `sh -c`).
func quickstartPlanYAML(
    script: String,
    inputs: [(path: String, tags: [String])],
    outputs: [(path: String, tags: [String])] = [],
    log: [String]? = nil,
    image: String = quickstartImage,
    memory: String = "32Mi"
) -> String {
    func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
    func list(_ items: [String]) -> String { "[" + items.map(quoted).joined(separator: ", ") + "]" }
    var yaml = "image: \(quoted(image))\nargs: [\(quoted(script))]\ninputs:\n"
    for input in inputs { yaml += "  - path: \(quoted(input.path))\n    tags: \(list(input.tags))\n" }
    if !outputs.isEmpty {
        yaml += "outputs:\n"
        for output in outputs { yaml += "  - path: \(quoted(output.path))\n    tags: \(list(output.tags))\n" }
    }
    if let log { yaml += "log:\n  tags: \(list(log))\n" }
    yaml += "resources: {cpu: \"250m\", memory: \(quoted(memory))}\n"
    return yaml
}

/// Pushes a Data holding one file `v` with `value` (and a newline).
func pushValue(
    _ knit: KnitInstance,
    _ value: String,
    tags: [String],
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> DataDetailJSON {
    let dir = try makeScratchDirectory(knit, "value")
    try (value + "\n").write(toFile: dir + "/v", atomically: true, encoding: .utf8)
    return try push(knit, dir, tags: tags, sourceLocation: sourceLocation)
}

/// Runs of the given plans (`knit run find -p …`); empty when the CLI fails.
func findRuns(_ knit: KnitInstance, plans planIds: [String]) -> [RunDetailJSON] {
    let found = knit.runKnit(["run", "find"] + planIds.flatMap { ["-p", $0] })
    guard found.status == 0 else { return [] }
    return (try? jsonDecoder.decode([RunDetailJSON].self, from: found.stdout)) ?? []
}

func showRun(_ knit: KnitInstance, _ runId: String) throws -> RunDetailJSON {
    let shown = knit.runKnit(["run", "show", runId])
    try #require(shown.status == 0, "knit run show \(runId): \(shown.stderr)")
    return try jsonDecoder.decode(RunDetailJSON.self, from: shown.stdout)
}

let finishedRunStatuses: Set<String> = ["done", "failed"]

/// Polls until the plan has exactly `count` Runs and each is in `statuses`; returns them sorted by
/// their first input's knitId. Fails the test (with the Runs seen last) on timeout.
func awaitRuns(
    _ knit: KnitInstance,
    plan planId: String,
    count: Int,
    in statuses: Set<String> = finishedRunStatuses,
    timeout: Double = 30,
    context: @autoclosure () -> String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> [RunDetailJSON] {
    var runs: [RunDetailJSON] = []
    let reached = eventually(timeout: timeout) {
        runs = findRuns(knit, plans: [planId])
        return runs.count == count && runs.allSatisfy { statuses.contains($0.status) }
    }
    let seen = runs.map { "\($0.runId.prefix(8)) \($0.status) \(String(describing: $0.exit))" }
    try #require(
        reached,
        "plan \(planId): expected \(count) runs in \(statuses.sorted()) within \(timeout) s, saw \(seen)\n\(context())",
        sourceLocation: sourceLocation
    )
    return runs.sorted { ($0.inputs.first?.knitId ?? "") < ($1.inputs.first?.knitId ?? "") }
}

/// Pulls a Data with `knit data pull -x` and returns the text of one of its files.
func pullText(
    _ knit: KnitInstance,
    _ knitId: String,
    file: String = "v",
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> String {
    let destination = try makeScratchDirectory(knit, "pulled")
    let pulled = knit.runKnit(["data", "pull", "-x", knitId, destination])
    try #require(pulled.status == 0, "knit data pull \(knitId): \(pulled.stderr)", sourceLocation: sourceLocation)
    return try String(contentsOfFile: destination + "/\(knitId)/\(file)", encoding: .utf8)
}

/// Files (relative paths, sorted) a pulled Data holds.
func pulledFiles(_ knit: KnitInstance, _ knitId: String) throws -> [String] {
    let destination = try makeScratchDirectory(knit, "pulled")
    let pulled = knit.runKnit(["data", "pull", "-x", knitId, destination])
    try #require(pulled.status == 0, "knit data pull \(knitId): \(pulled.stderr)")
    let root = destination + "/\(knitId)"
    let enumerator = FileManager.default.enumerator(atPath: root)
    var files: [String] = []
    while let next = enumerator?.nextObject() as? String {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: root + "/" + next, isDirectory: &isDirectory)
        if exists, !isDirectory.boolValue {
            files.append(next)
        }
    }
    return files.sorted()
}

/// A run's log as `knit run show --log` prints it (empty when the CLI fails).
func runLog(_ knit: KnitInstance, _ runId: String) -> String {
    let shown = knit.runKnit(["run", "show", "--log", runId])
    return shown.status == 0 ? shown.stdoutText : ""
}

/// A fresh tag namespace per test, so tests sharing an instance never feed each other's plans.
func uniqueKey(_ prefix: String) -> String { "\(prefix)\(UUID().uuidString.prefix(6).lowercased())" }
