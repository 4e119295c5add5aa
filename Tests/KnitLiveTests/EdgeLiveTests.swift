import Foundation
import KnitCore
import KnitTesting
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension Live {
    /// The deployment edge in front of knitd: nginx's request buffering, its own error answers, the log
    /// redaction, and the handouts knitadm writes.
    @Suite(.knitInstance(.init(threads: 16, transferSlots: 8)))
    struct NginxEdges {
        /// F5: slow JSON bodies are read by nginx, not by knitd. 70 connections of one user trickle a
        /// `PUT /api/data/ID` body (1000 bytes announced, one byte a second) for 15 s, far more than knitd's
        /// 16 threads; another user's whoami, find and a small upload still answer at once.
        @Test func slowJSONBodiesDoNotPinKnitdThreads() throws {
            let knit = try LiveKnit.instance()
            let dir = try makeScratchDirectory(knit, "slow-json-target")
            try "target\n".write(toFile: dir + "/t.txt", atomically: true, encoding: .utf8)
            let target = try push(knit, dir, tags: ["slow:target"])

            let scriptPath = knit.root + "/slow-json.py"
            try slowJSONScript.write(toFile: scriptPath, atomically: true, encoding: .utf8)
            let clients = 70
            let trickle = try knit.background(
                "/usr/bin/env",
                [
                    "python3", scriptPath, String(knit.port), knit.caPath, knit.token(for: "alice"),
                    "/api/data/\(target.knitId)", String(clients), "15",
                ],
                name: "slow-json"
            )
            defer { trickle.stop(signal: SIGKILL) }
            #expect(
                eventually(timeout: 20) { trickle.stdoutText.contains("started \(clients)") },
                "the slow clients did not all connect: \(trickle.stdoutText) \(trickle.stderrText)"
            )
            // Long enough for unbuffered bodies to have reached knitd and taken every thread.
            usleep(2_000_000)
            #expect(trickle.isRunning, "the slow clients ended early: \(trickle.stdoutText) \(trickle.stderrText)")

            var start = Date()
            let whoami = knit.request("GET", "/api/whoami", user: "admin", timeout: 10)
            let whoamiSeconds = Date().timeIntervalSince(start)
            #expect(whoami.status == 200, "\(whoami.status) \(whoami.text)")
            #expect(whoamiSeconds < 1, "whoami took \(whoamiSeconds) s")

            start = Date()
            let find = knit.request("GET", "/api/data/?tag=slow:target", user: "admin", timeout: 10)
            let findSeconds = Date().timeIntervalSince(start)
            #expect(find.status == 200, "\(find.status) \(find.text)")
            #expect(findSeconds < 1, "find took \(findSeconds) s")

            let archive = knit.root + "/slow-json-small.tar.gz"
            try makeValidArchive(knit, archive, bytes: 4096)
            start = Date()
            let upload = knit.request(
                "POST",
                "/api/data/?tag=slow:upload",
                user: "admin",
                headers: ["Content-Type: application/tar+gzip"],
                bodyFile: archive,
                timeout: 10
            )
            let uploadSeconds = Date().timeIntervalSince(start)
            #expect(upload.status == 200, "\(upload.status) \(upload.text)")
            #expect(uploadSeconds < 1, "upload took \(uploadSeconds) s")
            print(
                "slow JSON bodies (\(clients) clients): whoami \(whoamiSeconds) s, find \(findSeconds) s,"
                    + " upload \(uploadSeconds) s"
            )

            trickle.stop(signal: SIGKILL)
            // The trickled bodies never completed: the tags are unchanged.
            #expect(try detail(knit, target.knitId).tagStrings.contains("slow:target"))
        }

        /// Uploads still stream without a size limit (they bypass the 8 MiB cap of JSON bodies).
        @Test func uploadsLargerThanTheJSONCapStillStream() throws {
            let knit = try LiveKnit.instance()
            let dir = try makeScratchDirectory(knit, "big-upload")
            try writeRandomFile(dir + "/big.bin", bytes: 12 << 20)
            let pushed = try push(knit, dir, tags: ["big:upload"])
            #expect(pushed.knitId.isEmpty == false)
        }

        /// F18: errors nginx answers itself have knitd's JSON shape and type.
        @Test func nginxOwnErrorsAreKnitJSON() throws {
            let knit = try LiveKnit.instance()
            func expectKnitJSON(_ status: Int, _ body: String, _ type: String?, _ what: String) {
                #expect(type?.hasPrefix("application/json") == true, "\(what): Content-Type \(type ?? "none")")
                let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
                for key in ["message", "reason", "advice"] {
                    #expect((object?[key] as? String)?.isEmpty == false, "\(what): no \(key) in \(body)")
                }
            }
            func fetch(_ args: [String]) -> (status: Int, type: String?, body: String) {
                let marker = "\n@@knit@@"
                let result = knit.curl(
                    ["-o", "-", "-w", marker + "%{http_code} %{content_type}", "--max-time", "20"] + args
                )
                let parts = result.stdoutText.components(separatedBy: marker)
                let tail = (parts.last ?? "").split(separator: " ", maxSplits: 1).map(String.init)
                return (Int(tail.first ?? "") ?? 0, tail.count > 1 ? tail[1] : nil, parts.dropLast().joined())
            }

            // 400: two Authorization headers.
            let token = knit.token(for: "alice")
            let twice = fetch([
                "-H", "Authorization: Bearer \(token)", "-H", "Authorization: Bearer \(token)",
                knit.apiRoot + "/whoami",
            ])
            #expect(twice.status == 400)
            expectKnitJSON(twice.status, twice.body, twice.type, "two Authorization headers")

            // 400: a malformed request line (raw bytes over TLS).
            let raw = knit.run(
                "/usr/bin/env",
                [
                    "python3", "-c",
                    """
                    import socket, ssl, sys
                    ctx = ssl.create_default_context(cafile=sys.argv[2])
                    raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                    s.sendall(b"NOT A REQUEST LINE\\r\\n\\r\\n")
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    sys.stdout.write(data.decode(errors="replace"))
                    """,
                    String(knit.port), knit.caPath,
                ]
            )
            let rawHead = raw.stdoutText.components(separatedBy: "\r\n\r\n").first ?? ""
            #expect(rawHead.hasPrefix("HTTP/1.1 400"), "\(raw.stdoutText) \(raw.stderr)")
            expectKnitJSON(
                400,
                raw.stdoutText.components(separatedBy: "\r\n\r\n").dropFirst().joined(),
                rawHead.contains("Content-Type: application/json") ? "application/json" : nil,
                "malformed request line"
            )

            // 404: a URL nginx itself refuses (an internal location asked from outside).
            let missing = fetch([knit.baseURL + "/_knit_error/404"])
            #expect(missing.status == 404)
            expectKnitJSON(missing.status, missing.body, missing.type, "internal location")

            // 413: a JSON body over the 8 MiB cap.
            let bigJSON = knit.root + "/big.json"
            try Data(repeating: UInt8(ascii: " "), count: 9 << 20).write(to: URL(fileURLWithPath: bigJSON))
            let tooLarge = fetch([
                "-X", "PUT", "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json",
                "--data-binary", "@" + bigJSON, knit.apiRoot + "/data/00000000-0000-0000-0000-000000000000",
            ])
            #expect(tooLarge.status == 413)
            expectKnitJSON(tooLarge.status, tooLarge.body, tooLarge.type, "9 MiB JSON body")

            // 414: a 100 KB URL. nginx answers while the client may still be sending, so the client can lose
            // the answer to a reset: try a few times; a 40 KB URL always arrives whole.
            for length in [40_000, 100_000] {
                let url = knit.apiRoot + "/data/?tag=k:" + String(repeating: "a", count: length)
                var long = fetch(["-H", "Authorization: Bearer \(token)", url])
                for _ in 0..<10 where long.status == 0 { long = fetch(["-H", "Authorization: Bearer \(token)", url]) }
                #expect(long.status == 414, "\(length): \(long)")
                expectKnitJSON(long.status, long.body, long.type, "\(length)-byte URL")
            }

            // knitd down: nginx's 502 is the same shape.
            knit.killKnitd(signal: SIGTERM)
            let down = fetch([knit.apiRoot + "/health"])
            #expect(down.status == 502)
            expectKnitJSON(down.status, down.body, down.type, "knitd down")
            try knit.restartKnitd()
        }

        /// F18: knitd's 401 challenges reach the client through nginx.
        @Test func unauthorizedAnswersCarryTheirChallengesThroughNginx() throws {
            let knit = try LiveKnit.instance()
            func challenges(_ extra: [String]) -> [String] {
                let result = knit.curl(["-s", "-D", "-", "-o", "/dev/null"] + extra + [knit.apiRoot + "/whoami"])
                return result.stdoutText.components(separatedBy: "\r\n")
                    .filter { $0.lowercased().hasPrefix("www-authenticate:") }
                    .map { $0.dropFirst("www-authenticate:".count).trimmingCharacters(in: .whitespaces) }
            }
            #expect(challenges([]) == [#"Bearer realm="knit""#, #"Basic realm="knit""#])
            #expect(challenges(["-u", "alice:knit_wrong"]) == [#"Bearer realm="knit""#, #"Basic realm="knit""#])
            #expect(challenges(["-H", "Authorization: Bearer knit_wrong"]) == [#"Bearer realm="knit""#])
            #expect(challenges(["-H", "Authorization: Bearer \(knit.token(for: "alice"))"]).isEmpty)
        }

        /// F16: a token in a URL is refused by nginx before anything logs it, and no log holds it.
        @Test func tokensInURLsAreRefusedAndNeverLogged() throws {
            let knit = try LiveKnit.instance()
            let token = knit.token(for: "alice")
            try #require(token.hasPrefix("knit_"))
            let encoded = "knit%5F" + token.dropFirst("knit_".count)
            for path in [
                "/api/whoami?token=\(token)", "/api/data/?access_token=\(token)", "/api/\(token)",
                "/api/data/\(token)/", "/api/whoami?t=\(encoded)", "/v2/?token=\(token)", "/?token=\(token)",
            ] {
                let response = knit.request("GET", path, user: nil)
                #expect(response.status == 400, "\(path): \(response.status) \(response.text)")
                #expect(errorMessage(response)?.contains("URL") == true, "\(path): \(response.text)")
            }
            // Text that only resembles a token (other length) is an ordinary query.
            let lookalike = knit.request("GET", "/api/data/?tag=name:knit_model_v2", user: "alice")
            #expect(lookalike.status == 200, "\(lookalike.text)")
            // Spelled so that nginx's check misses it, it reaches knitd, which answers 404 and keeps it out of
            // its log metadata.
            let disguised = knit.request("GET", "/api/%6Bnit_" + token.dropFirst(5), user: nil)
            #expect(disguised.status == 401 || disguised.status == 404, "\(disguised.text)")

            let logDirectory = knit.root + "/log"
            let names = try FileManager.default.subpathsOfDirectory(atPath: logDirectory)
            #expect(names.contains("nginx-access.log"))
            var checked = 0
            for name in names {
                let path = logDirectory + "/" + name
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                checked += 1
                #expect(data.range(of: Data(token.utf8)) == nil, "\(name) holds the token")
                #expect(data.range(of: Data(token.dropFirst(5).utf8)) == nil, "\(name) holds the token's secret part")
            }
            #expect(checked >= 3)
            let access = (try? String(contentsOfFile: logDirectory + "/nginx-access.log", encoding: .utf8)) ?? ""
            #expect(access.contains("[query not logged]"), "\(access.suffix(2000))")
        }

        /// Issue item 18: knitadm writes a second handout for Knitfab's own CLI, whose apiRoot carries the
        /// token as user-info; curl sends that as Basic credentials, which knitd accepts.
        @Test func knitadmWritesAKnitfabHandoutWithTheTokenInItsApiRoot() throws {
            let knit = try LiveKnit.instance()
            let dir = try makeScratchDirectory(knit, "handouts")
            let handout = dir + "/bob.knitprofile"
            let added = knit.knitadm([
                "user", "add", "bob", "--role", "reader", "--handout", handout, "--api-root", knit.apiRoot,
                "--ca", knit.caPath,
            ])
            try #require(added.status == 0, "\(added.stderr)")
            #expect(added.stderr.contains(handout + "-knitfab"))
            for path in [handout, handout + "-knitfab"] {
                let attributes = try FileManager.default.attributesOfItem(atPath: path)
                #expect((attributes[.posixPermissions] as? Int) == 0o600, "\(path)")
            }
            let ours = try String(contentsOfFile: handout, encoding: .utf8)
            let knitfab = try String(contentsOfFile: handout + "-knitfab", encoding: .utf8)
            let token = try #require(
                ours.split(separator: "\n").first { $0.hasPrefix("token: ") }.map { String($0.dropFirst(7)) }
            )
            let apiRootLine = try #require(knitfab.split(separator: "\n").first { $0.hasPrefix("apiRoot: ") })
            let apiRoot = String(apiRootLine.dropFirst("apiRoot: ".count))
            #expect(apiRoot == "https://bob:\(token)@127.0.0.1:\(knit.port)/api")
            #expect(!knitfab.contains("token:"), "Knitfab's CLI ignores a token line: \(knitfab)")
            // The same CA as ours.
            let caLine = ours.split(separator: "\n").first { $0.hasPrefix("  ca: ") }
            #expect(caLine != nil && knitfab.contains(String(caLine!)))

            // curl with the URL's user-info sends Basic credentials.
            let whoami = knit.curl(["-f", apiRoot + "/whoami"])
            #expect(whoami.status == 0, "\(whoami.stderr)")
            #expect(whoami.stdoutText.contains(#""name":"bob""#), "\(whoami.stdoutText)")
            let withoutToken = knit.curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", knit.apiRoot + "/whoami"])
            #expect(withoutToken.stdoutText == "401")
        }
    }
}

/// 70 (argv[5]) TLS connections that each send the head of a `PUT` with `Content-Length: 1000` and then one
/// byte of the JSON body a second, for argv[6] seconds; prints "started N" once all of them sent their head.
private let slowJSONScript = """
    import socket, ssl, sys, time
    port, ca, token, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    count, seconds = int(sys.argv[5]), float(sys.argv[6])
    ctx = ssl.create_default_context(cafile=ca)
    head = ("PUT %s HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nAuthorization: Bearer %s\\r\\n"
            "Content-Type: application/json\\r\\nContent-Length: 1000\\r\\n\\r\\n{" % (path, token)).encode()
    sockets = []
    for _ in range(count):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
        s.sendall(head)
        sockets.append(s)
    print("started %d" % len(sockets), flush=True)
    end = time.time() + seconds
    while time.time() < end:
        time.sleep(1)
        for s in sockets:
            try:
                s.sendall(b" ")
            except OSError:
                pass
    print("done", flush=True)
    """
