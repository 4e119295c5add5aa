import Foundation
import KnitKubeClient
import KnitSystem
import KnitTestSupport
import Testing

/// A real CA, and a client and a server (`127.0.0.1`) certificate signed by it, made with openssl in
/// `directory` (files `ca.crt`, `client.crt`, `client.key`, `server.crt`, `server.key`), as kubeadm or a test
/// cluster's script writes them.
struct Certificates {
    let ca: String
    let certificate: String
    let key: String

    init(in directory: String) throws {
        let openssl = ["openssl"]
        try #require(
            run(
                openssl + [
                    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", "\(directory)/ca.key", "-out", "\(directory)/ca.crt", "-days", "1",
                    "-subj", "/CN=kubernetes-ca",
                ]
            ) == 0
        )
        try #require(
            run(
                openssl + [
                    "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", "\(directory)/client.key", "-out", "\(directory)/client.csr",
                    "-subj", "/O=knit/CN=knit-scheduler",
                ]
            ) == 0
        )
        try #require(
            run(
                openssl + [
                    "x509", "-req", "-in", "\(directory)/client.csr", "-CA", "\(directory)/ca.crt",
                    "-CAkey", "\(directory)/ca.key", "-CAcreateserial", "-days", "1",
                    "-out", "\(directory)/client.crt",
                ]
            ) == 0
        )
        writeFile("\(directory)/server.ext", "subjectAltName=IP:127.0.0.1\n")
        try #require(
            run(
                openssl + [
                    "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", "\(directory)/server.key", "-out", "\(directory)/server.csr", "-subj",
                    "/CN=kube-apiserver",
                ]
            ) == 0
        )
        try #require(
            run(
                openssl + [
                    "x509", "-req", "-in", "\(directory)/server.csr", "-CA", "\(directory)/ca.crt",
                    "-CAkey", "\(directory)/ca.key", "-CAcreateserial", "-days", "1", "-extfile",
                    "\(directory)/server.ext", "-out", "\(directory)/server.crt",
                ]
            ) == 0
        )
        ca = try #require(readText("\(directory)/ca.crt"))
        certificate = try #require(readText("\(directory)/client.crt"))
        key = try #require(readText("\(directory)/client.key"))
    }
}

func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

@Suite("KubeConfig")
struct KubeConfigTests {
    @Test("a kubeadm-style kubeconfig: current context picks its cluster and user; files relative to the kubeconfig")
    func currentContextWithFiles() throws {
        let directory = TemporaryDirectory()
        let pems = try Certificates(in: directory.path)
        directory.write(
            "config",
            """
            apiVersion: v1
            kind: Config
            clusters:
            - name: other
              cluster:
                server: https://10.9.9.9:6443
                insecure-skip-tls-verify: true
            - name: local
              cluster:
                certificate-authority: ca.crt
                server: https://127.0.0.1:6443/
            contexts:
            - name: other
              context: {cluster: other, user: nobody}
            - name: knit@local
              context:
                cluster: local
                user: knit
                namespace: knit-runs
            current-context: knit@local
            preferences: {}
            users:
            - name: knit
              user:
                client-certificate: client.crt
                client-key: \(directory.file("client.key"))
            - name: nobody
              user:
                token: abc
            """
        )
        let config = try KubeConfig.load(path: directory.file("config"))
        #expect(config.server == "https://127.0.0.1:6443")
        #expect(config.certificateAuthorityPEM == pems.ca)
        #expect(config.credentials == .clientCertificate(certificatePEM: pems.certificate, keyPEM: pems.key))
        #expect(config.namespace == "knit-runs")
        #expect(config.insecureSkipTLSVerify == false)

        let other = try KubeConfig.load(path: directory.file("config"), context: "other")
        #expect(other.server == "https://10.9.9.9:6443")
        #expect(other.insecureSkipTLSVerify)
        #expect(other.certificateAuthorityPEM == nil)
        #expect(other.credentials == .bearerToken("abc"))
        #expect(other.namespace == nil)
        #expect(try other.currentBearerToken() == "abc")
    }

    @Test("embedded base64 data (as kind and minikube write it) wins over files; a token file is re-read on use")
    func embeddedDataAndTokenFile() throws {
        let directory = TemporaryDirectory()
        let pems = try Certificates(in: directory.path)
        directory.write("token", "first-token\n")
        let text = """
            apiVersion: v1
            kind: Config
            current-context: kind-knit
            clusters:
            - cluster:
                certificate-authority-data: \(base64(pems.ca))
                certificate-authority: missing-file.crt
                server: https://127.0.0.1:36443
                tls-server-name: kubernetes.default
              name: kind-knit
            contexts:
            - context:
                cluster: kind-knit
                user: kind-knit
              name: kind-knit
            users:
            - name: kind-knit
              user:
                client-certificate-data: \(base64(pems.certificate))
                client-key-data: \(base64(pems.key))
            - name: robot
              user:
                tokenFile: token
            """
        let config = try KubeConfig.parse(text, directory: directory.path)
        #expect(config.certificateAuthorityPEM == pems.ca)
        #expect(config.tlsServerName == "kubernetes.default")
        #expect(config.credentials == .clientCertificate(certificatePEM: pems.certificate, keyPEM: pems.key))
        #expect(try config.currentBearerToken() == nil)

        let robotText = text.replacingOccurrences(
            of: "user: kind-knit\n  name: kind-knit",
            with: "user: robot\n  name: kind-knit"
        )
        let robot = try KubeConfig.parse(robotText, directory: directory.path)
        let tokenPath = directory.file("token")
        #expect(robot.credentials == .bearerTokenFile(tokenPath))
        #expect(try robot.currentBearerToken() == "first-token")
        directory.write("token", "rotated-token\n")
        #expect(try robot.currentBearerToken() == "rotated-token")
    }

    @Test("in-cluster: service-account token, CA and namespace files and KUBERNETES_SERVICE_HOST/PORT")
    func inCluster() throws {
        let directory = TemporaryDirectory()
        let pems = try Certificates(in: directory.path)
        directory.write("token", "sa-token")
        directory.write("namespace", "knit-system")
        let environment = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
        let config = try KubeConfig.inCluster(directory: directory.path, environment: environment)
        #expect(config.server == "https://10.96.0.1:443")
        #expect(config.certificateAuthorityPEM == pems.ca)
        #expect(config.namespace == "knit-system")
        #expect(try config.currentBearerToken() == "sa-token")

        let v6 = try KubeConfig.inCluster(
            directory: directory.path,
            environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"]
        )
        #expect(v6.server == "https://[fd00::1]:443")
        #expect(throws: KubeConfigError.self) { try KubeConfig.inCluster(directory: directory.path, environment: [:]) }
        #expect(throws: KubeConfigError.self) {
            try KubeConfig.inCluster(directory: directory.file("absent"), environment: environment)
        }
    }

    @Test("kubeconfigs Knit cannot use are refused with a message naming the problem")
    func refusals() throws {
        let directory = TemporaryDirectory()
        let pems = try Certificates(in: directory.path)
        func problem(_ text: String) -> String? {
            do {
                _ = try KubeConfig.parse(text, directory: directory.path)
                return nil
            } catch { return "\(error)" }
        }
        let head = """
            clusters:
            - name: c
              cluster: {server: "https://127.0.0.1:6443"}
            contexts:
            - name: x
              context: {cluster: c, user: u}

            """
        #expect(problem(head + "users: []")?.contains("no current-context") == true)
        #expect(problem(head + "current-context: y")?.contains("no context named y") == true)
        #expect(
            problem(head + "current-context: x\nusers:\n- name: u\n  user:\n    exec: {command: aws}")?
                .contains("uses exec") == true
        )
        #expect(
            problem(head + "current-context: x\nusers:\n- name: u\n  user:\n    client-key-data: \(base64(pems.key))")?
                .contains("no client certificate") == true
        )
        #expect(
            problem(head + "current-context: x\nusers:\n- name: u\n  user:\n    client-certificate: gone.crt\n")?
                .contains("cannot read") == true
        )
        #expect(
            problem(
                head + "current-context: x\nusers:\n- name: u\n  user:\n    client-certificate-data: bm90IHBlbQ==\n"
            )?
            .contains("not PEM") == true
        )
        #expect(problem("- a list")?.contains("not a mapping") == true)
        #expect(problem("a: [unclosed")?.contains("not YAML") == true)
    }
}
