/// An HTTP/1.1 test server that speaks chunked bodies and trailers, which `http.server` does not.
let echoServerScript = #"""
    import hashlib, json, socketserver, sys, ssl
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from knit_test_http import read_request_body

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *args): pass

        def read_body(self):
            return read_request_body(self)

        def send_json(self, status, obj):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/hello":
                data = b"hello, world\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("X-Custom-Thing", "yes")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif self.path.startswith("/big"):
                n = int(self.path.split("=")[1])
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Trailer", "x-checksum-md5")
                self.end_headers()
                md5 = hashlib.md5()
                sent = 0
                while sent < n:
                    chunk = bytes((i * 7 + sent) % 251 for i in range(min(65536, n - sent)))
                    md5.update(chunk)
                    self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    sent += len(chunk)
                self.wfile.write(b"0\r\nx-checksum-md5: " + md5.hexdigest().encode() + b"\r\n\r\n")
            elif self.path.startswith("/status/"):
                code = int(self.path.split("/")[2])
                self.send_json(code, {"message": "no such thing", "reason": "thing 'x' not found", "advice": "", "see": ""})
            elif self.path.startswith("/headers"):
                self.send_json(200, {k.lower(): v for k, v in self.headers.items()})
            else:
                self.send_json(404, {"message": "unknown path"})

        def do_POST(self):
            body, chunked, trailers = self.read_body()
            self.send_json(200, {"method": self.command, "path": self.path, "length": len(body),
                                 "md5": hashlib.md5(body).hexdigest(), "chunked": chunked, "trailers": trailers,
                                 "headers": {k.lower(): v for k, v in self.headers.items()}})
        do_PUT = do_POST
        do_DELETE = do_POST

    class Server(socketserver.ThreadingMixIn, HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    if len(sys.argv) > 2:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[1], sys.argv[2])
        if len(sys.argv) > 3:
            # Mutual TLS: a client must present a certificate signed by this CA.
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(sys.argv[3])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("PORT", server.server_address[1])
    server.serve_forever()
    """#
