import KnitCore
import KnitKubeClient
import KnitKubernetes
import KnitSystem
import KnitTestSupport
import Testing

/// An HTTPS server speaking the few API-server answers the client relies on (201 with the stored object,
/// 409 `AlreadyExists` and 404 `NotFound` as `Status` objects, 200 on delete), over real TLS that requires
/// (`cert`) or ignores (`token`) a client certificate from the test CA. It records, in annotations of the
/// stored object, the client certificate's CN, the Authorization header and the query it saw.
private let apiServerScript = #"""
    import http.server, json, ssl, sys, time
    ca, cert, key, mode = sys.argv[1:5]
    store = {}
    def status(code, reason, message):
        return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
                "code": code}
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def reply(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n)) if n else None
        def do_POST(self):
            obj = self.body()
            path, _, query = self.path.partition("?")
            name = obj["metadata"]["name"]
            if path + "/" + name in store:
                return self.reply(409, status(409, "AlreadyExists", '"%s" already exists' % name))
            peer = self.connection.getpeercert() or {}
            cn = [v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"]
            obj["metadata"]["uid"] = "uid-1"
            obj["metadata"]["annotations"] = {"seen-cn": cn[0] if cn else "",
                "seen-auth": self.headers.get("Authorization") or "", "seen-query": query}
            store[path + "/" + name] = obj
            self.reply(201, obj)
        def chunked(self, pieces, pause=0.05):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for piece in pieces:
                time.sleep(pause)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        def do_GET(self):
            path, _, query = self.path.partition("?")
            if path == "/api/v1/namespaces/n/pods" and "watch=true" in query:
                added = json.dumps({"type": "ADDED", "object": {"metadata": {"name": "p", "resourceVersion": "43",
                    "annotations": {"seen-query": query}}}}).encode() + b"\n"
                modified = json.dumps({"type": "MODIFIED", "object": {"status": {"phase": "Running"}}}).encode()
                gone = json.dumps({"type": "ERROR", "object": status(410, "Expired", "too old resource version")})
                return self.chunked([added[:20], added[20:] + modified[:7], modified[7:] + b"\n\n",
                    gone.encode() + b"\n"])
            if path == "/api/v1/namespaces/n/pods":
                return self.reply(200, {"kind": "PodList", "metadata": {"resourceVersion": "42"},
                    "items": [{"metadata": {"name": "p", "annotations": {"seen-query": query}}}]})
            if path == "/api/v1/namespaces/n/pods/quiet/log":
                return self.chunked([b"after a silence\n"], pause=4)
            if path == "/api/v1/namespaces/n/pods/p/log":
                return self.chunked([b"epoch 1\n", b"epoch 2\n"])
            if self.path == "/last-delete-options":
                return self.reply(200, store.get("last-delete-options"))
            if self.path in store:
                return self.reply(200, store[self.path])
            self.reply(404, status(404, "NotFound", "not found"))
        def do_DELETE(self):
            options = self.body()
            store["last-delete-options"] = options
            if self.path not in store:
                return self.reply(404, status(404, "NotFound", "not found"))
            del store[self.path]
            self.reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                "details": {"propagation": options["propagationPolicy"]}})
        def log_message(self, *args):
            pass
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_REQUIRED if mode == "cert" else ssl.CERT_NONE
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("PORT", server.server_address[1])
    server.serve_forever()
    """#

private func startServer(_ directory: String, mode: String) throws -> PythonServer {
    try PythonServer(
        script: apiServerScript,
        arguments: ["\(directory)/ca.crt", "\(directory)/server.crt", "\(directory)/server.key", mode]
    )
}

@Suite("KubeAPI")
struct KubeAPITests {
    @Test("over TLS with a client certificate: a PV is created strictly, found, refused twice, deleted once")
    func clientCertificateRoundTrip() throws {
        let directory = TemporaryDirectory()
        let pems = try Certificates(in: directory.path)
        let server = try startServer(directory.path, mode: "cert")
        defer { server.stop() }
        let config = KubeConfig(
            server: "https://127.0.0.1:\(server.port)",
            certificateAuthorityPEM: pems.ca,
            insecureSkipTLSVerify: false,
            tlsServerName: nil,
            credentials: .clientCertificate(certificatePEM: pems.certificate, keyPEM: pems.key),
            namespace: nil
        )
        let api = try KubeAPI(config: config)
        let settings = try KubernetesSettings(
            namespace: "knit-runs",
            instance: "knit",
            volumes: .hostPath,
            dataDirectory: "/var/lib/knit/data"
        )
        let run = ScheduledRun(
            runId: "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
            planId: "p",
            image: "img:1",
            inputs: [RunMount(knitId: "d1", hostPath: "/var/lib/knit/data/d1", containerPath: "/in")]
        )
        let volume = try #require(try KubernetesObjects.build(KubernetesRun(run), settings: settings).volumes.first)
        let collection = "/api/v1/persistentvolumes"

        let created = try api.create(collection, volume.persistentVolume)
        #expect(created["metadata"]?["uid"] == .string("uid-1"))
        #expect(created["metadata"]?["annotations"]?["seen-cn"] == .string("knit-scheduler"))
        #expect(created["metadata"]?["annotations"]?["seen-auth"] == .string(""))
        #expect(
            created["metadata"]?["annotations"]?["seen-query"] == .string("fieldManager=knit&fieldValidation=Strict")
        )
        #expect(created["spec"] == volume.persistentVolume["spec"])

        do {
            _ = try api.create(collection, volume.persistentVolume)
            Issue.record("a second create succeeded")
        } catch {
            #expect(error.status == 409)
            #expect(error.reason == "AlreadyExists")
        }
        #expect(try api.get("\(collection)/\(volume.name)")?["metadata"]?["uid"] == .string("uid-1"))
        #expect(try api.get("\(collection)/absent") == nil)
        #expect(try api.delete("\(collection)/\(volume.name)"))
        #expect(try !api.delete("\(collection)/\(volume.name)"))
        // The grace goes in the body's DeleteOptions, the only place the API server reads it from then.
        #expect(
            try api.get("/last-delete-options")
                == .object([
                    ("apiVersion", .string("v1")), ("kind", .string("DeleteOptions")),
                    ("propagationPolicy", .string("Background")),
                ])
        )
        _ = try api.delete("\(collection)/absent", gracePeriodSeconds: 3, propagationPolicy: "Orphan")
        #expect(
            try api.get("/last-delete-options")
                == .object([
                    ("apiVersion", .string("v1")), ("kind", .string("DeleteOptions")),
                    ("gracePeriodSeconds", .number("3")), ("propagationPolicy", .string("Orphan")),
                ])
        )
        // Every request is counted by its Kubernetes verb, in every copy of the client.
        let copy = api
        #expect(copy.requestCounts == ["create": 2, "get": 4, "delete": 3])
    }

    @Test("a bearer token is sent; without the client certificate, or trusting another CA, nothing is answered")
    func tokenAndRefusedHandshakes() throws {
        let directory = TemporaryDirectory()
        let pems = try Certificates(in: directory.path)
        let tokenServer = try startServer(directory.path, mode: "token")
        defer { tokenServer.stop() }
        let object: JSONValue = .object([("metadata", .object([("name", .string("x"))]))])
        var config = KubeConfig(
            server: "https://127.0.0.1:\(tokenServer.port)",
            certificateAuthorityPEM: pems.ca,
            insecureSkipTLSVerify: false,
            tlsServerName: nil,
            credentials: .bearerToken("t0ken"),
            namespace: nil
        )
        let created = try KubeAPI(config: config).create("/api/v1/namespaces/n/things", object)
        #expect(created["metadata"]?["annotations"]?["seen-auth"] == .string("Bearer t0ken"))

        let certServer = try startServer(directory.path, mode: "cert")
        defer { certServer.stop() }
        config.server = "https://127.0.0.1:\(certServer.port)"
        let withoutCertificate = try KubeAPI(config: config)
        do {
            _ = try withoutCertificate.get("/api/v1/namespaces/n/things/x")
            Issue.record("the server answered a client without a certificate")
        } catch {
            #expect(error.status == nil)
        }

        let other = TemporaryDirectory()
        let otherCA = try Certificates(in: other.path).ca
        config.server = "https://127.0.0.1:\(tokenServer.port)"
        config.certificateAuthorityPEM = otherCA
        let trustingAnotherCA = try KubeAPI(config: config)
        do {
            _ = try trustingAnotherCA.get("/api/v1/namespaces/n/things/x")
            Issue.record("a server signed by another CA was trusted")
        } catch {
            #expect(error.status == nil)
        }

        config.insecureSkipTLSVerify = true
        #expect(throws: KubeConfigError.self) { try KubeAPI(config: config) }
    }

    @Test("list by label selector, a watch stream split across chunks, a followed log, all as they arrive")
    func listWatchAndLogs() throws {
        let directory = TemporaryDirectory()
        let pems = try Certificates(in: directory.path)
        let server = try startServer(directory.path, mode: "cert")
        defer { server.stop() }
        let api = try KubeAPI(
            config: KubeConfig(
                server: "https://127.0.0.1:\(server.port)",
                certificateAuthorityPEM: pems.ca,
                credentials: .clientCertificate(certificatePEM: pems.certificate, keyPEM: pems.key)
            )
        )
        let selector = "knit.run=abc,knit.executor=knit"
        let listed = try api.list("/api/v1/namespaces/n/pods", labelSelector: selector)
        #expect(listed.resourceVersion == "42")
        #expect(
            listed.items.first?["metadata"]?["annotations"]?["seen-query"]
                == .string("labelSelector=knit.run%3Dabc%2Cknit.executor%3Dknit")
        )

        var events: [KubeWatchEvent] = []
        try api.watch("/api/v1/namespaces/n/pods", labelSelector: selector, resourceVersion: "42", timeoutSeconds: 30) {
            events.append($0)
        }
        #expect(events.map(\.type) == ["ADDED", "MODIFIED", "ERROR"])
        #expect(
            events.first?.object["metadata"]?["annotations"]?["seen-query"]
                == .string(
                    "watch=true&allowWatchBookmarks=true&labelSelector=knit.run%3Dabc%2Cknit.executor%3Dknit"
                        + "&resourceVersion=42&timeoutSeconds=30"
                )
        )
        #expect(events[1].object["status"]?["phase"] == .string("Running"))
        #expect(events.last?.object["code"] == .number("410"))

        struct Stop: Error {}
        var seen = 0
        #expect(throws: Stop.self) {
            try api.watch("/api/v1/namespaces/n/pods", labelSelector: selector, resourceVersion: "42") { _ in
                seen += 1
                throw Stop()
            }
        }
        #expect(seen == 1)

        var chunks: [String] = []
        try api.stream("/api/v1/namespaces/n/pods/p/log?follow=true&container=main") {
            chunks.append(String(decoding: $0, as: UTF8.self))
        }
        #expect(chunks.joined() == "epoch 1\nepoch 2\n")
        #expect(chunks.count == 2)
    }

    @Test("a followed log may stay silent longer than a plain request may stall; its own stall limit still holds")
    func quietStreams() throws {
        let directory = TemporaryDirectory()
        let pems = try Certificates(in: directory.path)
        let server = try startServer(directory.path, mode: "cert")
        defer { server.stop() }
        let config = KubeConfig(
            server: "https://127.0.0.1:\(server.port)",
            certificateAuthorityPEM: pems.ca,
            credentials: .clientCertificate(certificatePEM: pems.certificate, keyPEM: pems.key)
        )
        let quietLog = "/api/v1/namespaces/n/pods/quiet/log?follow=true"
        var text = ""
        try KubeAPI(config: config, stallTimeoutSeconds: 1).stream(quietLog) {
            text += String(decoding: $0, as: UTF8.self)
        }
        #expect(text == "after a silence\n")

        let impatient = try KubeAPI(config: config, streamStallTimeoutSeconds: 1)
        #expect(throws: KubeAPIError.self) { try impatient.stream(quietLog) { _ in } }

        // Another thread can end a silent stream: the cancel flag is asked even while no byte arrives.
        let api = try KubeAPI(config: config)
        let clock = ContinuousClock()
        let started = clock.now
        #expect(throws: KubeAPIError.self) {
            try api.stream(quietLog, isCancelled: { clock.now - started > .milliseconds(500) }) { _ in }
        }
        #expect(clock.now - started < .milliseconds(3500))
        #expect(api.requestCounts == ["log": 1])
    }
}
