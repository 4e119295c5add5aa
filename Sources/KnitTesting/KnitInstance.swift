// Test support only: full Foundation is fine here because this module never ships.
import Foundation
import KnitCore
import KnitSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A real, isolated Knit on loopback for one test suite: its own home under /tmp, its own CA and
/// server certificate (installer/make-tls.sh), its own knitd on a unix socket and its own nginx
/// (rendered from nginx/knit.conf.template) on an ephemeral port, plus the users `admin`
/// (admin), `alice` (user) and `rita` (reader), each with a temporary HOME and a project
/// directory where `knit init <handout>` was run.
///
/// Every process it starts is stopped by pid in `stop()`; `deinit` and an `atexit` hook are
/// backstops, and a later instance removes the leftovers of a test process that crashed.
public final class KnitInstance: @unchecked Sendable {
    // @unchecked: the only mutable state (the process handles and the stopped flag) is behind
    // `processes`; everything else is immutable after init.

    public struct Options: Sendable {
        public var threads: Int
        /// With `followSlots`, must stay below `threads` (knitd refuses otherwise).
        public var transferSlots: Int
        /// Followed run logs at once.
        public var followSlots: Int
        /// The most of either pool one user may hold (knitd's default, half, when nil).
        public var slotsPerUser: Int?
        public var logLevel: String
        public var extraKnitdArguments: [String]
        /// (name, role) of the users to create; each gets a handout and an initialised project.
        public var users: [(name: String, role: String)]
        /// Start a real image registry (Debian's `/usr/bin/docker-registry`, rendered from
        /// registry/config.yml.template) on a unix socket behind this instance's nginx (`/v2/`);
        /// without it `/v2/` answers 404.
        public var registry: Bool

        public init(
            threads: Int = 16,
            transferSlots: Int = 8,
            followSlots: Int = 4,
            slotsPerUser: Int? = nil,
            logLevel: String = "debug",
            extraKnitdArguments: [String] = [],
            users: [(name: String, role: String)] = [("admin", "admin"), ("alice", "user"), ("rita", "reader")],
            registry: Bool = false
        ) {
            self.threads = threads
            self.transferSlots = transferSlots
            self.followSlots = followSlots
            self.slotsPerUser = slotsPerUser
            self.logLevel = logLevel
            self.extraKnitdArguments = extraKnitdArguments
            self.users = users
            self.registry = registry
        }
    }

    /// Repository checkout that holds nginx/, installer/ and Sources/.
    public let packageRoot: String
    /// Directory holding knitd, knit and knitadm.
    public let binDir: String
    /// Everything of this instance lives below this directory (removed by `stop()`).
    public let root: String
    /// The Knit home passed to knitd/knitadm (db/, data/, staging/, run/).
    public let home: String
    public let port: Int
    /// `https://127.0.0.1:PORT/api`
    public let apiRoot: String
    /// `https://127.0.0.1:PORT`
    public let baseURL: String
    public let caPath: String
    public let socketPath: String
    public let knitdLogPath: String
    public let nginxErrorLogPath: String
    public let options: Options
    /// The docker-registry's own unix socket (nil without ``Options/registry``); clients use
    /// ``registryHost`` (nginx) instead. Laid out as knit-up does: `HOME/run/registry/registry.sock`.
    public let registrySocketPath: String?
    /// `127.0.0.1:PORT` of nginx: the registry part of image names (`127.0.0.1:PORT/name:tag`).
    public var registryHost: String { "127.0.0.1:\(port)" }
    /// A directory holding `127.0.0.1:PORT/ca.crt` (and `localhost:PORT/ca.crt`), for
    /// `podman --cert-dir` / `knit-scheduler --registry-cert-dir`.
    public var registryCertDirectory: String { root + "/tls/certs.d/" + registryHost }
    public var registryLogPath: String { root + "/log/registry.log" }

    private let nginxDir: String
    /// The processes this instance started and whether it was stopped.
    private struct Processes {
        var knitd: BackgroundProcess?
        var nginx: BackgroundProcess?
        var registry: BackgroundProcess?
        var children: [BackgroundProcess] = []
        var stopped = false
    }
    private let processes = Mutex(Processes())

    public var knitdPath: String { binDir + "/knitd" }
    public var knitPath: String { binDir + "/knit" }
    public var knitadmPath: String { binDir + "/knitadm" }

    public init(options: Options = Options()) throws {
        self.options = options
        let fm = FileManager.default
        packageRoot =
            URL(fileURLWithPath: Self.sourceFile)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        binDir = try Self.locateBinaries(packageRoot: packageRoot)

        KnitInstanceRegistry.reapStale()

        root = try makeTemporaryDirectory(prefix: "knit-test-")
        home = root + "/home"
        nginxDir = root + "/nginx"
        socketPath = InstanceLayout(home: home).knitdSocket
        knitdLogPath = root + "/log/knitd.log"
        nginxErrorLogPath = root + "/log/nginx-error.log"
        caPath = root + "/tls/ca.crt"
        port = try freeLoopbackPort()
        registrySocketPath = options.registry ? InstanceLayout(home: home).registrySocket : nil
        baseURL = "https://127.0.0.1:\(port)"
        apiRoot = baseURL + "/api"

        for dir in [home, home + "/run", nginxDir, nginxDir + "/tmp", root + "/log", root + "/users"] {
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        try String(getpid()).write(toFile: root + "/owner.pid", atomically: true, encoding: .utf8)
        KnitInstanceRegistry.register(self)

        do {
            try setUp()
        } catch {
            stop()
            throw error
        }
    }

    private static let sourceFile: String = #filePath

    private static func locateBinaries(packageRoot: String) throws -> String {
        let fm = FileManager.default
        var candidates: [String] = []
        if let dir = ProcessInfo.processInfo.environment["KNIT_BIN_DIR"], !dir.isEmpty {
            candidates.append(dir)
        } else {
            // `swift test` runs the test bundle from the build directory that also holds the
            // freshly built executables, whatever --scratch-path was used.
            let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").standardizedFileURL
            var dir = exe.deletingLastPathComponent()
            for _ in 0..<3 {
                candidates.append(dir.path)
                dir = dir.deletingLastPathComponent()
            }
            candidates.append(packageRoot + "/.build/debug")
        }
        for dir in candidates {
            let all = ["knitd", "knit", "knitadm"].allSatisfy { fm.isExecutableFile(atPath: dir + "/" + $0) }
            if all { return dir }
        }
        throw KnitTestingError(
            "knitd, knit and knitadm not found in \(candidates.joined(separator: ", ")); "
                + "run `swift build` first (or set KNIT_BIN_DIR)"
        )
    }

    // MARK: - Start-up

    private func setUp() throws {
        let tls = try runProcess(
            "/bin/bash",
            [packageRoot + "/installer/make-tls.sh", root + "/tls", "127.0.0.1", "localhost"],
            scratchDirectory: root
        )
        guard tls.status == 0 else { throw KnitTestingError("make-tls.sh failed: \(tls.stderr)") }

        let initialised = knitadm(["init"])
        guard initialised.status == 0 else {
            throw KnitTestingError("knitadm init failed (\(initialised.status)): \(initialised.stderr)")
        }
        for user in options.users {
            let dir = userDirectory(user.name)
            try FileManager.default.createDirectory(atPath: dir + "/home", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: dir + "/project", withIntermediateDirectories: true)
            let added = knitadm([
                "user", "add", user.name, "--role", user.role, "--handout", handoutPath(for: user.name),
                "--api-root", apiRoot, "--ca", caPath,
            ])
            guard added.status == 0 else {
                throw KnitTestingError("knitadm user add \(user.name) failed (\(added.status)): \(added.stderr)")
            }
        }

        try renderNginxConfig()
        if options.registry { try startRegistry() }
        try startKnitd()
        let nginx = try BackgroundProcess(
            "/usr/sbin/nginx",
            ["-e", nginxErrorLogPath, "-p", nginxDir + "/", "-c", nginxDir + "/nginx.conf", "-g", "daemon off;"],
            stdoutPath: root + "/log/nginx.out",
            stderrPath: root + "/log/nginx.out"
        )
        processes.withLock { $0.nginx = nginx }
        try waitUntilHealthy(timeout: 20)

        for user in options.users {
            let result = runKnit(["init", handoutPath(for: user.name)], user: user.name)
            guard result.status == 0 else {
                throw KnitTestingError("knit init for \(user.name) failed (\(result.status)): \(result.stderr)")
            }
        }
    }

    private func renderNginxConfig() throws {
        let templatePath = packageRoot + "/nginx/knit.conf.template"
        let template = try String(contentsOfFile: templatePath, encoding: .utf8)
        let values: [String: String] = [
            "@USER@": "root root",
            "@PIDFILE@": nginxDir + "/nginx.pid",
            "@LOGDIR@": root + "/log",
            "@TEMPDIR@": nginxDir + "/tmp",
            "@LISTEN@": "127.0.0.1:\(port)",
            "@PORT@": String(port),
            "@SERVER_NAMES@": "127.0.0.1 localhost",
            "@CERT@": root + "/tls/server.crt",
            "@KEY@": root + "/tls/server.key",
            "@SOCKET@": socketPath,
            "@WEBROOT@": packageRoot + "/web",
            "@UPLOAD_LIMIT@": "0",
            "@REGISTRY@": registrySocketPath == nil ? "off" : "on",
            // Without a registry nginx never connects there (it answers 404 first), but the
            // directive must still name a socket.
            "@REGISTRY_SOCKET@": registrySocketPath ?? home + "/run/registry/none.sock",
        ]
        let rendered = Self.render(template, values)
        // Only comment lines may still mention a placeholder.
        for line in rendered.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).hasPrefix("#") {
            if line.contains(/@[A-Z_]+@/) {
                throw KnitTestingError("unrendered placeholder in \(templatePath): \(line)")
            }
        }
        try rendered.write(toFile: nginxDir + "/nginx.conf", atomically: true, encoding: .utf8)
        let checked = run(
            "/usr/sbin/nginx",
            ["-t", "-q", "-e", nginxErrorLogPath, "-p", nginxDir + "/", "-c", nginxDir + "/nginx.conf"]
        )
        guard checked.status == 0 else {
            throw KnitTestingError("nginx -t rejected the config rendered from \(templatePath): \(checked.stderr)")
        }
    }

    /// Renders registry/config.yml.template, starts docker-registry and waits until it answers
    /// `GET /v2/` on its unix socket. Also writes the cert dir podman wants for the registry
    /// name (`certs.d/HOST:PORT/ca.crt`).
    private func startRegistry() throws {
        guard let registrySocketPath else { return }
        let fm = FileManager.default
        let binary = "/usr/bin/docker-registry"
        guard fm.isExecutableFile(atPath: binary) else {
            throw KnitTestingError("\(binary) not found: apt-get install docker-registry")
        }
        let templatePath = packageRoot + "/registry/config.yml.template"
        let template = try String(contentsOfFile: templatePath, encoding: .utf8)
        let rendered = Self.render(
            template,
            [
                "@REGISTRY_ROOT@": home + "/registry",
                "@REGISTRY_SOCKET@": registrySocketPath,
                "@REGISTRY_SECRET@": UUID().uuidString,
            ]
        )
        for line in rendered.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).hasPrefix("#") {
            if line.contains(/@[A-Z_]+@/) {
                throw KnitTestingError("unrendered placeholder in \(templatePath): \(line)")
            }
        }
        let configDir = root + "/registry"
        try fm.createDirectory(atPath: configDir, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: home + "/registry", withIntermediateDirectories: true)
        // The socket's directory as knit-up makes it (setgid, no access for others); the registry runs
        // with umask 0007 like under knit-up.
        let socketDirectory = String(registrySocketPath.dropLast("/registry.sock".count))
        try fm.createDirectory(atPath: socketDirectory, withIntermediateDirectories: true)
        guard chmod(socketDirectory, 0o2750) == 0 else {
            throw KnitTestingError("chmod \(socketDirectory) failed: errno \(errno)")
        }
        try rendered.write(toFile: configDir + "/config.yml", atomically: true, encoding: .utf8)
        for name in [registryHost, "localhost:\(port)"] {
            let dir = root + "/tls/certs.d/" + name
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            if fm.fileExists(atPath: dir + "/ca.crt") { try fm.removeItem(atPath: dir + "/ca.crt") }
            try fm.copyItem(atPath: caPath, toPath: dir + "/ca.crt")
        }

        let process = try BackgroundProcess(
            "/bin/sh",
            ["-c", "umask 0007 && exec \"$0\" serve \"$1\"", binary, configDir + "/config.yml"],
            stdoutPath: registryLogPath,
            stderrPath: registryLogPath
        )
        try String(process.pid).write(toFile: root + "/registry.pid", atomically: true, encoding: .utf8)
        processes.withLock { $0.registry = process }
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if !process.isRunning {
                throw KnitTestingError(
                    "docker-registry exited with \(process.exitStatus ?? -1) during start-up\n"
                        + ((try? String(contentsOfFile: registryLogPath, encoding: .utf8)) ?? "")
                )
            }
            let probe = run(
                "/usr/bin/curl",
                [
                    "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                    "--unix-socket", registrySocketPath, "http://localhost/v2/",
                ]
            )
            if probe.stdoutText == "200" { return }
            usleep(100_000)
        }
        throw KnitTestingError("docker-registry did not answer on \(registrySocketPath) within 20 s")
    }

    static func render(_ template: String, _ values: [String: String]) -> String {
        var text = template
        for (key, value) in values { text = text.replacingOccurrences(of: key, with: value) }
        return text
    }

    private func startKnitd() throws {
        var arguments = [
            "--home", home, "--socket", socketPath, "--socket-mode", "0666",
            "--threads", String(options.threads), "--transfer-slots", String(options.transferSlots),
            "--follow-slots", String(options.followSlots),
            "--log-level", options.logLevel,
        ]
        if let perUser = options.slotsPerUser { arguments += ["--slots-per-user", String(perUser)] }
        arguments += options.extraKnitdArguments
        let process = try BackgroundProcess(
            knitdPath,
            arguments,
            stdoutPath: knitdLogPath,
            stderrPath: knitdLogPath
        )
        try String(process.pid).write(toFile: root + "/knitd.pid", atomically: true, encoding: .utf8)
        processes.withLock { $0.knitd = process }
    }

    /// Polls `GET /api/health` until it answers 200.
    public func waitUntilHealthy(timeout: Double) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var last = ""
        while Date() < deadline {
            let (knitd, nginx) = processes.withLock { ($0.knitd, $0.nginx) }
            if let knitd, !knitd.isRunning {
                throw KnitTestingError("knitd exited with \(knitd.exitStatus ?? -1) during start-up\n" + logTails())
            }
            if let nginx, !nginx.isRunning {
                throw KnitTestingError("nginx exited with \(nginx.exitStatus ?? -1) during start-up\n" + logTails())
            }
            let response = request("GET", "/api/health", user: nil, timeout: 2)
            if response.status == 200 { return }
            last = "HTTP \(response.status) \(response.text.prefix(200))"
            usleep(100_000)
        }
        throw KnitTestingError("Knit did not become healthy within \(Int(timeout)) s (last: \(last))\n" + logTails())
    }

    /// The last lines of knitd's and nginx's logs, for error messages.
    public func logTails(lines: Int = 25) -> String {
        func tail(_ path: String) -> String {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(no log)"
            return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
        }
        return "--- knitd log (\(knitdLogPath)):\n\(tail(knitdLogPath))\n"
            + "--- nginx error log:\n\(tail(nginxErrorLogPath))\n\(tail(root + "/log/nginx.out"))"
    }

    // MARK: - Users

    public func userDirectory(_ user: String) -> String { root + "/users/" + user }
    public func handoutPath(for user: String) -> String { userDirectory(user) + "/knitprofile" }
    /// The HOME the knit CLI runs with for this user.
    public func userHome(_ user: String) -> String { userDirectory(user) + "/home" }
    /// The project directory (cwd) where `knit init` was run for this user.
    public func projectDirectory(_ user: String) -> String { userDirectory(user) + "/project" }

    /// The user's API token, read from its handout.
    public func token(for user: String) -> String {
        guard let text = try? String(contentsOfFile: handoutPath(for: user), encoding: .utf8) else { return "" }
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("token:") else { continue }
            var value = trimmed.dropFirst("token:".count).trimmingCharacters(in: .whitespaces)
            if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                value = String(value.dropFirst().dropLast())
            }
            return value
        }
        return ""
    }

    // MARK: - Running things

    /// Environment for child processes: ours, minus anything that would point knit elsewhere.
    private func childEnvironment(home: String? = nil, extra: [String: String] = [:]) -> [String: String] {
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("KNIT_") }
        if let home { env["HOME"] = home }
        env["LC_ALL"] = "C.UTF-8"
        env.merge(extra) { _, new in new }
        return env
    }

    /// Runs the `knit` CLI as `user` (its temporary HOME; cwd defaults to its project directory). With
    /// `measuringMemory` the result carries its peak resident set (see `runProcess`).
    public func runKnit(
        _ args: [String],
        user: String = "alice",
        cwd: String? = nil,
        stdin: Data? = nil,
        env: [String: String] = [:],
        measuringMemory: Bool = false
    ) -> ProcessResult {
        run(
            knitPath,
            args,
            cwd: cwd ?? projectDirectory(user),
            environment: childEnvironment(home: userHome(user), extra: env),
            stdin: stdin,
            measuringMemory: measuringMemory
        )
    }

    /// Runs `knitadm --home HOME ARGS…`.
    public func knitadm(_ args: [String]) -> ProcessResult {
        run(knitadmPath, ["--home", home] + args, cwd: root, environment: childEnvironment())
    }

    /// Runs /usr/bin/curl with this instance's CA (`-sS --cacert CA` prepended).
    public func curl(_ args: [String], stdin: Data? = nil) -> ProcessResult {
        run(
            "/usr/bin/curl",
            ["-sS", "--cacert", caPath] + args,
            cwd: root,
            environment: childEnvironment(),
            stdin: stdin
        )
    }

    /// Runs any program with a clean-ish environment; never throws (status -1 when it cannot start).
    public func run(
        _ executable: String,
        _ args: [String],
        cwd: String? = nil,
        environment: [String: String]? = nil,
        stdin: Data? = nil,
        measuringMemory: Bool = false
    ) -> ProcessResult {
        do {
            return try runProcess(
                executable,
                args,
                cwd: cwd ?? root,
                environment: environment ?? childEnvironment(),
                stdin: stdin,
                scratchDirectory: root,
                measuringMemory: measuringMemory
            )
        } catch {
            return ProcessResult(status: -1, stdout: Data(), stderr: "\(error)")
        }
    }

    public struct HTTPResponse: Sendable {
        /// HTTP status, or 0 when curl got no response at all.
        public var status: Int
        public var body: Data
        public var curlStatus: Int32
        public var curlError: String
        public var text: String { String(decoding: body, as: UTF8.self) }
        /// The body parsed as JSON (dictionary or array), nil when it is not JSON.
        public var json: Any? { try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]) }
    }

    /// One HTTP request through nginx with curl. `user` nil sends no credentials.
    public func request(
        _ method: String,
        _ path: String,
        user: String? = "alice",
        headers: [String] = [],
        body: Data? = nil,
        bodyFile: String? = nil,
        timeout: Double = 60
    ) -> HTTPResponse {
        let marker = "\n@@knit-status@@"
        var args = ["-X", method, "--max-time", String(timeout), "-o", "-", "-w", marker + "%{http_code}"]
        if let user { args += ["-H", "Authorization: Bearer \(token(for: user))"] }
        for header in headers { args += ["-H", header] }
        if let bodyFile {
            args += ["--data-binary", "@" + bodyFile]
        } else if body != nil {
            args += ["--data-binary", "@-"]
        }
        args.append(baseURL + path)
        let result = curl(args, stdin: body)
        var data = result.stdout
        var status = 0
        if let range = data.range(of: Data(marker.utf8), options: .backwards) {
            status = Int(String(decoding: data[range.upperBound...], as: UTF8.self)) ?? 0
            data = data[..<range.lowerBound]
        }
        return HTTPResponse(status: status, body: Data(data), curlStatus: result.status, curlError: result.stderr)
    }

    /// Starts a background child owned by this instance (stopped by `stop()` at the latest).
    public func background(
        _ executable: String,
        _ args: [String],
        cwd: String? = nil,
        env: [String: String] = [:],
        stdinPath: String? = nil,
        name: String = "child"
    ) throws -> BackgroundProcess {
        let base = root + "/log/\(name)-\(UUID().uuidString.prefix(8))"
        let child = try BackgroundProcess(
            executable,
            args,
            cwd: cwd ?? root,
            environment: childEnvironment(extra: env),
            stdinPath: stdinPath,
            stdoutPath: base + ".out",
            stderrPath: base + ".err"
        )
        processes.withLock { $0.children.append(child) }
        return child
    }

    // MARK: - knitd control

    public var knitdPID: Int32? { processes.withLock { $0.knitd?.isRunning == true ? $0.knitd?.pid : nil } }
    public var nginxPID: Int32? { processes.withLock { $0.nginx?.isRunning == true ? $0.nginx?.pid : nil } }
    public var registryPID: Int32? {
        processes.withLock { $0.registry?.isRunning == true ? $0.registry?.pid : nil }
    }

    /// Sends `signal` to knitd and waits (up to `timeout` s) for it to exit; returns its exit status.
    @discardableResult
    public func killKnitd(signal sig: Int32 = SIGKILL, timeout: Double = 15) -> Int32? {
        guard let process = processes.withLock({ $0.knitd }) else { return nil }
        process.signal(sig)
        guard process.wait(timeout: timeout) else { return nil }
        return process.exitStatus
    }

    /// Stops knitd if it runs (SIGTERM), starts it again and waits until the API answers.
    public func restartKnitd(timeout: Double = 20) throws {
        if let process = processes.withLock({ $0.knitd }) { process.stop(signal: SIGTERM, grace: 15) }
        try startKnitd()
        try waitUntilHealthy(timeout: timeout)
    }

    // MARK: - Inspection

    /// Names in a directory below the home (e.g. "staging", "data"); empty when it does not exist.
    public func entries(_ relativePath: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: home + "/" + relativePath)) ?? []).sorted()
    }

    // MARK: - Shut-down

    /// Stops every process this instance started (by pid: SIGTERM, wait, SIGKILL) and deletes
    /// its directory (kept when KNIT_KEEP_TEST_DIRS=1, for post-mortems). Idempotent.
    public func stop() {
        let (knitd, nginx, registry, kids, first) = processes.withLock { state in
            defer { state.stopped = true }
            return (state.knitd, state.nginx, state.registry, state.children, !state.stopped)
        }
        for child in kids { child.stop(signal: SIGKILL, grace: 5) }
        knitd?.stop(signal: SIGTERM, grace: 15)
        nginx?.stop(signal: SIGTERM, grace: 10)
        registry?.stop(signal: SIGTERM, grace: 10)
        guard first else { return }
        KnitInstanceRegistry.unregister(self)
        if ProcessInfo.processInfo.environment["KNIT_KEEP_TEST_DIRS"] == "1" {
            FileHandle.standardError.write(Data("KnitInstance: kept \(root)\n".utf8))
        } else {
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    deinit {
        stop()
    }
}

/// Backstops for instances that were never stopped: an `atexit` hook for a normal exit, and a
/// reaper for directories left behind by a test process that crashed.
enum KnitInstanceRegistry {
    private struct Registry {
        var live: [ObjectIdentifier: KnitInstance] = [:]
        var hooked = false
    }
    private static let registry = Mutex(Registry())

    static func register(_ instance: KnitInstance) {
        registry.withLock { state in
            state.live[ObjectIdentifier(instance)] = instance
            if !state.hooked {
                state.hooked = true
                atexit { KnitInstanceRegistry.stopAll() }
            }
        }
    }

    static func unregister(_ instance: KnitInstance) {
        _ = registry.withLock { $0.live.removeValue(forKey: ObjectIdentifier(instance)) }
    }

    static func stopAll() {
        let instances = registry.withLock { Array($0.live.values) }
        for instance in instances { instance.stop() }
    }

    /// Removes /tmp/knit-test-* directories whose owning test process is gone, after killing the
    /// knitd/nginx they started. A pid is only signalled when its command line names that
    /// directory, so a recycled pid of an unrelated process is never touched.
    static func reapStale() {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: "/tmp") else { return }
        for name in names where name.hasPrefix("knit-test-") {
            let dir = "/tmp/" + name
            guard let ownerText = try? String(contentsOfFile: dir + "/owner.pid", encoding: .utf8),
                let owner = Int32(ownerText.trimmingCharacters(in: .whitespacesAndNewlines))
            else { continue }
            if kill(owner, 0) == 0 || errno == EPERM { continue }
            // nginx gets SIGTERM so that its master takes its workers down with it.
            for (pidFile, sig) in [
                (dir + "/knitd.pid", SIGKILL), (dir + "/nginx/nginx.pid", SIGTERM), (dir + "/registry.pid", SIGKILL),
            ] {
                guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
                    let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
                    let cmdline = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))
                else { continue }
                let command = String(decoding: cmdline.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
                if command.contains(dir) {
                    _ = kill(pid, sig)
                    for _ in 0..<100 where kill(pid, 0) == 0 { usleep(50_000) }
                }
            }
            try? fm.removeItem(atPath: dir)
        }
    }
}
