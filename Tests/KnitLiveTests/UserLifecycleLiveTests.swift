import Foundation
import KnitCore
import KnitTesting
import Testing

/// `knitadm`'s token listing as JSON.
private struct ListedToken: Decodable {
    var id: String
    var user: String
    var created: String?
    var expires: String?
}

/// `knitadm user list` as JSON.
private struct ListedUser: Decodable {
    var name: String
    var role: String
    var state: String
    var created: String
    var tokens: Int
}

private func tokens(_ knit: KnitInstance, _ user: String) throws -> [ListedToken] {
    let listed = knit.knitadm(["token", "list", user])
    try #require(listed.status == 0, "knitadm token list: \(listed.stderr)")
    return try JSONDecoder().decode([ListedToken].self, from: listed.stdout)
}

private func users(_ knit: KnitInstance) throws -> [String: ListedUser] {
    let listed = knit.knitadm(["user", "list"])
    try #require(listed.status == 0, "knitadm user list: \(listed.stderr)")
    let all = try JSONDecoder().decode([ListedUser].self, from: listed.stdout)
    return Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
}

/// HTTP status of `GET /api/whoami` through nginx with `token`.
private func whoamiStatus(_ knit: KnitInstance, _ token: String) -> String {
    knit.curl([
        "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer \(token)", knit.apiRoot + "/whoami",
    ])
    .stdoutText
}

/// Adds `name` with knitadm, then has `knitadm handout` write both handouts to where the instance keeps a
/// user's handout, and runs `knit init` with it in the user's project directory.
private func addUserWithHandout(_ knit: KnitInstance, _ name: String, extra: [String] = []) throws -> ProcessResult {
    let added = knit.knitadm(["user", "add", name, "--role", "user"])
    try #require(added.status == 0, "knitadm user add: \(added.stderr)")
    try FileManager.default.createDirectory(atPath: knit.userHome(name), withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: knit.projectDirectory(name), withIntermediateDirectories: true)
    let handout = knit.knitadm(
        ["handout", name, "-o", knit.handoutPath(for: name), "--api-root", knit.apiRoot, "--ca", knit.caPath] + extra
    )
    try #require(handout.status == 0, "knitadm handout: \(handout.stderr)")
    let initialised = knit.runKnit(["init", knit.handoutPath(for: name)], user: name)
    try #require(initialised.status == 0, "knit init: \(initialised.stderr)")
    return handout
}

extension Live {
    /// Users for their whole life, through the real knitadm, knit, nginx and knitd: handouts, disabling,
    /// deleting, expiry, rotation and revocation, each taking hold at the next request.
    @Suite(.knitInstance())
    struct UserLifecycleLive {
        @Test func aDisabledOrDeletedUsersNextRequestThroughNginxGets401() throws {
            let knit = try LiveKnit.instance()
            let handout = try addUserWithHandout(knit, "dave")
            let path = knit.handoutPath(for: "dave")
            #expect(handout.stderr.contains(path + "\n") && handout.stderr.contains(path + "-knitfab"))
            #expect(handout.stderr.contains("audit.action=knitadm handout dave"), "\(handout.stderr)")
            #expect(handout.stderr.contains("audit.outcome=done"), "\(handout.stderr)")
            for file in [path, path + "-knitfab"] {
                let attributes = try FileManager.default.attributesOfItem(atPath: file)
                #expect((attributes[.posixPermissions] as? Int) == 0o600, "\(file)")
            }
            // The Knitfab handout: its apiRoot carries dave's new token as Basic credentials.
            let knitfab = try String(contentsOfFile: path + "-knitfab", encoding: .utf8)
            let knitfabRoot = try #require(
                knitfab.split(separator: "\n").first { $0.hasPrefix("apiRoot: ") }.map { String($0.dropFirst(9)) }
            )
            #expect(knitfabRoot == "https://dave:\(knit.token(for: "dave"))@127.0.0.1:\(knit.port)/api")
            let basic = knit.curl(["-f", knitfabRoot + "/whoami"])
            #expect(basic.stdoutText.contains(#""name":"dave""#), "\(basic.stdoutText) \(basic.stderr)")

            let scratch = try makeScratchDirectory(knit, "dave")
            try "dave's\n".write(toFile: scratch + "/a.txt", atomically: true, encoding: .utf8)
            let pushed = try push(knit, scratch, tags: ["lifecycle:dave"], user: "dave")
            #expect(pushed.creator == "dave")

            let disabled = knit.knitadm(["user", "disable", "dave"])
            #expect(disabled.status == 0, "\(disabled.stderr)")
            #expect(disabled.stderr.contains("audit.action=knitadm user disable dave"), "\(disabled.stderr)")
            let refused = knit.runKnit(["data", "find", "-t", "lifecycle:dave"], user: "dave")
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("401") && refused.stderr.contains("disabled"), "\(refused.stderr)")
            let refusedBasic = knit.curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", knitfabRoot + "/whoami"])
            #expect(refusedBasic.stdoutText == "401")
            #expect(knit.runKnit(["data", "find", "-t", "lifecycle:dave"], user: "admin").status == 0)
            #expect(try users(knit)["dave"]?.state == "disabled")

            #expect(knit.knitadm(["user", "enable", "dave"]).status == 0)
            let again = knit.runKnit(["data", "find", "-t", "lifecycle:dave"], user: "dave")
            #expect(again.status == 0, "\(again.stderr)")
            let listed = try #require(try users(knit)["dave"])
            #expect(listed.state == "enabled" && listed.role == "user" && listed.tokens == 2)
            #expect((try? KnitTime(rfc3339: listed.created)) != nil, "\(listed.created)")

            let deleted = knit.knitadm(["user", "delete", "dave"])
            #expect(deleted.status == 0, "\(deleted.stderr)")
            #expect(deleted.stderr.contains("2 token(s) revoked"), "\(deleted.stderr)")
            let gone = knit.runKnit(["data", "find", "-t", "lifecycle:dave"], user: "dave")
            #expect(gone.status != 0)
            #expect(gone.stderr.contains("401"), "\(gone.stderr)")
            #expect(whoamiStatus(knit, knit.token(for: "dave")) == "401")

            // What dave made stays, shows dave, is found by creator, and an admin may still change it.
            let found = knit.runKnit(["data", "find", "--creator", "dave"], user: "admin")
            try #require(found.status == 0, "\(found.stderr)")
            #expect(try decodeDetails(found.stdout).map(\.knitId) == [pushed.knitId])
            let tagged = knit.runKnit(["data", "tag", "--add", "kept:yes", pushed.knitId], user: "admin")
            #expect(tagged.status == 0, "\(tagged.stderr)")
            #expect(try decodeDetail(tagged.stdout).creator == "dave")

            // The name is never given again, so no new dave inherits the old one's Data.
            let reused = knit.knitadm(["user", "add", "dave", "--role", "admin"])
            #expect(reused.status == 1)
            #expect(reused.stderr.contains("was deleted"), "\(reused.stderr)")
            #expect(reused.stderr.contains("audit.outcome=failed"), "\(reused.stderr)")
            let final = try #require(try users(knit)["dave"])
            #expect(final.state == "deleted" && final.tokens == 0)
            #expect(knit.knitadm(["user", "enable", "dave"]).status == 1)
        }

        @Test func expiryRotationAndRevocation() throws {
            let knit = try LiveKnit.instance()
            // An expiring handout: its token works until the expiry, then 401 says it expired.
            _ = try addUserWithHandout(knit, "erin", extra: ["--expires", "6s"])
            let first = knit.runKnit(["data", "find", "-t", "lifecycle:erin"], user: "erin")
            #expect(first.status == 0, "\(first.stderr)")
            let listed = try tokens(knit, "erin")
            #expect(listed.count == 2)
            let expiring = try #require(listed.first { $0.expires != nil })
            let expiry = try KnitTime(rfc3339: try #require(expiring.expires))
            let created = try KnitTime(rfc3339: try #require(expiring.created))
            #expect(expiry.milliseconds - created.milliseconds == 6000)
            let secret = knit.token(for: "erin")
            for token in listed {
                #expect(!secret.contains(token.id) && token.user == "erin")
            }
            #expect(!knit.knitadm(["token", "list"]).stdoutText.contains("knit_"), "never a secret")
            while Date().timeIntervalSince1970 * 1000 <= Double(expiry.milliseconds) + 100 { usleep(100_000) }
            let expired = knit.runKnit(["data", "find", "-t", "lifecycle:erin"], user: "erin")
            #expect(expired.status != 0)
            #expect(expired.stderr.contains("401") && expired.stderr.contains("token expired at"), "\(expired.stderr)")

            // A new token beside the old ones (rotation by hand), then revoked by its id.
            let issued = knit.knitadm(["user", "token", "erin"])
            try #require(issued.status == 0, "\(issued.stderr)")
            let second = issued.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(whoamiStatus(knit, second) == "200")
            let secondId = try #require(try tokens(knit, "erin").map(\.id).first { !listed.map(\.id).contains($0) })
            let revoked = knit.knitadm(["token", "revoke", secondId])
            #expect(revoked.status == 0, "\(revoked.stderr)")
            #expect(revoked.stderr.contains("audit.action=knitadm token revoke \(secondId)"), "\(revoked.stderr)")
            #expect(whoamiStatus(knit, second) == "401")
            #expect(knit.knitadm(["token", "revoke", secondId]).status == 1, "already revoked")

            // --rotate: the new token works, every other one stops in the same step.
            let third = knit.knitadm(["user", "token", "erin"])
            let thirdToken = third.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(whoamiStatus(knit, thirdToken) == "200")
            let rotated = knit.knitadm(["user", "token", "erin", "--rotate"])
            try #require(rotated.status == 0, "\(rotated.stderr)")
            let rotatedToken = rotated.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(whoamiStatus(knit, rotatedToken) == "200")
            #expect(whoamiStatus(knit, thirdToken) == "401")
            #expect(try tokens(knit, "erin").count == 1)

            // Expiries that cannot be: in the past (the store refuses, nothing issued) and not a time at all.
            let past = knit.knitadm(["user", "token", "erin", "--expires", "2020-01-01"])
            #expect(past.status == 1 && past.stderr.contains("not in the future"), "\(past.stderr)")
            let bogus = knit.knitadm(["user", "token", "erin", "--expires", "soon"])
            #expect(bogus.status == 64 && bogus.stderr.contains("--expires"), "\(bogus.stderr)")
            #expect(try tokens(knit, "erin").count == 1)
            let days = knit.knitadm(["user", "token", "erin", "--expires", "30d"])
            #expect(days.status == 0, "\(days.stderr)")
            let longest = try tokens(knit, "erin").compactMap(\.expires).map { try KnitTime(rfc3339: $0).milliseconds }
            let thirtyDays = Int64(Date().timeIntervalSince1970 * 1000) + 30 * 86_400_000
            #expect(longest.count == 1 && abs(longest[0] - thirtyDays) < 120_000, "\(longest)")
        }

        /// Without --api-root and --ca, `knitadm handout` takes this instance's, as knit-up lays them out.
        @Test func handoutDefaultsToTheInstancesAPIRootAndCA() throws {
            let knit = try LiveKnit.instance()
            let before = try tokens(knit, "alice").count
            let missing = knit.knitadm(["handout", "alice"])
            #expect(missing.status == 1)
            #expect(
                missing.stderr.contains("give --api-root") && missing.stderr.contains("does not exist"),
                "\(missing.stderr)"
            )
            #expect(try tokens(knit, "alice").count == before, "nothing issued when the handout cannot be written")

            let fm = FileManager.default
            try fm.createDirectory(atPath: knit.home + "/handout", withIntermediateDirectories: true)
            try fm.createDirectory(atPath: knit.home + "/tls", withIntermediateDirectories: true)
            try fm.copyItem(atPath: knit.handoutPath(for: "admin"), toPath: knit.home + "/handout/knitprofile")
            try fm.copyItem(atPath: knit.caPath, toPath: knit.home + "/tls/ca.crt")
            defer {
                try? fm.removeItem(atPath: knit.home + "/handout")
                try? fm.removeItem(atPath: knit.home + "/tls")
            }
            let written = knit.knitadm(["handout", "alice"])
            try #require(written.status == 0, "\(written.stderr)")
            let path = knit.root + "/alice.knitprofile"
            let ours = try String(contentsOfFile: path, encoding: .utf8)
            let ca = try Data(contentsOf: URL(fileURLWithPath: knit.caPath)).base64EncodedString()
            #expect(ours.hasPrefix("apiRoot: \(knit.apiRoot)\ncert:\n  ca: \(ca)\ntoken: knit_"), "\(ours)")
            let token = try #require(ours.split(separator: "\n").last.map { String($0.dropFirst("token: ".count)) })
            #expect(whoamiStatus(knit, token) == "200")
            #expect(fm.fileExists(atPath: path + "-knitfab"))
            #expect(try tokens(knit, "alice").count == before + 1)
        }

        @Test func findsFilterByCreatorThroughTheCLI() throws {
            let knit = try LiveKnit.instance()
            let scratch = try makeScratchDirectory(knit, "words")
            try "a b c\n".write(toFile: scratch + "/w.txt", atomically: true, encoding: .utf8)
            let alices = try push(knit, scratch, tags: ["kind:owned-words"], user: "alice")
            let admins = try push(knit, scratch, tags: ["kind:owned-words"], user: "admin")
            #expect(alices.creator == "alice" && admins.creator == "admin")

            let mine = knit.runKnit(["data", "find", "-t", "kind:owned-words", "--creator", "alice"])
            try #require(mine.status == 0, "\(mine.stderr)")
            #expect(try decodeDetails(mine.stdout).map(\.knitId) == [alices.knitId])
            #expect(mine.stdoutText.contains(#""creator": "alice""#), "\(mine.stdoutText)")

            let planFile = scratch + "/plan.yaml"
            try """
            image: "localhost/knit-quickstart:1"
            inputs:
              - path: "/in/data"
                tags: ["kind:owned-words"]
            outputs:
              - path: "/out/count"
                tags: ["kind:owned-count"]
            """.write(toFile: planFile, atomically: true, encoding: .utf8)
            let applied = knit.runKnit(["plan", "apply", planFile], user: "alice")
            try #require(applied.status == 0, "\(applied.stderr)")
            let plan = try jsonDecoder.decode(PlanDetailJSON.self, from: applied.stdout)
            #expect(plan.creator == "alice")
            let alicesPlans = knit.runKnit(["plan", "find", "--creator", "alice"], user: "rita")
            #expect(
                try jsonDecoder.decode([PlanDetailJSON].self, from: alicesPlans.stdout).map(\.planId) == [plan.planId]
            )
            let adminsPlans = knit.runKnit(["plan", "find", "--creator", "admin"], user: "rita")
            #expect(try jsonDecoder.decode([PlanDetailJSON].self, from: adminsPlans.stdout).isEmpty)

            // The plan's Runs (one per Data, the admin's included) are alice's; the admin has only an upload.
            let alicesRuns = knit.runKnit(["run", "find", "-p", plan.planId, "--creator", "alice"], user: "rita")
            try #require(alicesRuns.status == 0, "\(alicesRuns.stderr)")
            let runs = try jsonDecoder.decode([RunDetailJSON].self, from: alicesRuns.stdout)
            #expect(runs.count == 2 && runs.allSatisfy { $0.creator == "alice" })
            let adminsRuns = knit.runKnit(["run", "find", "--creator", "admin"], user: "rita")
            #expect(
                try jsonDecoder.decode([RunDetailJSON].self, from: adminsRuns.stdout).map(\.runId)
                    .contains(admins.upstream.run.runId)
            )
            #expect(
                try !jsonDecoder.decode([RunDetailJSON].self, from: adminsRuns.stdout).contains {
                    $0.plan.planId == plan.planId
                }
            )
            let empty = knit.runKnit(["data", "find", "--creator", ""])
            #expect(empty.status == 64 && empty.stderr.contains("--creator"), "\(empty.stderr)")
        }
    }
}

extension Live.WebConsoleLive {
    /// The console shows each Data's, Plan's and Run's creator, links it to the list filtered by that user, and
    /// filters its lists by creator through the URL.
    @Test func creatorsAreShownAndFilterTheLists() throws {
        let knit = try LiveKnit.instance()
        let scratch = try makeScratchDirectory(knit, "creators")
        try "x\n".write(toFile: scratch + "/x.txt", atomically: true, encoding: .utf8)
        let alices = try push(knit, scratch, tags: ["web:creator"], user: "alice")
        let admins = try push(knit, scratch, tags: ["web:creator"], user: "admin")
        let planFile = scratch + "/plan.yaml"
        try """
        image: "localhost/web-console-creator:1"
        inputs:
          - path: "/in"
            tags: ["web:creator-plan"]
        outputs: []
        """.write(toFile: planFile, atomically: true, encoding: .utf8)
        let applied = knit.runKnit(["plan", "apply", planFile], user: "alice")
        try #require(applied.status == 0, "knit plan apply: \(applied.stderr)")
        let plan = try jsonDecoder.decode(PlanDetailJSON.self, from: applied.stdout)
        let token = knit.token(for: "rita")

        let list = try Self.load(knit, route: "/data?tag=web:creator&creator=alice", token: token, name: "creator-data")
        Self.expectRendered(list, "data list by creator")
        #expect(list.dom.contains("href=\"#/data/\(alices.knitId)\""))
        #expect(!list.dom.contains(admins.knitId), "the creator filter leaves the admin's Data out")
        #expect(list.dom.contains("href=\"#/data?creator=alice\""), "the creator column links the filtered list")

        let detail = try Self.load(knit, route: "/data/\(admins.knitId)", token: token, name: "creator-detail")
        #expect(detail.dom.contains("<dt>creator</dt>"))
        #expect(detail.dom.contains("href=\"#/data?creator=admin\""))

        let plans = try Self.load(knit, route: "/plans?creator=alice", token: token, name: "creator-plans")
        #expect(plans.dom.contains("href=\"#/plans/\(plan.planId)\""))
        #expect(!plans.dom.contains("knit#uploaded"), "the pseudo plan belongs to nobody")
        let planPage = try Self.load(knit, route: "/plans/\(plan.planId)", token: token, name: "creator-plan")
        #expect(planPage.dom.contains("href=\"#/plans?creator=alice\""))

        let runs = try Self.load(knit, route: "/runs?creator=admin", token: token, name: "creator-runs")
        #expect(runs.dom.contains("href=\"#/runs/\(admins.upstream.run.runId)\""))
        #expect(!runs.dom.contains(alices.upstream.run.runId), "alice's upload is not the admin's")
        let runPage = try Self.load(
            knit,
            route: "/runs/\(alices.upstream.run.runId)",
            token: token,
            name: "creator-run"
        )
        #expect(runPage.dom.contains("href=\"#/runs?creator=alice\""))
    }
}
