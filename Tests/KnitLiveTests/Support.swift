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
        Issue.record("not a Data Detail: \(String(decoding: data.prefix(500), as: UTF8.self))", sourceLocation: sourceLocation)
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
