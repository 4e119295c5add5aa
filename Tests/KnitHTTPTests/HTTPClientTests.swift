import KnitCore
import KnitHTTP
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

@Suite(.serialized) struct HTTPClientTests {
    let client = HTTPClient()

    private func json(_ response: HTTPResponse) throws -> JSONValue {
        try #require(JSONValue.parse(response.body))
    }

    @Test func getCollectsBodyAndHeadersCaseInsensitively() throws {
        let server = try PythonServer(script: echoServerScript)
        defer { server.stop() }
        let response = try client.perform(HTTPRequest(url: server.base + "/hello"))
        #expect(response.status == 200)
        #expect(String(decoding: response.body, as: UTF8.self) == "hello, world\n")
        #expect(response.headers["x-custom-thing"] == "yes")
        #expect(response.headers["X-CUSTOM-THING"] == "yes")
        #expect(response.headers["content-type"] == "text/plain")
        #expect(response.trailers.isEmpty)
    }

    @Test func getStreamsBodyToSinkAndKeepsTrailersApart() throws {
        let server = try PythonServer(script: echoServerScript)
        defer { server.stop() }
        var received: [UInt8] = []
        var calls = 0
        var lastProgress: HTTPProgress?
        let response = try client.perform(
            HTTPRequest(url: server.base + "/big?n=3000000", progress: { lastProgress = $0 })
        ) { bytes in
            calls += 1
            received.append(contentsOf: bytes)
        }
        #expect(response.status == 200)
        #expect(response.body.isEmpty)
        #expect(received.count == 3_000_000)
        #expect(calls > 1)
        #expect(received[0] == 0 && received[1] == 7)
        var expected = [UInt8]()
        // Same generator as the server: 64 KiB chunks, byte i of a chunk at offset `sent` = (i*7+sent) % 251.
        var sent = 0
        while sent < 3_000_000 {
            let n = min(65536, 3_000_000 - sent)
            for i in 0..<n { expected.append(UInt8((i * 7 + sent) % 251)) }
            sent += n
        }
        #expect(received == expected)
        #expect(response.trailers["X-Checksum-MD5"] == md5Hex(received))
        #expect(response.headers["x-checksum-md5"] == nil)
        #expect(response.field("x-checksum-md5") == md5Hex(received))
        #expect(lastProgress?.downloaded == 3_000_000)
    }

    @Test func errorStatusIsAResponseWithItsBody() throws {
        let server = try PythonServer(script: echoServerScript)
        defer { server.stop() }
        var sinkCalled = false
        let response = try client.perform(HTTPRequest(url: server.base + "/status/404")) { _ in sinkCalled = true }
        #expect(response.status == 404)
        #expect(!response.isSuccess)
        #expect(!sinkCalled)
        #expect(try json(response)["reason"]?.stringValue == "thing 'x' not found")
        let conflict = try client.perform(HTTPRequest(url: server.base + "/status/409"))
        #expect(conflict.status == 409)
    }

    @Test func chunkedUploadWithTrailer() throws {
        let server = try PythonServer(script: echoServerScript)
        defer { server.stop() }
        let payload = (0..<1_000_000).map { UInt8($0 % 253) }
        var offset = 0
        var upProgress: HTTPProgress?
        let response = try client.perform(
            HTTPRequest(
                method: "POST",
                url: server.base + "/upload?tag=a%3Ab",
                headers: ["Content-Type": "application/tar+gzip", "Authorization": "Bearer t0k"],
                body: .stream(length: nil) { buffer in
                    let n = min(buffer.count, 70_000, payload.count - offset)
                    payload.withUnsafeBytes {
                        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + n]))
                    }
                    offset += n
                    return n
                },
                trailers: HTTPTrailers(names: ["x-checksum-md5"]) { ["x-checksum-md5": md5Hex(payload)] },
                progress: { upProgress = $0 }
            )
        )
        #expect(response.status == 200)
        let echo = try json(response)
        #expect(echo["method"]?.stringValue == "POST")
        #expect(echo["path"]?.stringValue == "/upload?tag=a%3Ab")
        #expect(echo["length"] == .number("1000000"))
        #expect(echo["chunked"] == .bool(true))
        #expect(echo["md5"]?.stringValue == md5Hex(payload))
        #expect(echo["trailers"]?["x-checksum-md5"]?.stringValue == md5Hex(payload))
        #expect(echo["headers"]?["expect"] == nil)
        #expect(echo["headers"]?["trailer"]?.stringValue == "x-checksum-md5")
        #expect(echo["headers"]?["authorization"]?.stringValue == "Bearer t0k")
        #expect((upProgress?.uploaded ?? 0) >= 1_000_000)  // curl counts the chunk framing too
    }

    @Test func knownLengthBodiesAreNotChunked() throws {
        let server = try PythonServer(script: echoServerScript)
        defer { server.stop() }
        let put = try json(
            client.perform(
                HTTPRequest(method: "PUT", url: server.base + "/x", body: .bytes(Array("{\"add\":[]}".utf8)))
            )
        )
        #expect(put["method"]?.stringValue == "PUT")
        #expect(put["length"] == .number("10"))
        #expect(put["chunked"] == .bool(false))
        #expect(put["headers"]?["content-length"]?.stringValue == "10")
        var left = 5
        let post = try json(
            client.perform(
                HTTPRequest(
                    method: "POST",
                    url: server.base + "/y",
                    body: .stream(length: 5) { buffer in
                        let n = min(left, buffer.count)
                        for i in 0..<n { buffer[i] = UInt8(ascii: "z") }
                        left -= n
                        return n
                    }
                )
            )
        )
        #expect(post["length"] == .number("5"))
        #expect(post["chunked"] == .bool(false))
        let delete = try json(client.perform(HTTPRequest(method: "DELETE", url: server.base + "/z", body: .bytes([]))))
        #expect(delete["method"]?.stringValue == "DELETE")
    }

    @Test func throwingBodySourceAbortsWithItsError() throws {
        struct Boom: Error {}
        let server = try PythonServer(script: echoServerScript)
        defer { server.stop() }
        let error = #expect(throws: HTTPError.self) {
            try client.perform(
                HTTPRequest(method: "POST", url: server.base + "/u", body: .stream(length: nil) { _ in throw Boom() })
            )
        }
        #expect(error?.code == .aborted)
        #expect(error?.underlying is Boom)
    }

    @Test func throwingSinkAbortsWithItsError() throws {
        struct Enough: Error {}
        let server = try PythonServer(script: echoServerScript)
        defer { server.stop() }
        let error = #expect(throws: HTTPError.self) {
            try client.perform(HTTPRequest(url: server.base + "/big?n=5000000")) { _ in throw Enough() }
        }
        #expect(error?.code == .aborted)
        #expect(error?.underlying is Enough)
    }

    @Test func connectionRefusedIsAClearConnectError() throws {
        // Bind a port, then close it: nothing listens there any more.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                _ = bind(fd, $0, length)
                _ = getsockname(fd, $0, &length)
            }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        close(fd)
        let error = #expect(throws: HTTPError.self) {
            try client.perform(HTTPRequest(url: "http://127.0.0.1:\(port)/health"))
        }
        #expect(error?.code == .connect)
        #expect(error?.message.hasPrefix("GET http://127.0.0.1:\(port)/health: ") == true)
        #expect(
            error?.message.contains("Connection refused") == true || error?.message.contains("Couldn't connect") == true
        )
    }

    @Test func tlsTrustsOnlyTheGivenCA() throws {
        let dir = TemporaryDirectory()
        for name in ["a", "b"] {
            let status = run([
                "/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir.file("\(name).key"),
                "-out", dir.file("\(name).pem"), "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ])
            try #require(status == 0)
        }
        let server = try PythonServer(script: echoServerScript, arguments: [dir.file("a.pem"), dir.file("a.key")])
        defer { server.stop() }
        let url = "https://127.0.0.1:\(server.port)/hello"
        let pemA: String = try #require(readText(dir.file("a.pem")))
        let pemB: String = try #require(readText(dir.file("b.pem")))
        let trusted = HTTPClient(caPEM: pemA)
        #expect(try trusted.perform(HTTPRequest(url: url)).status == 200)

        let otherCA = HTTPClient(caPEM: pemB)
        let error = #expect(throws: HTTPError.self) { try otherCA.perform(HTTPRequest(url: url)) }
        #expect(error?.code == .tls)
        let system = #expect(throws: HTTPError.self) { try HTTPClient().perform(HTTPRequest(url: url)) }
        #expect(system?.code == .tls)
    }

    /// What a Kubernetes API server asks of a kubeconfig user: a client certificate signed by its CA.
    @Test func aClientCertificateIsPresentedWhenTheServerRequiresOne() throws {
        let dir = TemporaryDirectory()
        func openssl(_ arguments: [String]) throws {
            try #require(run(["/usr/bin/openssl"] + arguments) == 0, "openssl \(arguments.joined(separator: " "))")
        }
        try openssl([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir.file("server.key"), "-out",
            dir.file("server.pem"), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ])
        for name in ["ca", "other-ca"] {
            try openssl([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir.file("\(name).key"), "-out",
                dir.file("\(name).pem"), "-days", "2", "-subj", "/CN=\(name)",
            ])
            try openssl([
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", dir.file("\(name)-client.key"), "-out",
                dir.file("\(name)-client.csr"), "-subj", "/CN=knit-scheduler/O=knit",
            ])
            try openssl([
                "x509", "-req", "-in", dir.file("\(name)-client.csr"), "-CA", dir.file("\(name).pem"), "-CAkey",
                dir.file("\(name).key"), "-CAcreateserial", "-out", dir.file("\(name)-client.pem"), "-days", "2",
            ])
        }
        let server = try PythonServer(
            script: echoServerScript,
            arguments: [dir.file("server.pem"), dir.file("server.key"), dir.file("ca.pem")]
        )
        defer { server.stop() }
        let url = "https://127.0.0.1:\(server.port)/hello"
        let serverPEM: String = try #require(readText(dir.file("server.pem")))
        let clientPEM: String = try #require(readText(dir.file("ca-client.pem")))
        let clientKey: String = try #require(readText(dir.file("ca-client.key")))
        let strangerPEM: String = try #require(readText(dir.file("other-ca-client.pem")))
        let strangerKey: String = try #require(readText(dir.file("other-ca-client.key")))

        let identified = HTTPClient(caPEM: serverPEM, clientCertificatePEM: clientPEM, clientKeyPEM: clientKey)
        let response = try identified.perform(HTTPRequest(url: url))
        #expect(response.status == 200)
        #expect(String(decoding: response.body, as: UTF8.self) == "hello, world\n")

        // No certificate, or one the server's CA did not sign: no response at all.
        #expect(throws: HTTPError.self) { try HTTPClient(caPEM: serverPEM).perform(HTTPRequest(url: url)) }
        let stranger = HTTPClient(caPEM: serverPEM, clientCertificatePEM: strangerPEM, clientKeyPEM: strangerKey)
        #expect(throws: HTTPError.self) { try stranger.perform(HTTPRequest(url: url)) }
    }

    @Test func headersLookupIgnoresCase() {
        var headers: HTTPHeaders = ["Content-Type": "a", "X-One": "1"]
        headers.append("x-one", "2")
        #expect(headers["content-type"] == "a")
        #expect(headers.values(for: "X-ONE") == ["1", "2"])
        #expect(headers["missing"] == nil)
    }
}
