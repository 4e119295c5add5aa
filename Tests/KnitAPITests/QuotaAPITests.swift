import Dispatch
import KnitAPI
import KnitArchive
import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Synchronization
import Testing

// Uploads beyond a user's quota: 507 with a Knit JSON error naming the quota, the usage and the limit,
// refused as early as the quota can tell (before the body for a Data count or a full quota, at the first
// archive entry that declares more than is left), and nothing left behind.

/// POST /api/data/ as alice with `body`, counting the body bytes the server asked for.
private func countedUpload(_ harness: APIHarness, _ body: [UInt8]) -> (response: APIResponse, read: Int) {
    let request = APIRequest(
        method: "POST",
        uri: "/api/data/?tag=k:v",
        headers: ["authorization": "Bearer \(harness.tokens["alice"]!)"]
    )!
    var offset = 0
    let response = harness.api.handle(request) { buffer in
        let count = min(buffer.count, body.count - offset)
        body.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + count])) }
        offset += count
        return count
    }
    return (response, offset)
}

private func usage(_ harness: APIHarness, _ user: String = "alice") throws -> UserUsage {
    try #require(try harness.store.usageReport().first { $0.user == user })
}

@Suite struct QuotaAPITests {
    @Test func anUploadDeclaringMoreThanTheBytesLeftIs507AfterItsFirstEntryAndLeavesNothing() throws {
        let harness = try APIHarness()
        try harness.store.setQuota(user: "alice", bytes: .limit(1 << 20))
        let small = harness.request("POST", "/api/data/", body: try makeArchive(format: .tar, files: ["a": "12345"]))
        try #require(small.status == 200)
        let dataBefore = harness.dataEntries()

        // 32 MiB in one entry: its header declares the size, so the server stops before reading the content.
        let body = try makeArchive(format: .tar, files: ["big.bin": String(repeating: "x", count: 32 << 20)])
        let (refused, read) = countedUpload(harness, body)
        #expect(refused.status == 507)
        let error = try json(refused)
        let reason = try #require(error["reason"]?.stringValue)
        #expect(
            reason == "quota exceeded: user alice holds 5 bytes of a bytes quota of 1048576 bytes; "
                + "this Data declares more than the 1048571 bytes left"
        )
        #expect(error["message"]?.stringValue?.hasPrefix(reason) == true, "Knitfab's CLI shows `message`")
        #expect(error["advice"]?.stringValue?.contains("knitadm quota set alice --bytes") == true)
        #expect(read < 8 << 20, "read \(read) of \(body.count) bytes: the refusal comes at the entry's header")
        #expect(harness.stagingEntries().isEmpty)
        #expect(harness.dataEntries() == dataBefore)
        #expect(try usage(harness).data == 1, "the refused upload's records are gone")
        #expect(try usage(harness).bytes == 5)

        // Within what is left, uploads go on.
        let fits = harness.request(
            "POST",
            "/api/data/",
            body: try makeArchive(format: .tarZstd, files: ["b": String(repeating: "y", count: 1000)])
        )
        #expect(fits.status == 200)
    }

    @Test func anUploadBeyondTheDataQuotaIs507BeforeItsBodyIsRead() throws {
        let harness = try APIHarness()
        try harness.store.setQuota(user: "alice", data: .limit(1))
        let body = try makeArchive(format: .tar, files: ["a": "12345"])
        #expect(countedUpload(harness, body).response.status == 200)

        let (refused, read) = countedUpload(harness, body)
        #expect(refused.status == 507)
        #expect(
            try json(refused)["reason"]?.stringValue
                == "quota exceeded: user alice holds 1 Data of a data quota of 1 Data"
        )
        #expect(read == 0)
        #expect(harness.stagingEntries().isEmpty)
        #expect(harness.dataEntries().count == 1)
        // Other users are not held to alice's quota.
        #expect(harness.request("POST", "/api/data/", as: "carol", body: body).status == 200)
    }

    /// Parallel uploads each may begin with the same bytes left; publishing is one write transaction after
    /// another, checked against what the others committed, so what is stored never exceeds the quota.
    @Test func parallelUploadsOfOneUserNeverStoreMoreThanTheQuota() throws {
        let harness = try APIHarness(transferSlots: 8, slotsPerUser: 8)
        let quota: Int64 = 300_000
        try harness.store.setQuota(user: "alice", bytes: .limit(quota))
        let each = 120_000  // two fit, three do not
        let bodies = try (0..<6).map { index in
            try makeArchive(format: .tar, files: ["f\(index)": String(repeating: "z", count: each)])
        }
        let statuses = Mutex<[Int]>([])
        let group = DispatchGroup()
        let api = harness.api
        let token = harness.tokens["alice"]!
        for body in bodies {
            DispatchQueue.global().async(group: group) {
                let request = APIRequest(
                    method: "POST",
                    uri: "/api/data/",
                    headers: ["authorization": "Bearer \(token)"]
                )!
                var offset = 0
                let response = api.handle(request) { buffer in
                    let count = min(buffer.count, body.count - offset)
                    body.withUnsafeBytes {
                        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + count]))
                    }
                    offset += count
                    return count
                }
                statuses.withLock { $0.append(response.status) }
            }
        }
        group.wait()
        let seen = statuses.withLock { $0.sorted() }
        #expect(seen == [200, 200, 507, 507, 507, 507], "\(seen)")
        let stored = try usage(harness)
        #expect(stored.bytes == 2 * Int64(each))
        #expect(stored.bytes <= quota)
        #expect(stored.data == 2)
        #expect(harness.stagingEntries().isEmpty)
        #expect(harness.dataEntries().count == 2)
    }
}
