import KnitCore
import KnitKubeClient
import KnitKubernetes
import KnitKubernetesExecutor
import KnitScheduler
import KnitTestSupport
import Testing

/// An API server for one Run's Job and Pod that makes the executor's watches fail the two ways a real one
/// does: the first Pod watch ends in an `ERROR` event (410, too old), the second breaks off mid-event. Each
/// list of Pods answers a newer state than the last (pending, then unschedulable, then running), so only
/// a list after each failure brings the cache to `running`. The Job watch stays silent.
private let apiServerScript = #"""
    import http.server, json, socketserver, sys, time
    lists = {"pods": 0}
    labels = {"knit.run": "r1", "knit.executor": "knit"}
    job = {"metadata": {"name": "knit-run-r1", "uid": "j1", "labels": labels, "resourceVersion": "5"}}
    def pod(status):
        return {"metadata": {"name": "knit-run-r1-abcde", "uid": "p1", "labels": labels,
            "creationTimestamp": "2026-01-01T00:00:00Z", "resourceVersion": "9"}, "status": status}
    pending = {"phase": "Pending"}
    unschedulable = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu."}]}
    running = {"phase": "Running", "containerStatuses": [{"name": "main", "state": {"running": {}}}]}
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def reply(self, obj):
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def start_chunks(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
        def chunk(self, data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        def do_GET(self):
            path, _, query = self.path.partition("?")
            watch = "watch=true" in query
            if path.endswith("/jobs"):
                if not watch:
                    return self.reply({"metadata": {"resourceVersion": "5"}, "items": [job]})
                self.start_chunks()
                time.sleep(60)
                return
            if path.endswith("/pods") and not watch:
                lists["pods"] += 1
                state = [pending, unschedulable, running][min(lists["pods"], 3) - 1]
                return self.reply({"metadata": {"resourceVersion": str(10 * lists["pods"])}, "items": [pod(state)]})
            if path.endswith("/pods"):
                self.start_chunks()
                if lists["pods"] == 1:
                    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
                    self.chunk(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
                    self.chunk(b"")
                elif lists["pods"] == 2:
                    self.chunk(b'{"type": "MODIFIED", "obj')
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    self.close_connection = True
                else:
                    time.sleep(60)
                return
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def log_message(self, *args):
            pass
    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
    server = Server(("127.0.0.1", 0), Handler)
    print("PORT", server.server_address[1])
    server.serve_forever()
    """#

@Suite("KubernetesExecutor's watch cache")
struct WatchCacheTests {
    @Test("an ERROR event and a broken watch each make it list again; observe then answers the newest state")
    func relistsAfterAnErrorEventAndABrokenStream() async throws {
        let server = try PythonServer(script: apiServerScript)
        defer { server.stop() }
        let api = try KubeAPI(
            config: KubeConfig(
                server: "http://127.0.0.1:\(server.port)",
                certificateAuthorityPEM: nil,
                credentials: .none
            )
        )
        let executor = KubernetesExecutor(
            api: api,
            settings: try KubernetesSettings(
                namespace: "n",
                instance: "knit",
                volumes: .hostPath,
                dataDirectory: "/var/lib/knit/data"
            )
        )
        defer { executor.shutdown() }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(20))
        var seen = try await executor.observe(runId: "r1")
        while seen != .running && clock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            seen = try await executor.observe(runId: "r1")
        }
        #expect(seen == .running)
        let counts = api.requestCounts
        // Jobs: one list, one (silent) watch. Pods: three lists, a watch after each (the last may not have
        // gone out yet).
        #expect(counts["list"] == 4)
        #expect((3...4).contains(counts["watch", default: 0]))
        #expect(counts["get", default: 0] == 0)
    }
}
