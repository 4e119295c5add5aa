import Foundation
import KnitCore
import KnitTestSupport
import KnitTesting
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A hook receiver: POST /before and /before2 answer the status in the file named by the third argument and the
/// Run's status (`CONTROL-running`), else in the file CONTROL itself (200 without either) and, with 200, for a Run about to start, `{"knitfabExtension":{"env":{…}}}`: HOOK_VAR and
/// HOOK_ORDER=first from /before, HOOK_ORDER=second from /before2; POST /after answers 200. Every request is appended to the file given as the first argument as one JSON
/// line (path, X-Knit-Event-Id, the Run's id and status from the body). The second argument is the port (0: any).
private let receiverScript = #"""
    import json, os, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from knit_test_http import read_request_body

    journal, port, control = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body, _, _ = read_request_body(self)
            run = json.loads(body)
            entry = {"path": self.path, "event": self.headers.get("X-Knit-Event-Id"),
                     "type": self.headers.get("Content-Type"), "run": run["runId"], "status": run["status"]}
            with open(journal, "a") as out:
                out.write(json.dumps(entry) + "\n")
            status, answer = 200, b"{}"
            if self.path in ("/before", "/before2"):
                for path in (control + "-" + run["status"], control):
                    if os.path.exists(path):
                        status = int(open(path).read())
                        break
                if status == 200 and run["status"] in ("waiting", "ready"):
                    env = {"HOOK_VAR": "from-hook", "HOOK_ORDER": "first"}
                    if self.path == "/before2":
                        env = {"HOOK_ORDER": "second"}
                    answer = json.dumps({"knitfabExtension": {"env": env}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()
    """#

/// One request a receiver got.
private struct Received: Decodable, Equatable {
    var path: String
    var event: String?
    var type: String?
    var run: String
    var status: String
}

/// A receiver that can be stopped and started again on the same port, keeping its journal.
private final class Receiver {
    let journal: String
    /// The status POST /before answers.
    let control: String
    private(set) var server: PythonServer?
    private(set) var port = 0

    init(_ directory: String, _ name: String) throws {
        journal = directory + "/\(name).jsonl"
        control = directory + "/\(name)-status"
        _ = FileManager.default.createFile(atPath: journal, contents: nil)
        try start()
    }

    func start() throws {
        let server = try PythonServer(script: receiverScript, arguments: [journal, "\(port)", control])
        self.server = server
        port = server.port
    }

    func stop() {
        server?.stop()
        server = nil
    }

    var base: String { "http://127.0.0.1:\(port)" }

    func received() -> [Received] {
        let text = (try? String(contentsOfFile: journal, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(Received.self, from: Data($0.utf8)) }
    }
}

extension Live {
    /// Knitfab's lifecycle hooks through the real scheduler, podman and two receivers (before, after).
    @Suite(.knitInstance(), .enabled(if: podmanAvailable))
    struct HookLive {
        @Test func beforeHooksGateChangesAndAfterHooksAreDeliveredExactlyOnceAcrossAKill() throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "hooks")
            let before = try Receiver(scratch, "before")
            defer { before.stop() }
            let after = try Receiver(scratch, "after")
            defer { after.stop() }
            func setBeforeStatus(_ status: Int) throws {
                try "\(status)".write(toFile: before.control, atomically: true, encoding: .utf8)
            }
            let hooksFile = scratch + "/hooks.yaml"
            // Knitfab's own layout.
            try """
            hooks:
              lifecycle-hooks:
                before: ["\(before.base)/before", "\(before.base)/before2"]
                after: ["\(after.base)/after"]
            """.write(toFile: hooksFile, atomically: true, encoding: .utf8)
            try setBeforeStatus(500)
            let scheduler = try LiveScheduler(knit, arguments: ["--hooks", hooksFile])
            defer { scheduler.stop() }
            let key = uniqueKey("hook")
            let plan = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "echo \"$HOOK_VAR $HOOK_ORDER\" > /out/y/v",
                    inputs: [("/in/x", ["\(key):in"])],
                    outputs: [("/out/y", ["\(key):out"])],
                    log: ["\(key):log"]
                )
            )

            // 500: the Run stays waiting and shows why; no after hook is called.
            let first = try pushValue(knit, "1", tags: ["\(key):in"])
            var run1 = try #require(try awaitRuns(knit, plan: plan.planId, count: 1, in: ["waiting"]).first)
            let held = eventually(timeout: 15) {
                (try? showRun(knit, run1.runId))?.waitingFor?.contains("answered 500") == true
            }
            #expect(held, "waitingFor: \(String(describing: try? showRun(knit, run1.runId).waitingFor))")
            #expect(before.received().contains { $0.run == run1.runId && $0.status == "waiting" })
            #expect(try showRun(knit, run1.runId).status == "waiting")
            #expect(after.received().isEmpty)

            // 2xx: it starts (with both hooks' environment, the later one winning), runs and ends; every change is
            // reported after it.
            try setBeforeStatus(200)
            run1 = try #require(try awaitRuns(knit, plan: plan.planId, count: 1, context: scheduler.logTail()).first)
            #expect(run1.status == "done", "\(String(describing: run1.exit))")
            #expect(try pullText(knit, run1.outputs[0].knitId) == "from-hook second\n")
            #expect(run1.inputs[0].knitId == first.knitId)
            let gates = before.received().filter { $0.run == run1.runId && $0.path == "/before" }
            // The second hook is asked only once the first said yes (never while it answered 500).
            let second = before.received().filter { $0.path == "/before2" }
            #expect(second.map(\.status) == ["waiting", "starting", "running"])
            // Each pre-change status once it passed (the refused ones before it were `waiting` too).
            #expect(Array(gates.map(\.status).drop { $0 == "waiting" }) == ["starting", "running"])
            #expect(gates.allSatisfy { $0.type == "application/json" && $0.event == nil })
            let lifecycle = ["ready", "starting", "running", "completing", "done"]
            let reported = eventually(timeout: 15) { after.received().map(\.status) == lifecycle }
            #expect(reported, "after hooks: \(after.received().map(\.status))")

            // Unreachable: the next Run waits until the receiver is back.
            before.stop()
            _ = try pushValue(knit, "2", tags: ["\(key):in"])
            let unreachable = eventually(timeout: 15) {
                findRuns(knit, plans: [plan.planId]).contains { $0.waitingFor?.contains("did not answer") == true }
            }
            #expect(unreachable, "\(findRuns(knit, plans: [plan.planId]).map { ($0.status, $0.waitingFor) })")
            #expect(findRuns(knit, plans: [plan.planId]).filter { $0.status == "waiting" }.count == 1)
            try before.start()
            try setBeforeStatus(200)
            _ = try awaitRuns(knit, plan: plan.planId, count: 2, context: scheduler.logTail())

            // The after receiver down, then the scheduler killed with deliveries owed: all kept, then delivered
            // once each, in order, after the restart.
            let deliveredSoFar = eventually(timeout: 15) { after.received().count == 10 }
            #expect(deliveredSoFar, "\(after.received().map(\.status))")
            after.stop()
            _ = try pushValue(knit, "3", tags: ["\(key):in"])
            let runs = try awaitRuns(knit, plan: plan.planId, count: 3, context: scheduler.logTail())
            try scheduler.kill()
            try after.start()
            Thread.sleep(forTimeInterval: 1)
            #expect(after.received().count == 10, "nobody sends while the scheduler is down")
            try scheduler.restart()
            let all = eventually(timeout: 30) { after.received().count >= 15 }
            #expect(all, "\(after.received().map(\.status))\n\(scheduler.logTail())")
            Thread.sleep(forTimeInterval: 1)
            let delivered = after.received()
            #expect(delivered.count == 15)
            #expect(Set(delivered.compactMap(\.event)).count == delivered.count, "each event once")
            for run in runs {
                #expect(delivered.filter { $0.run == run.runId }.map(\.status) == lifecycle, "run \(run.runId)")
            }

            // The API's changes call no hook: abort a Run held back, retry a done one.
            try setBeforeStatus(503)
            _ = try pushValue(knit, "4", tags: ["\(key):in"])
            var waiting: RunDetailJSON?
            let gated = eventually(timeout: 15) {
                waiting = findRuns(knit, plans: [plan.planId]).first { $0.waitingFor?.contains("answered 503") == true }
                return waiting != nil
            }
            try #require(gated)
            let heldRun = try #require(waiting)
            let askedBefore = before.received().count
            let abort = knit.runKnit(["run", "stop", "--fail", heldRun.runId])
            #expect(abort.status == 0, "\(abort.stderr)")
            let retry = knit.runKnit(["run", "retry", runs[0].runId])
            #expect(retry.status == 0, "\(retry.stderr)")
            Thread.sleep(forTimeInterval: 3)
            #expect(try showRun(knit, heldRun.runId).status == "failed")
            #expect(!after.received().contains { $0.run == heldRun.runId }, "no hook for the aborted Run")
            #expect(after.received().count == 15, "no after hook for the abort or the retry")
            #expect(!before.received().dropFirst(askedBefore).contains { $0.run == heldRun.runId })
            // The retried Run is back to waiting by the API, held by the 503; the scheduler's own changes are
            // hooked again once the hook lets it through.
            #expect(before.received().dropFirst(askedBefore).allSatisfy { $0.run == runs[0].runId })
            try setBeforeStatus(200)
            let again = eventually(timeout: 30) {
                after.received().filter { $0.run == runs[0].runId }.map(\.status) == lifecycle + lifecycle
            }
            #expect(again, "\(after.received().filter { $0.run == runs[0].runId }.map(\.status))")
        }

        /// A before hook refusing starting → running, then one refusing the end: the Run stays where it is (its
        /// container having ended) and says why, and moves on once the hook answers 2xx.
        @Test func refusedLaterChangesHoldTheRunWhereItIs() throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "hooks-later")
            let before = try Receiver(scratch, "before")
            defer { before.stop() }
            let after = try Receiver(scratch, "after")
            defer { after.stop() }
            let hooksFile = scratch + "/hooks.yaml"
            try "before: [\"\(before.base)/before\"]\nafter: [\"\(after.base)/after\"]\n"
                .write(toFile: hooksFile, atomically: true, encoding: .utf8)
            let scheduler = try LiveScheduler(knit, arguments: ["--hooks", hooksFile])
            defer { scheduler.stop() }
            let key = uniqueKey("hooklater")
            let plan = try applyPlan(
                knit,
                quickstartPlanYAML(
                    script: "sleep 1; echo ok > /out/y/v",
                    inputs: [("/in/x", ["\(key):in"])],
                    outputs: [("/out/y", ["\(key):out"])]
                )
            )
            func held(_ status: String, _ runId: String) -> Bool {
                let run = try? showRun(knit, runId)
                return run?.status == status && run?.waitingFor?.contains("answered 500") == true
            }

            for refused in ["starting", "running"] {
                let control = before.control + "-" + refused
                try "500".write(toFile: control, atomically: true, encoding: .utf8)
                let data = try pushValue(knit, refused, tags: ["\(key):in"])
                var runId = ""
                let started = eventually(timeout: 20) {
                    let runs = findRuns(knit, plans: [plan.planId])
                    runId = runs.first { $0.inputs[0].knitId == data.knitId }?.runId ?? ""
                    return !runId.isEmpty && held(refused, runId)
                }
                #expect(started, "\(refused): \(String(describing: try? showRun(knit, runId)))\n\(scheduler.logTail())")
                // The container ends meanwhile; the Run still waits for the hook.
                let exited = eventually(timeout: 20) { scheduler.containers(status: "exited").count == 1 }
                #expect(exited, "\(scheduler.containers())")
                Thread.sleep(forTimeInterval: 1)
                #expect(held(refused, runId), "\(String(describing: try? showRun(knit, runId)))")
                #expect(!after.received().contains { $0.run == runId && ["done", "failed"].contains($0.status) })

                try FileManager.default.removeItem(atPath: control)
                let done = eventually(timeout: 20) { (try? showRun(knit, runId))?.status == "done" }
                #expect(done, "\(String(describing: try? showRun(knit, runId)))\n\(scheduler.logTail())")
                #expect(try showRun(knit, runId).waitingFor == nil)
                let delivered = eventually(timeout: 15) {
                    after.received().contains { $0.run == runId && $0.status == "done" }
                }
                #expect(delivered)
                #expect(try pullText(knit, try showRun(knit, runId).outputs[0].knitId) == "ok\n")
            }
        }

        /// A hooks file that is not usable stops the scheduler at start with the file, line and column.
        @Test func aBadHooksFileIsRefusedNamingTheLine() throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "badhooks")
            let path = scratch + "/hooks.yaml"
            try "before:\n  - http://127.0.0.1:9/ok\nafter:\n  - ftp://example.com/x\n"
                .write(toFile: path, atomically: true, encoding: .utf8)
            let binary = String(knit.knitdPath.dropLast("knitd".count)) + "knit-scheduler"
            let result = knit.run(binary, ["--home", knit.home, "--hooks", path])
            #expect(result.status == 2)
            #expect(
                result.stderr.contains("\(path):4:5: error: 'ftp://example.com/x' is not an http:// or https:// URL"),
                "\(result.stderr)"
            )
        }
    }
}
