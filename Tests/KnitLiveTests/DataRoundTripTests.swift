import Foundation
import KnitCore
import KnitTesting
import Testing

extension Live {
    /// A Data survives push → find → pull byte for byte, through real nginx, TLS and the real CLI.
    @Suite(.knitInstance())
    struct DataRoundTrip {
        /// nested dirs, an empty file, an empty dir, a relative symlink inside the tree, a
        /// non-ASCII name and a 50 MB random file.
        static func makeTree(_ knit: KnitInstance) throws -> String {
            let fm = FileManager.default
            let tree = try makeScratchDirectory(knit, "tree")
            try fm.createDirectory(atPath: tree + "/a/b/c", withIntermediateDirectories: true)
            try "deep\n".write(toFile: tree + "/a/b/c/file.txt", atomically: true, encoding: .utf8)
            try "top\n".write(toFile: tree + "/top.txt", atomically: true, encoding: .utf8)
            #expect(fm.createFile(atPath: tree + "/empty.bin", contents: Data()))
            try fm.createDirectory(atPath: tree + "/emptydir", withIntermediateDirectories: true)
            try fm.createSymbolicLink(atPath: tree + "/a/link", withDestinationPath: "b/c/file.txt")
            try fm.createDirectory(atPath: tree + "/données", withIntermediateDirectories: true)
            try "こんにちは\n".write(toFile: tree + "/données/日本語 ファイル.txt", atomically: true, encoding: .utf8)
            try writeRandomFile(tree + "/big.bin", bytes: 50 << 20)
            return tree
        }

        @Test func pushFindPullRoundTrip() throws {
            let knit = try LiveKnit.instance()
            let tree = try Self.makeTree(knit)
            let name = (tree as NSString).lastPathComponent

            let pushed = try push(knit, tree, tags: ["project:x", "kind:tree"], extra: ["-n"])
            #expect(!pushed.knitId.isEmpty)
            #expect(pushed.tagStrings.contains("project:x"))
            #expect(pushed.tagStrings.contains("kind:tree"))
            #expect(pushed.tagStrings.contains("name:\(name)"))

            let find = knit.runKnit(["data", "find", "-t", "project:x"])
            try #require(find.status == 0, "knit data find: \(find.stderr)")
            let found = try decodeDetails(find.stdout)
            let mine = try #require(found.first { $0.knitId == pushed.knitId }, "pushed Data not found")
            #expect(mine.tagStrings.contains("name:\(name)"))
            #expect(mine.tagStrings.contains("knit#id:\(pushed.knitId)"))
            #expect(mine.tags.contains { $0.key == "knit#timestamp" })
            #expect(!mine.tags.contains { $0.key == "knit#transient" })
            // The CLI prints JSON with 4-space indentation.
            #expect(find.stdoutText.contains("\n    {") || find.stdoutText.contains("\n    \""))

            // pull -x extracts into DEST/<knitId>/
            let dest = try makeScratchDirectory(knit, "pulled")
            let pull = knit.runKnit(["data", "pull", "-x", pushed.knitId, dest])
            try #require(pull.status == 0, "knit data pull -x: \(pull.stderr)")
            let extracted = dest + "/" + pushed.knitId
            try #require(
                FileManager.default.fileExists(atPath: extracted),
                "expected \(extracted); DEST holds \((try? FileManager.default.contentsOfDirectory(atPath: dest)) ?? [])"
            )
            #expect(treeDifferences(knit, tree, extracted) == nil)
            var isDir: ObjCBool = false
            #expect(
                FileManager.default.fileExists(atPath: extracted + "/emptydir", isDirectory: &isDir) && isDir.boolValue
            )
            #expect(
                (try? FileManager.default.destinationOfSymbolicLink(atPath: extracted + "/a/link")) == "b/c/file.txt"
            )
            let big = try FileManager.default.attributesOfItem(atPath: extracted + "/big.bin")
            #expect((big[.size] as? NSNumber)?.intValue == 50 << 20)

            // pull ID - streams a valid tar.gz to stdout.
            let raw = knit.runKnit(["data", "pull", pushed.knitId, "-"])
            try #require(raw.status == 0, "knit data pull -: \(raw.stderr)")
            #expect(raw.stdout.count > 50 << 20 - 1)
            #expect(raw.stdout.prefix(2) == Data([0x1f, 0x8b]), "stdout is not gzip")
            let list = knit.run("/bin/tar", ["--quoting-style=literal", "-tzf", "-"], stdin: raw.stdout)
            try #require(list.status == 0, "tar -tzf rejected the download: \(list.stderr)")
            let names = Set(
                list.stdoutText.split(separator: "\n").map { line -> String in
                    var name = String(line)
                    if name.hasPrefix("./") { name.removeFirst(2) }
                    while name.hasSuffix("/") { name.removeLast() }
                    return name
                }
            )
            for expected in [
                "a/b/c/file.txt", "a/link", "top.txt", "empty.bin", "données/日本語 ファイル.txt", "big.bin",
            ] {
                #expect(names.contains(expected), "\(expected) missing from the archive listing: \(names.sorted())")
            }
            // tar+gzip is laid out as Knitfab's server writes it: no directory entries (Knitfab's CLI would turn
            // `a/` into an empty file `a`), so the empty directory is not in it.
            #expect(!list.stdoutText.split(separator: "\n").contains { $0.hasSuffix("/") }, "\(list.stdoutText)")
            #expect(!names.contains("emptydir"))
        }

        /// 2,000 small files (more than the 512 entries knitd fsyncs one by one, so the `syncfs` path) and three
        /// large ones come back byte for byte with their modes and mtimes, in the CLI's default format and in plain
        /// tar (the MD5 of the body is checked on its own thread on the way).
        @Test func manySmallFilesAndAFewLargeOnesRoundTrip() throws {
            let knit = try LiveKnit.instance()
            let tree = try makeScratchDirectory(knit, "small-files")
            let made = knit.run(
                "/usr/bin/python3",
                [
                    "-c",
                    """
                    import os, sys
                    root = sys.argv[1]
                    for i in range(2000):
                        d = os.path.join(root, "d%02d" % (i // 50))
                        os.makedirs(d, exist_ok=True)
                        f = os.path.join(d, "f%04d" % i)
                        with open(f, "wb") as out:
                            out.write(os.urandom(1 + i % 1500))
                        os.chmod(f, (0o644, 0o600, 0o755, 0o640)[i % 4])
                        os.utime(f, (1400000000 + i, 1400000000 + i))
                    for i in range(3):
                        with open(os.path.join(root, "large%d.bin" % i), "wb") as out:
                            out.write(os.urandom((8 << 20) + 7 * i))
                    """,
                    tree,
                ]
            )
            try #require(made.status == 0, "making the tree: \(made.stderr)")
            let pushed = try push(knit, tree, tags: ["kind:small-files"])
            let compare = """
                import os, sys
                def walk(root):
                    out = {}
                    for d, dirs, files in os.walk(root):
                        for name in files:
                            p = os.path.join(d, name)
                            st = os.lstat(p)
                            out[os.path.relpath(p, root)] = (st.st_mode, int(st.st_mtime), open(p, "rb").read())
                    return out
                a, b = walk(sys.argv[1]), walk(sys.argv[2])
                bad = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
                print(len(a), len(b), bad[:5])
                sys.exit(1 if bad or len(a) != 2003 else 0)
                """
            for format in ["auto", "tar"] {
                let dest = try makeScratchDirectory(knit, "small-files-pulled")
                let pull = knit.runKnit(["data", "pull", "-x", "--format", format, pushed.knitId, dest])
                try #require(pull.status == 0, "knit data pull -x --format \(format): \(pull.stderr)")
                let same = knit.run("/usr/bin/python3", ["-c", compare, tree, dest + "/" + pushed.knitId])
                #expect(same.status == 0, "--format \(format): \(same.stdoutText) \(same.stderr)")
            }
        }

        /// Every download carries `x-checksum-md5` as a header through nginx: the MD5 of the bytes received.
        @Test(arguments: ["application/tar+gzip", "application/tar+zstd", "application/x-tar"])
        func downloadChecksumHeaderMatchesTheBytes(_ accept: String) throws {
            let knit = try LiveKnit.instance()
            let tree = try Self.makeTree(knit)
            let pushed = try push(knit, tree, tags: ["kind:checksum"])
            let scratch = try makeScratchDirectory(knit, "checksum-download")
            for round in 0..<2 {
                let got = knit.curl([
                    "-D", scratch + "/headers", "-o", scratch + "/body", "-H", "Accept: \(accept)",
                    "-H", "Authorization: Bearer \(knit.token(for: "alice"))", knit.apiRoot + "/data/\(pushed.knitId)",
                ])
                try #require(got.status == 0, "curl: \(got.stderr)")
                let headers = try String(contentsOfFile: scratch + "/headers", encoding: .utf8)
                let sent = headers.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-checksum-md5:") }
                    .map { $0.dropFirst("x-checksum-md5:".count).trimmingCharacters(in: .whitespaces) }
                let actual = String(knit.run("/usr/bin/md5sum", [scratch + "/body"]).stdoutText.prefix(32))
                #expect(sent == actual, "\(accept) round \(round): header \(sent ?? "none"), bytes \(actual)")
            }
        }

        @Test func tagChanges() throws {
            let knit = try LiveKnit.instance()
            let dir = try makeScratchDirectory(knit, "tagged")
            try "x\n".write(toFile: dir + "/x.txt", atomically: true, encoding: .utf8)
            let pushed = try push(knit, dir, tags: ["a:1", "b:2", "c:3"])

            // Removals are applied before additions: removing and adding a:1 keeps it.
            var result = knit.runKnit(["data", "tag", "--remove", "a:1", "--add", "a:1", pushed.knitId])
            try #require(result.status == 0, "knit data tag: \(result.stderr)")
            #expect(try detail(knit, pushed.knitId).tagStrings.contains("a:1"))

            // Adding an existing tag is idempotent.
            result = knit.runKnit(["data", "tag", "--add", "d:4", "--add", "d:4", pushed.knitId])
            try #require(result.status == 0, "knit data tag: \(result.stderr)")
            result = knit.runKnit(["data", "tag", "--add", "d:4", pushed.knitId])
            try #require(result.status == 0, "knit data tag: \(result.stderr)")
            #expect(try detail(knit, pushed.knitId).tagStrings.filter { $0 == "d:4" }.count == 1)

            // --remove-key drops every value of a key.
            result = knit.runKnit(["data", "tag", "--add", "b:3", pushed.knitId])
            try #require(result.status == 0, "knit data tag: \(result.stderr)")
            result = knit.runKnit(["data", "tag", "--remove-key", "b", pushed.knitId])
            try #require(result.status == 0, "knit data tag: \(result.stderr)")
            var tags = try detail(knit, pushed.knitId).tagStrings
            #expect(!tags.contains { $0.hasPrefix("b:") })
            #expect(tags.contains("a:1") && tags.contains("c:3") && tags.contains("d:4"))

            // Plain remove.
            result = knit.runKnit(["data", "tag", "--remove", "c:3", pushed.knitId])
            try #require(result.status == 0, "knit data tag: \(result.stderr)")
            tags = try detail(knit, pushed.knitId).tagStrings
            #expect(!tags.contains("c:3"))

            // System tags cannot be changed: 400, tags unchanged.
            let before = try detail(knit, pushed.knitId).tagStrings.sorted()
            let response = knit.request(
                "PUT",
                "/api/data/\(pushed.knitId)",
                headers: ["Content-Type: application/json"],
                body: Data(#"{"add":["knit#id:x"]}"#.utf8)
            )
            #expect(response.status == 400, "PUT with a system tag answered \(response.status): \(response.text)")
            #expect(errorMessage(response) != nil, "no JSON message: \(response.text)")
            #expect(try detail(knit, pushed.knitId).tagStrings.sorted() == before)

            // And the CLI refuses system tags as a usage error.
            result = knit.runKnit(["data", "tag", "--add", "knit#id:x", pushed.knitId])
            #expect(result.status != 0)
            #expect(try detail(knit, pushed.knitId).tagStrings.sorted() == before)
        }

        @Test func concurrentPushesAllSucceed() throws {
            let knit = try LiveKnit.instance()
            var children: [(BackgroundProcess, String)] = []
            for index in 0..<8 {
                let dir = try makeScratchDirectory(knit, "concurrent\(index)")
                try writeRandomFile(dir + "/payload.bin", bytes: 256 << 10)
                try "\(index)\n".write(toFile: dir + "/index.txt", atomically: true, encoding: .utf8)
                let child = try knit.background(
                    knit.knitPath,
                    ["data", "push", "-t", "batch:concurrent", "-t", "index:\(index)", dir],
                    cwd: knit.projectDirectory("alice"),
                    env: ["HOME": knit.userHome("alice")],
                    name: "push\(index)"
                )
                children.append((child, dir))
            }
            var ids: Set<String> = []
            for (child, _) in children {
                #expect(child.wait(timeout: 120), "knit data push did not finish")
                #expect(child.exitStatus == 0, "push failed: \(child.stderrText)")
                if let detail = try? decodeDetail(Data(child.stdoutText.utf8)) { ids.insert(detail.knitId) }
            }
            #expect(ids.count == 8)
            let find = knit.runKnit(["data", "find", "-t", "batch:concurrent"])
            try #require(find.status == 0, "knit data find: \(find.stderr)")
            #expect(Set(try decodeDetails(find.stdout).map(\.knitId)) == ids)
        }

        /// Soak: a 1 GiB file through push and pull -x (KNIT_SLOW_TESTS=1 only).
        @Test(.enabled(if: ProcessInfo.processInfo.environment["KNIT_SLOW_TESTS"] == "1"))
        func oneGiBRoundTrip() throws {
            let knit = try LiveKnit.instance()
            let dir = try makeScratchDirectory(knit, "gib")
            try writeRandomFile(dir + "/big.bin", bytes: 1 << 30)
            var start = Date()
            let pushed = try push(knit, dir, tags: ["soak:gib"])
            let pushSeconds = Date().timeIntervalSince(start)
            let dest = try makeScratchDirectory(knit, "gib-pulled")
            start = Date()
            let pull = knit.runKnit(["data", "pull", "-x", pushed.knitId, dest])
            let pullSeconds = Date().timeIntervalSince(start)
            try #require(pull.status == 0, "pull -x: \(pull.stderr)")
            let same = knit.run("/usr/bin/cmp", [dir + "/big.bin", dest + "/" + pushed.knitId + "/big.bin"])
            #expect(same.status == 0, "1 GiB file differs after the round trip: \(same.stdoutText)")
            print("1 GiB round trip: push \(Int(pushSeconds * 1000)) ms, pull -x \(Int(pullSeconds * 1000)) ms")
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: dest)
        }

        @Test func findFiltersAndTimeWindow() throws {
            let knit = try LiveKnit.instance()
            let dir = try makeScratchDirectory(knit, "window")
            try "w\n".write(toFile: dir + "/w.txt", atomically: true, encoding: .utf8)
            let pushed = try push(knit, dir, tags: ["window:yes"])

            var result = knit.runKnit(["data", "find", "-t", "window:yes", "--since", "2000-01-01", "--duration", "1h"])
            try #require(result.status == 0, "knit data find --since: \(result.stderr)")
            #expect(try decodeDetails(result.stdout).isEmpty)

            result = knit.runKnit(["data", "find", "-t", "window:yes", "--since", "2000-01-01T00:00:00Z"])
            try #require(result.status == 0, "knit data find --since: \(result.stderr)")
            #expect(try decodeDetails(result.stdout).map(\.knitId) == [pushed.knitId])

            result = knit.runKnit(["data", "find", "-t", "window:yes", "--transient", "yes"])
            try #require(result.status == 0, "knit data find --transient: \(result.stderr)")
            #expect(try decodeDetails(result.stdout).isEmpty)

            // A reader may read.
            result = knit.runKnit(["data", "find", "-t", "window:yes"], user: "rita")
            try #require(result.status == 0, "reader find: \(result.stderr)")
            #expect(try decodeDetails(result.stdout).map(\.knitId) == [pushed.knitId])
        }
    }
}
