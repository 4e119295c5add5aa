import Foundation
import KnitCore
import KnitTesting
import Testing

/// Headless Chromium for the web console tests; nil when it is not installed (apt package `chromium`).
private let chromiumPath: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
    FileManager.default.isExecutableFile(atPath: $0)
}

extension Live {
    /// The web console (web/) served by the real nginx of a test instance, driven by headless
    /// Chromium against the real knitd: each page is dumped (DOM) and photographed (PNG), and the
    /// test checks the rendered text and that the picture is not blank.
    @Suite(
        .knitInstance(),
        .enabled(if: chromiumPath != nil, "headless Chromium is not installed (Debian package: chromium)")
    )
    struct WebConsoleLive {
        struct Page {
            var dom: String
            var console: [String]
            var screenshot: ScreenshotStats
        }

        struct ScreenshotStats: Decodable {
            var width: Int
            var height: Int
            var colours: Int
            /// Share of pixels that differ from the most common colour (the background).
            var foreground: Double
        }

        /// Loads `route` with a one-shot `#token=` fragment and returns the DOM after the page
        /// settled, the console messages and statistics of a 1280×900 screenshot.
        static func load(_ knit: KnitInstance, route: String, token: String, name: String) throws -> Page {
            let chromium = try #require(chromiumPath)
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-_.~")
            let fragment =
                "token=\(token.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")"
                + "&route=\(route.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")"
            let png = knit.root + "/web-\(name).png"
            let result = knit.run(
                "/usr/bin/timeout",
                [
                    "60", chromium, "--headless=new", "--no-sandbox", "--ignore-certificate-errors", "--disable-gpu",
                    "--user-data-dir=\(knit.root)/chromium-\(name)", "--no-first-run", "--enable-logging=stderr",
                    "--log-level=0", "--window-size=1280,900", "--virtual-time-budget=8000", "--screenshot=\(png)",
                    "--dump-dom", "\(knit.baseURL)/#\(fragment)",
                ]
            )
            try #require(result.status == 0, "chromium failed (\(result.status)): \(result.stderr.suffix(2000))")
            let console = result.stderr.split(separator: "\n").filter { $0.contains(":CONSOLE") }.map(String.init)
            return Page(dom: result.stdoutText, console: console, screenshot: try stats(knit, png))
        }

        /// Decodes the PNG with python3's zlib and struct (no imaging library needed).
        static func stats(_ knit: KnitInstance, _ png: String) throws -> ScreenshotStats {
            let script = """
                import json, struct, sys, zlib
                from collections import Counter
                data = open(sys.argv[1], "rb").read()
                assert data[:8] == b"\\x89PNG\\r\\n\\x1a\\n", "not a PNG"
                pos, idat = 8, b""
                while pos < len(data):
                    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
                    body = data[pos + 8:pos + 8 + length]
                    if kind == b"IHDR":
                        width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
                    elif kind == b"IDAT":
                        idat += body
                    pos += 12 + length
                assert depth == 8 and ctype in (2, 6), "unexpected PNG format"
                bpp = 3 if ctype == 2 else 4
                raw = zlib.decompress(idat)
                stride = width * bpp
                prev = bytearray(stride)
                counts = Counter()
                i = 0
                add, low = __import__("operator").add, (255).__and__
                for _ in range(height):
                    f = raw[i]; line = bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
                    if f == 2:  # Up, the most common filter: done in C
                        line = bytearray(map(low, map(add, line, prev)))
                    elif f in (1, 3, 4):
                        for x in range(stride):
                            a = line[x - bpp] if x >= bpp else 0
                            b = prev[x]
                            if f == 1: line[x] = (line[x] + a) & 255
                            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
                            else:
                                c = prev[x - bpp] if x >= bpp else 0
                                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
                    counts.update(zip(line[0::bpp], line[1::bpp], line[2::bpp]))
                    prev = line
                total = width * height
                print(json.dumps({"width": width, "height": height, "colours": len(counts),
                                  "foreground": 1 - counts.most_common(1)[0][1] / total}))
                """
            let scriptPath = knit.root + "/png-stats.py"
            try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
            let result = knit.run("/usr/bin/python3", [scriptPath, png])
            try #require(result.status == 0, "png-stats.py failed: \(result.stderr)")
            return try jsonDecoder.decode(ScreenshotStats.self, from: result.stdout)
        }

        static func expectRendered(_ page: Page, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(
                page.screenshot.width == 1280 && page.screenshot.height == 900,
                "\(what)",
                sourceLocation: sourceLocation
            )
            #expect(page.screenshot.colours >= 16, "\(what): \(page.screenshot)", sourceLocation: sourceLocation)
            #expect(page.screenshot.foreground > 0.02, "\(what): \(page.screenshot)", sourceLocation: sourceLocation)
            // Content-Security-Policy violations and uncaught exceptions are logged to the console.
            #expect(page.console.isEmpty, "\(what): console: \(page.console)", sourceLocation: sourceLocation)
        }

        @Test func listsDetailsAndGraphsRenderFromTheRealServer() throws {
            let knit = try LiveKnit.instance()

            let words = try makeScratchDirectory(knit, "words")
            try "one two three\n".write(toFile: words + "/text.txt", atomically: true, encoding: .utf8)
            let other = try makeScratchDirectory(knit, "other")
            try "x\n".write(toFile: other + "/x.txt", atomically: true, encoding: .utf8)
            let data = try push(knit, words, tags: ["kind:words", "project:web-console"])
            let unrelated = try push(knit, other, tags: ["kind:other"])
            let uploadRun = data.upstream.run.runId

            let applied = knit.runKnit(["plan", "apply", knit.packageRoot + "/examples/quickstart/plan.yaml"])
            try #require(applied.status == 0, "knit plan apply: \(applied.stderr)")
            let plan = try jsonDecoder.decode(PlanDetailJSON.self, from: applied.stdout)
            let downstreamPlanFile = knit.root + "/summary-plan.yaml"
            try """
            image: "localhost/web-console-summary:1"
            inputs:
              - path: "/in/count"
                tags: ["kind:count"]
            outputs:
              - path: "/out/summary"
                tags: ["kind:summary"]
            """.write(toFile: downstreamPlanFile, atomically: true, encoding: .utf8)
            let appliedDown = knit.runKnit(["plan", "apply", downstreamPlanFile])
            try #require(appliedDown.status == 0, "knit plan apply: \(appliedDown.stderr)")
            let downstreamPlan = try jsonDecoder.decode(PlanDetailJSON.self, from: appliedDown.stdout)
            let found = knit.runKnit(["run", "find", "-p", plan.planId])
            let runs = try jsonDecoder.decode([RunDetailJSON].self, from: found.stdout)
            try #require(runs.count == 1, "one waiting Run of the quickstart plan: \(found.stdoutText)")
            let run = runs[0]
            let token = knit.token(for: "rita")  // a reader: the console needs no more to look

            // Data list, filtered by a tag through the URL.
            let list = try Self.load(knit, route: "/data?tag=project:web-console", token: token, name: "data-list")
            Self.expectRendered(list, "data list")
            #expect(list.dom.contains("href=\"#/data/\(data.knitId)\""), "data list links the Data")
            #expect(!list.dom.contains(unrelated.knitId), "the tag filter leaves other Data out")
            #expect(list.dom.contains(">project:web-console<"))
            #expect(list.dom.contains("1 Data, newest first"))
            #expect(!list.dom.contains("id=\"signin\""))

            // Data detail: tags, producer, consumer, lineage graph with clickable nodes.
            let dataPage = try Self.load(knit, route: "/data/\(data.knitId)", token: token, name: "data-detail")
            Self.expectRendered(dataPage, "data detail")
            #expect(dataPage.dom.contains(">kind:words<"))
            #expect(dataPage.dom.contains("href=\"#/runs/\(uploadRun)\""), "upstream upload Run")
            #expect(dataPage.dom.contains("href=\"#/runs/\(run.runId)\""), "downstream Run")
            #expect(dataPage.dom.contains("<svg class=\"graph\""), "lineage graph drawn")
            #expect(dataPage.dom.contains("data-id=\"\(data.knitId)\""), "the Data is a node")
            #expect(dataPage.dom.contains("data-id=\"\(run.runId)\""), "its consumer is a node")
            #expect(dataPage.dom.contains("role=\"link\""), "nodes are links")

            // Plan detail: image, downstream plan, plan graph.
            let planPage = try Self.load(knit, route: "/plans/\(plan.planId)", token: token, name: "plan-detail")
            Self.expectRendered(planPage, "plan detail")
            #expect(planPage.dom.contains("localhost/knit-quickstart:1"))
            #expect(planPage.dom.contains("href=\"#/plans/\(downstreamPlan.planId)\""), "downstream plan listed")
            #expect(planPage.dom.contains("data-id=\"\(plan.planId)\""), "the plan is a graph node")
            #expect(planPage.dom.contains("data-id=\"\(downstreamPlan.planId)\""), "its downstream plan is a node")
            #expect(planPage.dom.contains("href=\"#/runs?plan=\(plan.planId)\""))

            // Run detail: status, inputs/outputs, stop buttons, log state.
            let runPage = try Self.load(knit, route: "/runs/\(run.runId)", token: token, name: "run-detail")
            Self.expectRendered(runPage, "run detail")
            #expect(runPage.dom.contains("status-waiting"))
            #expect(runPage.dom.contains("href=\"#/data/\(data.knitId)\""), "input Data linked")
            #expect(runPage.dom.contains("href=\"#/data/\(run.outputs[0].knitId)\""), "output Data linked")
            #expect(runPage.dom.contains(">Abort<"))
            #expect(runPage.dom.contains("The log starts when the Run starts."))
            // A reader's console says who is signed in and hides what would change something.
            #expect(runPage.dom.contains("rita (reader)"), "the header names the reader")
            #expect(runPage.dom.contains("<body class=\"read-only\"") || runPage.dom.contains("read-only\">"))
            let asUser = try Self.load(
                knit,
                route: "/runs/\(run.runId)",
                token: knit.token(for: "alice"),
                name: "run-user"
            )
            Self.expectRendered(asUser, "run detail as a user")
            #expect(asUser.dom.contains("alice (user)"))
            #expect(asUser.dom.contains(">Abort<") && !asUser.dom.contains("read-only"), "a user keeps the buttons")

            // Runs list filtered by status: the waiting Run, not the finished upload.
            let runList = try Self.load(knit, route: "/runs?status=waiting", token: token, name: "run-list")
            Self.expectRendered(runList, "run list")
            #expect(runList.dom.contains("href=\"#/runs/\(run.runId)\""))
            #expect(!runList.dom.contains(uploadRun))
        }

        @Test func aBadTokenLeadsToTheSignInPageWithTheReason() throws {
            let knit = try LiveKnit.instance()
            let page = try Self.load(knit, route: "/data", token: "knit_not-a-real-token", name: "bad-token")
            Self.expectRendered(page, "sign-in page")
            #expect(page.dom.contains("id=\"signin\""), "sign-in form shown")
            #expect(page.dom.contains("rejected the token (401)"), "the reason is shown")
            #expect(!page.dom.contains("newest first"), "no data list without a valid token")
        }
    }
}
