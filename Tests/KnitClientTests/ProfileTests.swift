import KnitClient
import KnitCore
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

let samplePEM = """
    -----BEGIN CERTIFICATE-----
    MIIBszCCAVmgAwIBAgIUXnYq0a1Jw2bVt0lTwGQZyQ9m7L4wCgYIKoZIzj0EAwIw
    -----END CERTIFICATE-----

    """
let sampleCA = Data(samplePEM.utf8).base64EncodedString()

private func mode(_ path: String) -> mode_t {
    var info = stat()
    precondition(stat(path, &info) == 0)
    return info.st_mode & 0o777
}

@Suite struct ProfileTests {
    @Test func handoutWithCAAndToken() throws {
        let profile = try KnitProfile.parseHandout(
            """
            apiRoot: https://10.0.0.1:30803/api/
            cert:
              ca: \(sampleCA)
            token: s3cret
            """,
            source: "handout"
        )
        #expect(profile.apiRoot == "https://10.0.0.1:30803/api")
        #expect(profile.caPEM == samplePEM)
        #expect(profile.caBase64 == sampleCA)
        #expect(profile.token == "s3cret")
    }

    @Test func handoutWithoutTLS() throws {
        let profile = try KnitProfile.parseHandout("apiRoot: http://localhost:8080/api\ncert: {}\n", source: "h")
        #expect(profile.apiRoot == "http://localhost:8080/api")
        #expect(profile.caPEM == nil)
        #expect(profile.token == nil)
    }

    @Test func handoutWithBadAPIRoot() {
        for root in ["ftp://host/api", "/api", "https:///api", "https://:80/api", "localhost:8080"] {
            let error = #expect(throws: KnitClientError.self) {
                try KnitProfile.parseHandout("apiRoot: \(root)\n", source: "hand.yaml")
            }
            #expect(error?.code == .profile)
            #expect(error?.description == "knitprofile hand.yaml: apiRoot '\(root)' is not an absolute http(s) URL")
        }
        let missing = #expect(throws: KnitClientError.self) { try KnitProfile.parseHandout("cert: {}\n", source: "h") }
        #expect(missing?.description == "knitprofile h: 1:1: apiRoot is missing")
    }

    @Test func handoutWithBadCA() {
        let notBase64 = #expect(throws: KnitClientError.self) {
            try KnitProfile.parseHandout("apiRoot: https://h/api\ncert: {ca: \"%%%not base64\"}\n", source: "h")
        }
        #expect(notBase64?.description == "knitprofile h: cert.ca is not base64 of a PEM certificate")
        let notPEM = Data("just some text".utf8).base64EncodedString()
        let error = #expect(throws: KnitClientError.self) {
            try KnitProfile.parseHandout("apiRoot: https://h/api\ncert: {ca: \(notPEM)}\n", source: "h")
        }
        #expect(error?.description == "knitprofile h: cert.ca is not base64 of a PEM certificate")
    }

    @Test func handoutYAMLErrorNamesFileLineAndColumn() {
        let error = #expect(throws: KnitClientError.self) {
            try KnitProfile.parseHandout("apiRoot: [https://h/api\n", source: "hand.yaml")
        }
        #expect(error?.description.hasPrefix("knitprofile hand.yaml:2:1: error: ") == true)
    }

    @Test func storeRoundTripWithPrivateModes() throws {
        let dir = TemporaryDirectory()
        let store = ProfileStore(path: dir.file("home/.knit/profile"))
        let missing = #expect(throws: KnitClientError.self) { try store.load() }
        #expect(missing?.description == "knitprofile store (\(store.path)) is not found. Please try `knit init` first")

        let first = try KnitProfile(apiRoot: "https://a:1/api", caBase64: sampleCA, token: "t1")
        let second = try KnitProfile(apiRoot: "http://b:2/api", caBase64: nil, token: nil)
        try store.save(first, as: "/home/me/project")
        try store.save(second, as: "plain")
        #expect(mode(store.path) == 0o600)
        #expect(mode(dir.file("home/.knit")) == 0o700)
        #expect(try store.profile(named: "/home/me/project") == first)
        #expect(try store.profile(named: "plain") == second)

        let replaced = try KnitProfile(apiRoot: "https://c:3/api", caBase64: nil, token: "t3")
        try store.save(replaced, as: "/home/me/project")
        let all = try store.load()
        #expect(all.map(\.name) == ["/home/me/project", "plain"])
        #expect(all[0].profile == replaced)
        #expect(mode(store.path) == 0o600)

        let unknown = #expect(throws: KnitClientError.self) { try store.profile(named: "nope") }
        #expect(unknown?.description == "profile 'nope' not found in the profile store")
    }

    @Test func storeWrittenByKnitfabShapeIsReadable() throws {
        let dir = TemporaryDirectory()
        dir.write("profile", "default:\n  apiRoot: https://x:30803/api\n  cert:\n    ca: \(sampleCA)\n")
        let profile = try ProfileStore(path: dir.file("profile")).profile(named: "default")
        #expect(profile.apiRoot == "https://x:30803/api")
        #expect(profile.caPEM == samplePEM)
    }

    @Test func profileNameResolution() throws {
        let dir = TemporaryDirectory()
        dir.mkdir("project")
        dir.mkdir("project/sub")
        dir.mkdir("project/sub/deeper")
        dir.mkdir("other")
        #expect(try ProfileResolution.profileName(flag: "given", directory: dir.file("project/sub")) == "given")
        #expect(try ProfileResolution.profileName(flag: nil, directory: dir.file("other")) == dir.file("other"))

        try ProfileResolution.writeProjectFile(profileName: "team-profile", in: dir.file("project"))
        #expect(mode(dir.file("project/.knitprofile")) == 0o600)
        #expect(readText(dir.file("project/.knitprofile")) == "team-profile\n")
        #expect(
            try ProfileResolution.profileName(flag: nil, directory: dir.file("project/sub/deeper")) == "team-profile"
        )
        #expect(try ProfileResolution.profileName(flag: nil, directory: dir.file("project")) == "team-profile")

        // The nearest file wins.
        dir.write("project/sub/.knitprofile", "  nearer  \nignored second line\n")
        #expect(try ProfileResolution.profileName(flag: nil, directory: dir.file("project/sub/deeper")) == "nearer")
    }

    @Test func knitenvLookupAndParsing() throws {
        let dir = TemporaryDirectory()
        dir.mkdir("p")
        dir.mkdir("p/q")
        #expect(try ProfileResolution.knitenvPath(flag: nil, directory: dir.file("p/q")) == nil)
        #expect(try KnitEnv.load(path: nil) == KnitEnv())
        dir.write(
            "p/knitenv",
            """
            tag:
              - project:mnist
              - "owner: me"
            resource:
              cpu: "1"
              memory: 1Gi
            """
        )
        let path = try #require(try ProfileResolution.knitenvPath(flag: nil, directory: dir.file("p/q")))
        #expect(path == dir.file("p/knitenv"))
        #expect(try ProfileResolution.knitenvPath(flag: "/explicit", directory: dir.file("p/q")) == "/explicit")
        let env = try KnitEnv.load(path: path)
        #expect(env.tags == [Tag(key: "project", value: "mnist"), Tag(key: "owner", value: "me")])
        #expect(env.resources == [.init(name: "cpu", quantity: "1"), .init(name: "memory", quantity: "1Gi")])

        let bad = #expect(throws: KnitClientError.self) { try KnitEnv.parse("tag:\n  - nocolon\n", source: "knitenv") }
        #expect(bad?.description == "knitenv knitenv:2:5: error: tag 'nocolon' has no ':' (expected KEY:VALUE)")
        let system = #expect(throws: KnitClientError.self) { try KnitEnv.parse("tag: [\"knit#id:x\"]\n", source: "e") }
        #expect(system?.description == "knitenv e:1:7: error: tag 'knit#id:x' uses a reserved 'knit#' key")
        let absent = #expect(throws: KnitClientError.self) { try KnitEnv.load(path: dir.file("nope")) }
        #expect(absent?.code == .profile)
    }

    @Test func tagQueryRoundTripsThroughPercentDecoding() throws {
        let tags = [
            Tag(key: "project", value: "a:b c+d&e=f%g#h/i?j"),
            Tag(key: "名前", value: "データ ✓"),
            Tag(key: "plain", value: "simple-value_1.0~"),
        ]
        let query = PercentEncoding.tagQuery(tags)
        #expect(query.hasPrefix("tag=project%3Aa%3Ab%20c%2Bd%26e%3Df%25g%23h%2Fi%3Fj&tag="))
        #expect(query.hasSuffix("&tag=plain%3Asimple-value_1.0~"))
        #expect(!query.contains(" ") && query.allSatisfy(\.isASCII))
        let decoded = try query.split(separator: "&").map { part in
            #expect(part.hasPrefix("tag="))
            return try Tag(parsing: try #require(PercentEncoding.decode(String(part.dropFirst(4)))))
        }
        #expect(decoded == tags)
    }

    @Test func percentDecoder() {
        #expect(PercentEncoding.decode("a%20b%3Ac") == "a b:c")
        #expect(PercentEncoding.decode("a+b") == "a+b")
        #expect(PercentEncoding.decode("a+b", plusIsSpace: true) == "a b")
        #expect(PercentEncoding.decode("%E3%83%87") == "デ")
        #expect(PercentEncoding.decode("%e3%83%87") == "デ")
        #expect(PercentEncoding.decode("bad%2") == nil)
        #expect(PercentEncoding.decode("bad%zz") == nil)
        #expect(PercentEncoding.decode("%FF") == nil)  // not UTF-8
        #expect(PercentEncoding.encode("~-._AZaz09") == "~-._AZaz09")
    }
}
