/// A fake Knit API (Python): enough of `/api/health`, `/api/data` to exercise `KnitAPIClient` end to end.
/// Arguments: `knit FORMATS…` (answers /health with those formats and honours `?tag=`), `knitd FORMATS…` (the
/// same, saying `uploadTrailers: false` as knitd behind nginx does) or `knitfab` (no /health, ignores `?tag=`,
/// like Knitfab). Requires `Authorization: Bearer tok`.
/// `GET /api/_log` returns the requests seen; tag `test:corrupt-md5` makes downloads carry a wrong MD5 trailer,
/// tag `test:tampered` sends the right MD5 as a header and then changes one byte of the body,
/// tag `test:transient` adds `knit#transient:processing`.
let fakeKnitScript = #"""
    import hashlib, io, json, socketserver, sys, tarfile, urllib.parse
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from knit_test_http import read_request_body

    MODE = sys.argv[1]
    FORMATS = sys.argv[2:]
    DATA = {}
    LOG = []

    def detail(knit_id):
        d = DATA[knit_id]
        tags = ["knit#id:" + knit_id, "knit#timestamp:2024-05-17T04:19:33.325+00:00"] + d["tags"]
        if "test:transient" in d["tags"]:
            tags.append("knit#transient:processing")
        return {"knitId": knit_id, "tags": sorted(set(tags)),
                "upstream": {"mountpoint": {"path": "/upload", "tags": []},
                             "run": {"runId": "run-" + knit_id, "status": "done", "updatedAt": "2024-05-17T04:19:33.325+00:00",
                                     "plan": {"planId": "plan-upload", "name": "knit#uploaded"}}},
                "downstreams": [], "nomination": []}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *args): pass

        def read_body(self):
            body, _, trailers = read_request_body(self)
            return body, trailers

        def reply(self, status, obj):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def fail(self, status, reason, advice=""):
            self.reply(status, {"message": reason + ("\n" + advice if advice else ""), "reason": reason, "advice": advice, "see": ""})

        def route(self):
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            parts = [p for p in url.path.split("/") if p]
            if parts != ["api", "_log"]:
                LOG.append({"method": self.command, "path": url.path, "query": query,
                            "contentType": self.headers.get("Content-Type", ""), "accept": self.headers.get("Accept", "")})
            return parts, query

        def authorized(self):
            if self.headers.get("Authorization") != "Bearer tok":
                self.fail(401, "missing or wrong token", "ask your administrator")
                return False
            return True

        def do_GET(self):
            parts, query = self.route()
            if parts == ["api", "health"]:
                if MODE == "knitfab": return self.fail(404, "not found")
                health = {"status": "ok", "version": "fake", "formats": FORMATS}
                if MODE == "knitd": health["uploadTrailers"] = False
                return self.reply(200, health)
            if parts == ["api", "_log"]:
                return self.reply(200, LOG)
            if not self.authorized(): return
            if parts == ["api", "data"]:
                wanted = query.get("tag", [])
                found = [detail(k) for k in DATA if all(t in detail(k)["tags"] for t in wanted)]
                return self.reply(200, found)
            if len(parts) == 3 and parts[:2] == ["api", "data"]:
                knit_id = parts[2]
                if knit_id not in DATA: return self.fail(404, "data '%s' not found" % knit_id)
                accept = self.headers.get("Accept", "")
                gz = "application/x-tar" not in accept
                raw = DATA[knit_id]["tar"]
                if gz:
                    out = io.BytesIO()
                    with tarfile.open(fileobj=io.BytesIO(raw)) as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
                        for m in src.getmembers():
                            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
                    raw = out.getvalue()
                md5 = hashlib.md5(raw).hexdigest()
                if "test:corrupt-md5" in DATA[knit_id]["tags"]: md5 = "0" * 32
                self.send_response(200)
                self.send_header("Content-Type", "application/tar+gzip" if gz else "application/x-tar")
                if "test:tampered" in DATA[knit_id]["tags"]:
                    # Knit's way: the MD5 as a header; then one byte in the middle (file content) changes on the way.
                    self.send_header("x-checksum-md5", md5)
                    middle = len(raw) // 2
                    raw = raw[:middle] + bytes([raw[middle] ^ 0x01]) + raw[middle + 1:]
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Trailer", "x-checksum-md5")
                self.end_headers()
                for i in range(0, len(raw), 100000):
                    chunk = raw[i:i + 100000]
                    self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                self.wfile.write(b"0\r\nx-checksum-md5: " + md5.encode() + b"\r\n\r\n")
                return
            self.fail(404, "no route")

        def do_POST(self):
            parts, query = self.route()
            if not self.authorized(): return
            body, trailers = self.read_body()
            if parts != ["api", "data"]: return self.fail(404, "no route")
            if "x-checksum-md5" in trailers and trailers["x-checksum-md5"] != hashlib.md5(body).hexdigest():
                return self.fail(400, "hash is not match.")
            try:
                with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as archive:
                    members = archive.getmembers()
                    out = io.BytesIO()
                    with tarfile.open(fileobj=out, mode="w") as plain:
                        for m in members:
                            plain.addfile(m, archive.extractfile(m) if m.isfile() else None)
            except Exception as e:
                return self.fail(400, "bad archive: %s" % e)
            knit_id = "data-%d" % (len(DATA) + 1)
            tags = [] if MODE == "knitfab" else query.get("tag", [])
            DATA[knit_id] = {"tar": out.getvalue(), "tags": tags, "contentType": self.headers.get("Content-Type"),
                             "names": sorted(m.name for m in members), "trailers": trailers}
            LOG[-1]["trailers"] = trailers
            LOG[-1]["names"] = DATA[knit_id]["names"]
            self.reply(200, detail(knit_id))

        def do_PUT(self):
            parts, query = self.route()
            if not self.authorized(): return
            body, _ = self.read_body()
            if len(parts) != 3 or parts[:2] != ["api", "data"]: return self.fail(404, "no route")
            knit_id = parts[2]
            if knit_id not in DATA: return self.fail(404, "data '%s' not found" % knit_id)
            change = json.loads(body)
            tags = [t for t in DATA[knit_id]["tags"] if t.split(":", 1)[0] not in change.get("remove_key", [])]
            tags = [t for t in tags if t not in change.get("remove", [])]
            tags += [t for t in change.get("add", []) if t not in tags]
            DATA[knit_id]["tags"] = tags
            LOG[-1]["body"] = change
            self.reply(200, detail(knit_id))

    class Server(socketserver.ThreadingMixIn, HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    print("PORT", server.server_address[1])
    server.serve_forever()
    """#
