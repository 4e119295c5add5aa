import Foundation
import KnitCore
import KnitTesting
import Testing

extension Live {
    /// The image registry behind Knit's nginx, with real parts: docker-registry on loopback, nginx + TLS in
    /// front, knitd answering nginx's auth_request, podman as the docker-compatible client, `knit image load`,
    /// and knit-scheduler pulling a plan's `HOST:PORT/name:tag` image.
    @Suite(
        .knitInstance(.init(registry: true)),
        .enabled(if: registryTestTools)
    )
    struct RegistryLive {
        /// Status and headers (lower-case names) of one request through nginx.
        private func head(
            _ knit: KnitInstance,
            _ method: String,
            _ path: String,
            _ extra: [String] = []
        ) -> (status: Int, headers: [String: String], body: String) {
            let result = knit.curl(["-X", method, "-D", "-", "--max-time", "30"] + extra + [knit.baseURL + path])
            var status = 0
            var headers: [String: String] = [:]
            var body = ""
            let text = result.stdoutText
            let parts = text.components(separatedBy: "\r\n\r\n")
            for line in (parts.first ?? "").components(separatedBy: "\r\n") {
                if line.hasPrefix("HTTP/") {
                    status = Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
                } else if let colon = line.firstIndex(of: ":") {
                    headers[line[..<colon].lowercased()] = line[line.index(after: colon)...]
                        .trimmingCharacters(in: .whitespaces)
                }
            }
            body = parts.dropFirst().joined(separator: "\r\n\r\n")
            return (status, headers, body)
        }

        private func basic(_ user: String, _ token: String) -> String {
            "Authorization: Basic " + Data("\(user):\(token)".utf8).base64EncodedString()
        }

        /// podman with Knit's containers.conf (the store the executor uses).
        private func podman(_ knit: KnitInstance, _ args: [String]) -> ProcessResult {
            var env = ProcessInfo.processInfo.environment
            env["CONTAINERS_CONF"] = knit.packageRoot + "/containers/containers.conf"
            return knit.run("/usr/bin/podman", args, environment: env)
        }

        private func removeImages(_ knit: KnitInstance, _ names: [String]) {
            for name in names { _ = podman(knit, ["rmi", "--ignore", name]) }
        }

        @Test func anonymousCallsAreChallengedAndRolesDecideWhatPasses() throws {
            let knit = try LiveKnit.instance()
            let ping = head(knit, "GET", "/v2/")
            #expect(ping.status == 401)
            #expect(ping.headers["www-authenticate"] == #"Basic realm="Knit registry""#)
            #expect(ping.headers["docker-distribution-api-version"] == "registry/2.0")
            #expect(ping.body.contains("UNAUTHORIZED"))

            // A wrong token is the same 401; any real token may read.
            #expect(head(knit, "GET", "/v2/", ["-H", "Authorization: Bearer knit_nope"]).status == 401)
            #expect(head(knit, "GET", "/v2/", ["-H", basic("x", "not-a-token")]).status == 401)
            for user in ["admin", "alice", "rita"] {
                let read = head(knit, "GET", "/v2/", ["-H", basic(user, knit.token(for: user))])
                #expect(read.status == 200, "\(user): \(read.body)")
                #expect(read.headers["docker-distribution-api-version"] == "registry/2.0")
            }

            // A reader may not start an upload, even claiming to be a GET (nginx overrides the header).
            let reader = basic("rita", knit.token(for: "rita"))
            let denied = head(
                knit,
                "POST",
                "/v2/sneaky/blobs/uploads/",
                ["-H", reader, "-H", "X-Original-Method: GET"]
            )
            #expect(denied.status == 403)
            #expect(denied.body.contains("DENIED"))
            let writer = basic("alice", knit.token(for: "alice"))
            let started = head(knit, "POST", "/v2/allowed/blobs/uploads/", ["-H", writer])
            #expect(started.status == 202, "\(started.body)")
            // Relative Location (http.relativeurls): resolved against the URL the client used.
            #expect(started.headers["location"]?.hasPrefix("/v2/allowed/blobs/uploads/") == true)
        }

        /// F3: the registry has no authentication of its own, so it must not listen where any local user can
        /// reach it: no TCP port, and a unix socket in a directory only root, knit and nginx's group can enter.
        @Test func theRegistryListensOnNoTCPPortAndItsSocketIsClosedToOtherUsers() throws {
            let knit = try LiveKnit.instance()
            let socket = try #require(knit.registrySocketPath)
            let pid = try #require(knit.registryPID)

            // No TCP listener belongs to the registry process.
            let listening = knit.run("/usr/bin/ss", ["-H", "-l", "-t", "-n", "-p"])
            try #require(listening.status == 0, "ss: \(listening.stderr)")
            let registryLines = listening.stdoutText.split(separator: "\n").filter { $0.contains("pid=\(pid),") }
            #expect(registryLines.isEmpty, "the registry listens on TCP: \(registryLines)")

            // The socket answers root (nginx in tests) directly ...
            let direct = knit.run(
                "/usr/bin/curl",
                [
                    "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", socket,
                    "http://localhost/v2/_catalog",
                ]
            )
            #expect(direct.stdoutText == "200", "\(direct.stdoutText) \(direct.stderr)")
            // ... from a directory others cannot enter (setgid: the socket takes the directory's group, which
            // knit-up sets to www-data).
            let directory = (socket as NSString).deletingLastPathComponent
            var info = stat()
            try #require(stat(directory, &info) == 0)
            #expect(info.st_mode & 0o7777 == 0o2750, "socket directory mode \(String(info.st_mode & 0o7777, radix: 8))")
            try #require(stat(socket, &info) == 0)
            #expect(info.st_mode & 0o007 == 0, "socket mode \(String(info.st_mode & 0o777, radix: 8))")

            // An unprivileged local user: the instance's directories above the socket's are opened for the
            // check (traverse only), so the refusal comes from the socket's own directory.
            var opened: [(String, mode_t)] = []
            defer { for (path, mode) in opened { _ = chmod(path, mode) } }
            var path = directory
            while path != "/" && path != "" {
                path = (path as NSString).deletingLastPathComponent
                try #require(stat(path, &info) == 0)
                if info.st_mode & 0o001 == 0 {
                    opened.append((path, info.st_mode & 0o7777))
                    _ = chmod(path, (info.st_mode & 0o7777) | 0o011)
                }
            }
            let asNobody = knit.run(
                "/usr/bin/setpriv",
                [
                    "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                    "/usr/bin/python3", "-c",
                    "import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
                        + "try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n    print(type(e).__name__)\n"
                        + "else:\n    s.sendall(b'GET /v2/_catalog HTTP/1.0\\r\\n\\r\\n')\n    print(s.recv(100))\n",
                    socket,
                ]
            )
            #expect(
                asNobody.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "PermissionError",
                "nobody: \(asNobody.stdoutText) \(asNobody.stderr)"
            )
            let curlAsNobody = knit.run(
                "/usr/bin/setpriv",
                [
                    "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                    "/usr/bin/curl", "-sS", "--unix-socket", socket, "http://localhost/v2/_catalog",
                ]
            )
            #expect(curlAsNobody.status != 0, "curl as nobody: \(curlAsNobody.stdoutText)")
            // Through nginx the registry still works, with a token.
            let token = knit.token(for: "rita")
            let viaNginx = knit.curl(
                ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", "rita:\(token)", knit.baseURL + "/v2/_catalog"]
            )
            #expect(viaNginx.stdoutText == "200")
        }

        /// F16: a token in a registry URL is refused by nginx, so neither nginx's nor the registry's log holds it.
        @Test func aTokenInARegistryURLIsNeverLogged() throws {
            let knit = try LiveKnit.instance()
            let token = knit.token(for: "alice")
            let refused = head(knit, "GET", "/v2/_catalog?token=\(token)", ["-H", basic("alice", token)])
            #expect(refused.status == 400)
            let served = head(knit, "GET", "/v2/_catalog?n=10", ["-H", basic("alice", token)])
            #expect(served.status == 200)
            for path in [knit.registryLogPath, knit.root + "/log/nginx-access.log", knit.nginxErrorLogPath] {
                let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
                #expect(!text.contains(token.dropFirst(5)), "\(path) holds the token")
            }
        }

        @Test func podmanLogsInAndPushesWithAWriterTokenOnly() throws {
            let knit = try LiveKnit.instance()
            try registryTestImage(knit)
            let name = "\(knit.registryHost)/pushed-\(registryTestKey()):1"
            let tagged = podman(knit, ["tag", registryTestBaseImage, name])
            try #require(tagged.status == 0, "podman tag: \(tagged.stderr)")
            defer { removeImages(knit, [name]) }

            let authfile = try makeScratchDirectory(knit, "auth") + "/auth.json"
            let login = podman(
                knit,
                [
                    "login", "--authfile", authfile, "--cert-dir", knit.registryCertDirectory,
                    "-u", "alice", "-p", knit.token(for: "alice"), knit.registryHost,
                ]
            )
            #expect(login.status == 0, "podman login: \(login.stderr)")
            let badLogin = podman(
                knit,
                [
                    "login", "--authfile", authfile + ".bad", "--cert-dir", knit.registryCertDirectory,
                    "-u", "alice", "-p", "knit_wrong", knit.registryHost,
                ]
            )
            #expect(badLogin.status != 0)

            let pushed = podman(
                knit,
                [
                    "push", "--quiet", "--authfile", authfile, "--cert-dir", knit.registryCertDirectory, name,
                ]
            )
            #expect(pushed.status == 0, "podman push: \(pushed.stderr)\n\(knit.logTails())")

            let badToken = podman(
                knit,
                [
                    "push", "--quiet", "--cert-dir", knit.registryCertDirectory, "--creds", "alice:knit_wrong", name,
                ]
            )
            #expect(badToken.status != 0)
            #expect(badToken.stderr.lowercased().contains("unauthorized") || badToken.stderr.contains("401"))

            let readerName = "\(knit.registryHost)/by-reader-\(registryTestKey()):1"
            _ = podman(knit, ["tag", registryTestBaseImage, readerName])
            defer { removeImages(knit, [readerName]) }
            let byReader = podman(
                knit,
                [
                    "push", "--quiet", "--cert-dir", knit.registryCertDirectory,
                    "--creds", "rita:\(knit.token(for: "rita"))", readerName,
                ]
            )
            #expect(byReader.status != 0)
            #expect(
                byReader.stderr.contains("403") || byReader.stderr.lowercased().contains("denied"),
                "\(byReader.stderr)"
            )

            // The pushed manifest is there for every reader.
            let manifest = head(
                knit,
                "HEAD",
                "/v2/\(name.split(separator: "/", maxSplits: 1)[1].replacingOccurrences(of: ":", with: "/manifests/"))",
                [
                    "-H", basic("rita", knit.token(for: "rita")),
                    "-H",
                    "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
                ]
            )
            #expect(manifest.status == 200)
        }

        @Test func knitImageLoadPushesASavedArchiveThatPodmanPullsAndRuns() throws {
            let knit = try LiveKnit.instance()
            try registryTestImage(knit)
            let dir = try makeScratchDirectory(knit, "image")
            let archive = dir + "/quickstart.tar"
            let saved = podman(knit, ["save", "--quiet", "-o", archive, registryTestBaseImage])
            try #require(saved.status == 0, "podman save: \(saved.stderr)")

            let repository = "loaded-\(registryTestKey())"
            let loaded = knit.runKnit(["image", "load", "-i", archive, "-t", "\(repository):v1"])
            try #require(loaded.status == 0, "knit image load: \(loaded.stderr)\n\(knit.logTails())")
            let answer = try #require(try JSONSerialization.jsonObject(with: loaded.stdout) as? [String: String])
            let image = "\(knit.registryHost)/\(repository):v1"
            #expect(answer["image"] == image)
            let digest = try #require(answer["digest"])
            #expect(digest.hasPrefix("sha256:") && digest.count == 71)

            defer { removeImages(knit, [image]) }
            let pulled = podman(
                knit,
                [
                    "pull", "--quiet", "--cert-dir", knit.registryCertDirectory,
                    "--creds", "rita:\(knit.token(for: "rita"))", image,
                ]
            )
            try #require(pulled.status == 0, "podman pull: \(pulled.stderr)")
            let ran = podman(knit, ["run", "--rm", "--network", "none", image, "echo loaded-image-runs"])
            #expect(ran.status == 0, "podman run: \(ran.stderr)")
            #expect(ran.stdoutText.contains("loaded-image-runs"))
            let entrypoint = podman(knit, ["image", "inspect", "--format", "{{json .Config.Entrypoint}}", image])
            #expect(entrypoint.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == #"["/bin/sh","-c"]"#)

            // Loading it again sends nothing new: the registry has every blob (skipped by name).
            let again = knit.runKnit(["image", "load", "-i", archive, "-t", "\(repository):v1"])
            #expect(again.status == 0, "\(again.stderr)")
            #expect((try? JSONSerialization.jsonObject(with: again.stdout) as? [String: String])?["digest"] == digest)

            // From stdin and without -t: the archive's own name without its registry part.
            let piped = knit.runKnit(["image", "load"], stdin: try Data(contentsOf: URL(fileURLWithPath: archive)))
            #expect(piped.status == 0, "\(piped.stderr)")
            let pipedAnswer = try? JSONSerialization.jsonObject(with: piped.stdout) as? [String: String]
            #expect(pipedAnswer?["image"] == "\(knit.registryHost)/knit-quickstart:1")

            // An OCI layout archive works as well.
            let ociArchive = dir + "/quickstart-oci.tar"
            let ociSaved = podman(
                knit,
                ["save", "--quiet", "--format", "oci-archive", "-o", ociArchive, registryTestBaseImage]
            )
            try #require(ociSaved.status == 0, "podman save oci: \(ociSaved.stderr)")
            let oci = knit.runKnit(["image", "load", "-i", ociArchive, "-t", "\(repository):oci"])
            #expect(oci.status == 0, "knit image load (oci): \(oci.stderr)")
            let ociImage = "\(knit.registryHost)/\(repository):oci"
            defer { removeImages(knit, [ociImage]) }
            let ociPulled = podman(
                knit,
                [
                    "pull", "--quiet", "--cert-dir", knit.registryCertDirectory,
                    "--creds", "rita:\(knit.token(for: "rita"))", ociImage,
                ]
            )
            #expect(ociPulled.status == 0, "podman pull (oci): \(ociPulled.stderr)")

            // A reader cannot load; the message says why.
            let byReader = knit.runKnit(["image", "load", "-i", archive, "-t", "\(repository):reader"], user: "rita")
            #expect(byReader.status != 0)
            #expect(byReader.stderr.contains("403"), "\(byReader.stderr)")
            // Not an archive at all.
            let garbage = knit.runKnit(["image", "load", "-t", "x:1"], stdin: Data("not a tar".utf8))
            #expect(garbage.status != 0)
            #expect(garbage.stderr.contains("not a tar archive"), "\(garbage.stderr)")
        }

        @Test func aPlanNamingTheRegistryImageRunsAfterTheSchedulerPullsIt() throws {
            let knit = try LiveKnit.instance()
            try registryTestImage(knit)
            let dir = try makeScratchDirectory(knit, "plan-image")
            let archive = dir + "/quickstart.tar"
            let saved = podman(knit, ["save", "--quiet", "-o", archive, registryTestBaseImage])
            try #require(saved.status == 0, "podman save: \(saved.stderr)")
            let repository = "planned-\(registryTestKey())"
            let image = "\(knit.registryHost)/\(repository):1"
            let loaded = knit.runKnit(["image", "load", "-i", archive, "-t", "\(repository):1"])
            try #require(loaded.status == 0, "knit image load: \(loaded.stderr)")
            defer { removeImages(knit, [image]) }
            // The scheduler must pull it: not in the local store yet.
            #expect(podman(knit, ["image", "exists", image]).status != 0)

            // What knit-up writes for the scheduler: an auth file with a reader's token, and the CA.
            let auth = dir + "/scheduler-auth.json"
            let credentials = Data("knit-scheduler:\(knit.token(for: "rita"))".utf8).base64EncodedString()
            try #"{"auths":{"\#(knit.registryHost)":{"auth":"\#(credentials)"}}}"#
                .write(toFile: auth, atomically: true, encoding: .utf8)
            let label = "knit-live-\(UUID().uuidString.prefix(8).lowercased())"
            let scheduler = try knit.background(
                String(knit.knitdPath.dropLast("knitd".count)) + "knit-scheduler",
                [
                    "--home", knit.home, "--containers-conf", knit.packageRoot + "/containers/containers.conf",
                    "--instance", label, "--log-level", "debug", "--cpu-budget", "64000",
                    "--registry-authfile", auth, "--registry-cert-dir", knit.registryCertDirectory,
                ],
                name: "knit-scheduler"
            )
            defer {
                scheduler.stop(signal: SIGTERM, grace: 10)
                for id in podman(knit, ["ps", "-aq", "--filter", "label=knit.executor=\(label)"]).stdoutText
                    .split(separator: "\n")
                {
                    _ = podman(knit, ["rm", "-f", "-t", "0", String(id)])
                }
            }

            let key = "reg" + registryTestKey()
            let plan = try registryTestPlan(
                knit,
                image: image,
                script: "cat /in/data/v > /out/copy/v && echo ran-from-registry",
                input: "\(key):in",
                output: "\(key):out"
            )
            #expect(plan.image == image)
            let valueDir = try makeScratchDirectory(knit, "value")
            try "through the registry\n".write(toFile: valueDir + "/v", atomically: true, encoding: .utf8)
            _ = try push(knit, valueDir, tags: ["\(key):in"])
            let run = try registryTestFinishedRun(knit, planId: plan.planId, timeout: 90) {
                String(scheduler.stderrText.suffix(3000)) + "\n" + knit.logTails()
            }
            #expect(run.status == "done", "exit: \(String(describing: run.exit))")
            let pulledDir = try makeScratchDirectory(knit, "pulled")
            let pulledData = knit.runKnit(["data", "pull", "-x", run.outputs[0].knitId, pulledDir])
            #expect(pulledData.status == 0, "\(pulledData.stderr)")
            let copied = try? String(contentsOfFile: pulledDir + "/\(run.outputs[0].knitId)/v", encoding: .utf8)
            #expect(copied == "through the registry\n")
            let log = knit.runKnit(["run", "show", "--log", run.runId])
            #expect(log.stdoutText.contains("ran-from-registry"), "\(log.stdoutText) \(log.stderr)")

            // A name the registry does not have fails the Run as image-not-found, with the registry's reason.
            let missing = try registryTestPlan(
                knit,
                image: "\(knit.registryHost)/no-such-\(key):1",
                script: "true",
                input: "\(key):in",
                output: nil
            )
            let failed = try registryTestFinishedRun(knit, planId: missing.planId, timeout: 60) {
                String(scheduler.stderrText.suffix(3000))
            }
            #expect(failed.status == "failed")
            let message = failed.exit?.message ?? ""
            #expect(message.contains("[ImageNotFound] cannot pull \(knit.registryHost)/no-such-\(key):1"), "\(message)")
        }
    }
}

extension Live {
    /// An instance without a registry still renders a valid nginx config; /v2/ is a 404 that asks nobody.
    @Suite(.knitInstance(.init(users: [("alice", "user")])))
    struct NoRegistryLive {
        @Test func v2AnswersNotFoundWithoutARegistry() throws {
            let knit = try LiveKnit.instance()
            #expect(knit.registrySocketPath == nil)
            for user: String? in [nil, "alice"] {
                let response = knit.request("GET", "/v2/", user: user)
                #expect(response.status == 404)
                #expect(response.text.contains("no image registry"), "\(response.text)")
            }
            #expect(knit.request("GET", "/api/health", user: nil).status == 200)
        }
    }
}

// Helpers of this file only (the shared pipeline helpers live in Support.swift and may change).

private let registryTestTools =
    FileManager.default.isExecutableFile(atPath: "/usr/bin/podman")
    && FileManager.default.isExecutableFile(atPath: "/usr/bin/docker-registry")

/// The busybox image of examples/quickstart (built when missing).
private let registryTestBaseImage = "localhost/knit-quickstart:1"

private func registryTestImage(_ knit: KnitInstance) throws {
    let result = knit.run("/bin/sh", [knit.packageRoot + "/examples/quickstart/build-image.sh"])
    try #require(result.status == 0, "examples/quickstart/build-image.sh failed: \(result.stderr)")
}

private func registryTestKey() -> String { String(UUID().uuidString.prefix(8).lowercased()) }

private func registryTestPlan(
    _ knit: KnitInstance,
    image: String,
    script: String,
    input: String,
    output: String?
) throws -> PlanDetailJSON {
    var yaml = """
        image: "\(image)"
        args: ["\(script)"]
        inputs:
          - path: "/in/data"
            tags: ["\(input)"]

        """
    if let output { yaml += "outputs:\n  - path: \"/out/copy\"\n    tags: [\"\(output)\"]\n" }
    yaml += "log:\n  tags: [\"\(input)-log\"]\n"
    yaml += "resources: {cpu: \"250m\", memory: \"32Mi\"}\n"
    let path = try makeScratchDirectory(knit, "plan") + "/plan.yaml"
    try yaml.write(toFile: path, atomically: true, encoding: .utf8)
    let applied = knit.runKnit(["plan", "apply", path])
    try #require(applied.status == 0, "knit plan apply: \(applied.stderr)\n\(yaml)")
    return try jsonDecoder.decode(PlanDetailJSON.self, from: applied.stdout)
}

/// The plan's only Run once it is done or failed.
private func registryTestFinishedRun(
    _ knit: KnitInstance,
    planId: String,
    timeout: Double,
    context: () -> String
) throws -> RunDetailJSON {
    var last: [RunDetailJSON] = []
    let finished = eventually(timeout: timeout) {
        let found = knit.runKnit(["run", "find", "-p", planId])
        last = (try? jsonDecoder.decode([RunDetailJSON].self, from: found.stdout)) ?? []
        return last.count == 1 && (last[0].status == "done" || last[0].status == "failed")
    }
    try #require(finished, "plan \(planId): no finished run within \(timeout) s: \(last)\n\(context())")
    return last[0]
}
