import KnitCore
import KnitDigest
import KnitLMDB
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

// Users for their whole life: disable, enable, delete, token expiry, rotation, listing and revocation. The
// store is read on every token check, so each change holds from the next check on.

@Suite struct UserLifecycleTests {
    @Test func aDisabledUsersTokensAreRefusedUntilEnabledAgain() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        defer { store.close() }
        let first = try store.addUser(name: "alice", role: .user)
        let second = try store.issueToken(name: "alice")
        let bob = try store.addUser(name: "bob", role: .user)

        #expect(try store.setUserEnabled(name: "alice", enabled: false))
        #expect(store.check(token: first) == .disabled(user: "alice"))
        #expect(store.check(token: second) == .disabled(user: "alice"))
        #expect(store.authenticate(token: first) == nil)
        #expect(store.authenticate(token: bob)?.name == "bob", "other users are not affected")
        #expect(try store.setUserEnabled(name: "alice", enabled: false) == false, "already disabled")
        #expect(try store.userSummaries().first { $0.name == "alice" }?.state == .disabled)

        #expect(try store.setUserEnabled(name: "alice", enabled: true))
        #expect(store.check(token: first) == .valid(StoreUser(name: "alice", role: .user)))
        #expect(store.check(token: second) == .valid(StoreUser(name: "alice", role: .user)))
        #expect(try store.setUserEnabled(name: "alice", enabled: true) == false, "already enabled")

        let missing = #expect(throws: StoreError.self) { try store.setUserEnabled(name: "nobody", enabled: false) }
        #expect(missing?.code == .notFound)
    }

    @Test func aDeletedUserKeepsWhatTheyOwnButTheNameIsNeverGivenAgain() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        defer { store.close() }
        let token = try store.addUser(name: "alice", role: .user)
        let other = try store.issueToken(name: "alice")
        let data = try upload(store, tags: ["k:v"], creator: "alice")

        #expect(try store.deleteUser(name: "alice") == 2)
        #expect(store.check(token: token) == .unknown)
        #expect(store.check(token: other) == .unknown)
        #expect(try store.tokens(of: "alice").isEmpty, "their tokens are revoked, not only refused")

        // Their Data stays, still theirs by name, and findable by creator.
        #expect(try store.owner(of: .data(knitId: data.knitId)) == "alice")
        #expect(try store.dataDetail(knitId: data.knitId).creator == "alice")
        #expect(
            try store.findData(tags: [], since: nil, durationMs: nil, creator: "alice").map(\.knitId) == [data.knitId]
        )

        // The name is reserved: a new "alice" would own the old one's Data, Plans and Runs.
        let again = #expect(throws: StoreError.self) { try store.addUser(name: "alice", role: .admin) }
        #expect(again?.code == .conflict)
        #expect(again?.message.contains("was deleted") == true, "\(again?.message ?? "")")
        let token2 = #expect(throws: StoreError.self) { try store.issueToken(name: "alice") }
        #expect(token2?.code == .notFound)
        let enable = #expect(throws: StoreError.self) { try store.setUserEnabled(name: "alice", enabled: true) }
        #expect(enable?.code == .conflict)
        let twice = #expect(throws: StoreError.self) { try store.deleteUser(name: "alice") }
        #expect(twice?.code == .notFound)

        let listed = try #require(try store.userSummaries().first { $0.name == "alice" })
        #expect(listed.state == .deleted)
        #expect(listed.tokens == 0)
    }

    @Test func aTokenStopsAtItsExpiry() throws {
        let dir = TemporaryDirectory()
        let clock = TestClock()
        let store = try openStore(dir.path, clock: clock)
        defer { store.close() }
        let lasting = try store.addUser(name: "alice", role: .user)
        let expiresAt = clock.milliseconds + 60_000
        let issued = try store.issueToken(for: "alice", expiry: .at(expiresAt), revokingOthers: false)
        #expect(issued.expires == KnitTime(milliseconds: expiresAt))
        #expect(issued.revokedIds.isEmpty)

        clock.advance(59_999)
        #expect(store.check(token: issued.token) == .valid(StoreUser(name: "alice", role: .user)))
        clock.advance(1)
        #expect(store.check(token: issued.token) == .expired(user: "alice", at: KnitTime(milliseconds: expiresAt)))
        #expect(store.authenticate(token: issued.token) == nil)
        #expect(store.check(token: lasting) == .valid(StoreUser(name: "alice", role: .user)), "no expiry: lasts")
        // An expired token is listed (and counted) until revoked, so an admin sees it.
        #expect(try store.tokens(of: "alice").map(\.id).contains(issued.id))
        #expect(try store.userSummaries().first?.tokens == 2)

        let past = #expect(throws: StoreError.self) {
            try store.issueToken(for: "alice", expiry: .at(clock.milliseconds), revokingOthers: false)
        }
        #expect(past?.code == .invalid)
        #expect(try store.tokens(of: "alice").count == 2, "a refused expiry issues nothing")

        // A duration counts from the issuing instant, read in the store's own transaction.
        let relative = try store.issueToken(for: "alice", expiry: .after(90_000), revokingOthers: false)
        #expect(relative.expires == KnitTime(milliseconds: clock.milliseconds + 90_000))
        let zero = #expect(throws: StoreError.self) {
            try store.issueToken(for: "alice", expiry: .after(0), revokingOthers: false)
        }
        #expect(zero?.code == .invalid)
    }

    @Test func rotationRevokesTheOtherTokensInTheSameStep() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        defer { store.close() }
        let first = try store.addUser(name: "alice", role: .user)
        let second = try store.issueToken(name: "alice")
        let bob = try store.addUser(name: "bob", role: .reader)
        let before = try store.tokens(of: "alice").map(\.id)

        // Without rotation the old tokens keep working beside the new one.
        let kept = try store.issueToken(for: "alice", expiry: .never, revokingOthers: false)
        #expect(store.authenticate(token: first)?.name == "alice")

        let rotated = try store.issueToken(for: "alice", expiry: .never, revokingOthers: true)
        #expect(Set(rotated.revokedIds) == Set(before + [kept.id]))
        for old in [first, second, kept.token] { #expect(store.check(token: old) == .unknown) }
        #expect(store.authenticate(token: rotated.token)?.name == "alice")
        #expect(store.authenticate(token: bob)?.name == "bob", "other users keep theirs")
        #expect(try store.tokens(of: "alice").map(\.id) == [rotated.id])
    }

    @Test func tokensAreListedWithoutSecretsAndRevokedById() throws {
        let dir = TemporaryDirectory()
        let clock = TestClock()
        let store = try openStore(dir.path, clock: clock)
        defer { store.close() }
        let alice = try store.addUser(name: "alice", role: .admin)
        clock.advance(1000)
        let expiring = try store.issueToken(
            for: "alice",
            expiry: .at(clock.milliseconds + 3_600_000),
            revokingOthers: false
        )
        let bob = try store.addUser(name: "bob", role: .user)

        let all = try store.tokens()
        #expect(all.map(\.user) == ["alice", "alice", "bob"])
        #expect(all[0].created == KnitTime(milliseconds: clock.milliseconds - 1000).description)
        #expect(all[0].expires == nil)
        #expect(all[1].id == expiring.id)
        #expect(all[1].expires == KnitTime(milliseconds: clock.milliseconds + 3_600_000).description)
        for summary in all {
            #expect(summary.id.utf8.count == 16)
            for secret in [alice, expiring.token, bob] {
                #expect(!secret.contains(summary.id), "an id is not part of the token")
            }
        }
        // The id is the start of the stored SHA-256, never the token.
        #expect(SHA256Digest.hex(of: expiring.token).hasPrefix(expiring.id))

        #expect(try store.revokeToken(id: expiring.id.uppercased()) == "alice")
        #expect(store.check(token: expiring.token) == .unknown)
        #expect(store.authenticate(token: alice)?.name == "alice", "only that token is gone")
        let again = #expect(throws: StoreError.self) { try store.revokeToken(id: expiring.id) }
        #expect(again?.code == .notFound)
        for bad in ["", "xyz", String(repeating: "g", count: 16), expiring.id + "0"] {
            let error = #expect(throws: StoreError.self) { try store.revokeToken(id: bad) }
            #expect(error?.code == .invalid, "\(bad)")
        }
        let unknownUser = #expect(throws: StoreError.self) { try store.tokens(of: "carol") }
        #expect(unknownUser?.code == .notFound)
    }

    /// Tokens stored before expiry existed hold the bare user name; they keep working and are listed.
    @Test func tokensOfTheEarlierFormatStillWork() throws {
        let dir = TemporaryDirectory()
        let legacy = "knit_" + String(repeating: "A", count: 43)
        do {
            let store = try openStore(dir.path)
            _ = try store.addUser(name: "alice", role: .user)
            store.close()
            let env = try LMDBEnvironment(path: dir.path + "/db", mapSize: 64 << 20)
            let tokens = try env.openDatabase(name: "tokens")
            try env.write { txn in
                try txn.put(tokens, key: Array(SHA256Digest.hex(of: legacy).utf8), value: Array("alice".utf8))
            }
            env.close()
        }
        let store = try openStore(dir.path)
        defer { store.close() }
        #expect(store.authenticate(token: legacy) == StoreUser(name: "alice", role: .user))
        let listed = try #require(try store.tokens(of: "alice").first { SHA256Digest.hex(of: legacy).hasPrefix($0.id) })
        #expect(listed.created == nil && listed.expires == nil)
        #expect(try store.userSummaries().first?.tokens == 2)
        try store.setUserEnabled(name: "alice", enabled: false)
        #expect(store.check(token: legacy) == .disabled(user: "alice"))
        try store.deleteUser(name: "alice")
        #expect(store.check(token: legacy) == .unknown)
    }

    @Test func everyDataPlanAndRunShowsItsCreatorAndFindsFilterByIt() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        defer { store.close() }
        let mine = try upload(store, tags: ["in:x"], creator: "alice")
        let theirs = try upload(store, tags: ["in:x"], creator: "bob")
        let spec = PlanSpecJSON(
            image: "repo/train:v1",
            inputs: [MountpointJSON(path: "/in", tags: TagSet([tag("in:x")]))],
            outputs: [MountpointJSON(path: "/out", tags: TagSet([tag("out:y")]))]
        )
        let plan = try store.registerPlan(spec, creator: "bob")
        #expect(plan.creator == "bob")
        #expect(try store.planDetail(planId: plan.planId).creator == "bob")

        #expect(try store.dataDetail(knitId: mine.knitId).creator == "alice")
        #expect(
            try store.findData(tags: [tag("in:x")], since: nil, durationMs: nil, creator: "alice").map(\.knitId) == [
                mine.knitId
            ]
        )
        #expect(
            try store.findData(tags: [tag("in:x")], since: nil, durationMs: nil, creator: "bob").map(\.knitId) == [
                theirs.knitId
            ]
        )
        #expect(try store.findData(tags: [], since: nil, durationMs: nil, creator: "carol").isEmpty)
        #expect(try store.findData(tags: [tag("in:x")], since: nil, durationMs: nil).count == 2)

        #expect(try store.findPlans(creator: "bob").map(\.planId) == [plan.planId])
        #expect(try store.findPlans(creator: "alice").isEmpty, "the pseudo plan belongs to nobody")
        #expect(try store.findPlans().count == 2)

        // The plan's Runs belong to bob, whoever's Data fed them; upload Runs to the uploader.
        let planRuns = try store.findRuns(planIds: [plan.planId])
        #expect(planRuns.count == 2)
        #expect(planRuns.allSatisfy { $0.creator == "bob" })
        let output = try #require(planRuns.first?.outputs.first?.knitId)
        #expect(try store.dataDetail(knitId: output).creator == "bob", "a Run's outputs are its owner's")
        let alicesRuns = try store.findRuns(creator: "alice")
        #expect(alicesRuns.map(\.runId) == [mine.upstream.run.runId])
        #expect(try store.runDetail(runId: mine.upstream.run.runId).creator == "alice")
        #expect(
            Set(try store.findRuns(creator: "bob").map(\.runId))
                == Set(planRuns.map(\.runId) + [theirs.upstream.run.runId])
        )
    }
}
