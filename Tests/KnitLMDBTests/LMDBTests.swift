import Foundation
import KnitSystem
import KnitTestSupport
import Synchronization
import Testing

@testable import KnitLMDB

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct LMDBTests {
    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
    func text(_ raw: UnsafeRawBufferPointer) -> String { String(decoding: raw, as: UTF8.self) }

    @Test func putGetCommitAndReopen() throws {
        let dir = TemporaryDirectory()
        do {
            let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20)
            let db = try env.openDatabase(name: "plain")
            try env.write { txn in try txn.put(db, key: bytes("k1"), value: bytes("v1")) }
            let value = try env.read { txn in try txn.get(db, key: bytes("k1")) }
            #expect(value == bytes("v1"))
            let absent = try env.read { txn in try txn.get(db, key: bytes("nope")) }
            #expect(absent == nil)
            let borrowed = try env.read { txn in try txn.withValue(db, key: bytes("k1")) { $0.map(text) } }
            #expect(borrowed == "v1")
            env.close()
            env.close()  // idempotent
        }
        let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20)
        let db = try env.openDatabase(name: "plain")
        #expect(try env.read { txn in try txn.get(db, key: bytes("k1")) } == bytes("v1"))
    }

    /// `copy(to:)` writes what is committed into another directory, compacted: the pages freed by deletions are
    /// left out, so the copy is smaller than the file it came from, and it opens as an environment of its own.
    @Test func copyIsACompactedSnapshotThatOpensOnItsOwn() throws {
        let dir = TemporaryDirectory()
        let target = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, mapSize: 64 << 20)
        let db = try env.openDatabase(name: "plain")
        let filler = [UInt8](repeating: 7, count: 1000)
        try env.write { txn in
            for index in 0..<4000 { try txn.put(db, key: bytes("k\(index)"), value: filler) }
        }
        try env.write { txn in
            for index in 100..<4000 { _ = try txn.delete(db, key: bytes("k\(index)")) }
        }
        try env.copy(to: target.path)
        env.close()
        func size(_ path: String) throws -> Int {
            try #require(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        }
        let original = try size(dir.path + "/data.mdb")
        let copied = try size(target.path + "/data.mdb")
        #expect(copied * 4 < original, "compacted: \(copied) of \(original) bytes")
        let copy = try LMDBEnvironment(path: target.path, mapSize: 64 << 20)
        let copyDb = try copy.openDatabase(name: "plain")
        #expect(try copy.read { try $0.count(copyDb) } == 100)
        #expect(try copy.read { try $0.get(copyDb, key: bytes("k99")) } == filler)
        #expect(try copy.read { try $0.get(copyDb, key: bytes("k100")) } == nil)
    }

    @Test func abortDiscardsAndThrowingWriteRollsBack() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20)
        let db = try env.openDatabase(name: "plain")

        let txn = try LMDBTransaction(environment: env, readOnly: false)
        try txn.put(db, key: bytes("a"), value: bytes("1"))
        #expect(try txn.get(db, key: bytes("a")) == bytes("1"))
        txn.abort()
        #expect(try env.read { try $0.get(db, key: bytes("a")) } == nil)

        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try env.write { txn in
                try txn.put(db, key: bytes("b"), value: bytes("2"))
                throw Boom()
            }
        }
        #expect(try env.read { try $0.get(db, key: bytes("b")) } == nil)

        do {
            // Dropped without commit: deinit aborts.
            let dropped = try LMDBTransaction(environment: env, readOnly: false)
            try dropped.put(db, key: bytes("c"), value: bytes("3"))
        }
        #expect(try env.read { try $0.get(db, key: bytes("c")) } == nil)
    }

    @Test func putFlagsAndDelete() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20)
        let db = try env.openDatabase(name: "plain")
        try env.write { txn in try txn.put(db, key: bytes("k"), value: bytes("v")) }
        let error = #expect(throws: LMDBError.self) {
            try env.write { txn in try txn.put(db, key: bytes("k"), value: bytes("w"), flags: .noOverwrite) }
        }
        #expect(error?.code == .keyExists)
        #expect(error?.message.contains("'plain'") == true)
        let deleted = try env.write { txn in
            (try txn.delete(db, key: bytes("k")), try txn.delete(db, key: bytes("k")))
        }
        #expect(deleted == (true, false))
        #expect(try env.read { try $0.count(db) } == 0)
    }

    @Test func duplicateSortedIteration() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20)
        let db = try env.openDatabase(name: "dups", duplicateSort: true)
        try env.write { txn in
            for value in ["c", "a", "b"] { try txn.put(db, key: bytes("k"), value: bytes(value)) }
            try txn.put(db, key: bytes("other"), value: bytes("z"))
        }
        try env.read { txn in
            #expect(try txn.duplicates(db, key: bytes("k")) == [bytes("a"), bytes("b"), bytes("c")])
            #expect(try txn.duplicateCount(db, key: bytes("k")) == 3)
            #expect(try txn.duplicateCount(db, key: bytes("missing")) == 0)
            #expect(try txn.contains(db, key: bytes("k"), value: bytes("b")))
            #expect(try !txn.contains(db, key: bytes("k"), value: bytes("z")))
            var firstTwo: [String] = []
            try txn.forEachDuplicate(db, key: bytes("k")) { value in
                firstTwo.append(text(value))
                return firstTwo.count < 2
            }
            #expect(firstTwo == ["a", "b"])
        }
        try env.write { txn throws in
            #expect(try txn.delete(db, key: bytes("k"), value: bytes("b")))
            #expect(try !txn.delete(db, key: bytes("k"), value: bytes("b")))
        }
        #expect(try env.read { try $0.duplicates(db, key: bytes("k")) } == [bytes("a"), bytes("c")])
        let error = #expect(throws: LMDBError.self) {
            try env.write { txn in try txn.put(db, key: bytes("k"), value: bytes("a"), flags: .noDupData) }
        }
        #expect(error?.code == .keyExists)
    }

    @Test func rangeAndPrefixIteration() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20)
        let db = try env.openDatabase(name: "keys")
        try env.write { txn in
            for key in ["a1", "b1", "b2", "b3", "c1"] {
                try txn.put(db, key: bytes(key), value: bytes(key.uppercased()))
            }
        }
        try env.read { txn in
            var all: [String] = []
            try txn.forEach(db) { key, _ in
                all.append(text(key))
                return true
            }
            #expect(all == ["a1", "b1", "b2", "b3", "c1"])
            var prefixed: [String] = []
            try txn.forEach(db, prefix: bytes("b")) { key, value in
                prefixed.append(text(key) + "=" + text(value))
                return true
            }
            #expect(prefixed == ["b1=B1", "b2=B2", "b3=B3"])
            var fromB2: [String] = []
            try txn.forEach(db, from: bytes("b15")) { key, _ in
                fromB2.append(text(key))
                return fromB2.count < 2
            }
            #expect(fromB2 == ["b2", "b3"])
            var none: [String] = []
            try txn.forEach(db, prefix: bytes("zz")) { key, _ in
                none.append(text(key))
                return true
            }
            #expect(none.isEmpty)
        }
    }

    @Test func mapFullIsReportedClearly() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, mapSize: 1 << 20)
        let db = try env.openDatabase(name: "big")
        let error = #expect(throws: LMDBError.self) {
            try env.write { txn in
                for index in 0..<1000 {
                    try txn.put(db, key: bytes("key\(index)"), value: [UInt8](repeating: 7, count: 4096))
                }
            }
        }
        #expect(error?.code == .mapFull)
        #expect(error?.message.contains("database is full") == true)
        // The failed transaction left nothing behind.
        #expect(try env.read { try $0.count(db) } == 0)
    }

    @Test func concurrentWritesShareOneCommitAndAFailingBodyFailsAlone() throws {
        struct Refused: Error {}
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20)
        let db = try env.openDatabase(name: "group")
        let outcomes = Outcomes()
        let leaderInside = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        func writer(_ name: String, _ body: @escaping @Sendable (borrowing LMDBTransaction) throws -> Void) {
            done.enter()
            Thread.detachNewThread {
                defer { done.leave() }
                do {
                    try env.write(body)
                    outcomes.set(name, "committed")
                } catch { outcomes.set(name, error is Refused ? "refused" : "\(error)") }
            }
        }
        // The first writer holds its transaction open until two more writers wait behind it, so those two
        // are committed as one group once it is done.
        writer("first") { txn in
            try txn.put(db, key: Array("first".utf8), value: [1])
            leaderInside.signal()
            let deadline = Date().addingTimeInterval(30)
            while env.writes.waiting < 2, Date() < deadline { usleep(1000) }
        }
        leaderInside.wait()
        writer("kept") { txn in try txn.put(db, key: Array("kept".utf8), value: [2]) }
        writer("refused") { txn in
            try txn.put(db, key: Array("refused".utf8), value: [3])
            throw Refused()
        }
        #expect(done.wait(timeout: .now() + 60) == .success, "writers did not finish")
        #expect(outcomes.values == ["first": "committed", "kept": "committed", "refused": "refused"])
        // The refused body's put is gone with its nested transaction; its neighbour's stands.
        let stored = try env.read { txn in
            try ["first", "kept", "refused"].map { try txn.get(db, key: Array($0.utf8)) }
        }
        #expect(stored == [[1], [2], nil])
    }

    @Test func writesWithoutCommitSyncAreStoredOnceItReturns() throws {
        let dir = TemporaryDirectory()
        do {
            let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20)
            let db = try env.openDatabase(name: "bulk")
            try env.withoutCommitSync {
                for i in 0..<3 { try env.write { txn in try txn.put(db, key: bytes("k\(i)"), value: bytes("v\(i)")) } }
            }
            env.close()
        }
        let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20)
        let db = try env.openDatabase(name: "bulk")
        #expect(try env.read { try $0.count(db) } == 3)
    }

    @Test func missingDirectoryFails() {
        #expect(throws: LMDBError.self) { try LMDBEnvironment(path: "/tmp/knit-no-such-dir/x/y") }
    }

    @Test func readerCheckOnCleanEnvironment() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20)
        #expect(env.readerCheck() == 0)
    }

    /// What `GET /metrics` reports as map use: the configured size, and used pages that grow with what is
    /// written and stay within the file.
    @Test func mapUsageReportsTheMapSizeAndGrowsWithWrites() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20, maxReaders: 7)
        let db = try env.openDatabase(name: "plain")
        let empty = try env.mapUsage()
        #expect(empty.mapSize == 16 << 20)
        #expect(empty.pageSize >= 4096)
        #expect(empty.totalPages == (16 << 20) / empty.pageSize)
        #expect(empty.maxReaders == 7)
        let value = [UInt8](repeating: 7, count: 1000)
        try env.write { txn in
            for index in 0..<2000 { try txn.put(db, key: bytes("key-\(index)"), value: value) }
        }
        let used = try env.mapUsage()
        // 2 MB of values take at least 2 MB of pages.
        #expect(used.usedBytes >= 2_000_000 && used.usedBytes > empty.usedBytes)
        #expect(used.usedPages <= used.totalPages)
        var info = stat()
        #expect(stat(dir.file("data.mdb"), &info) == 0)
        let fileSize = Int64(info.st_size)
        #expect(used.usedBytes <= fileSize, "used \(used.usedBytes), file \(fileSize)")
        let reading = try env.read { _ in try env.mapUsage().readersInUse }
        #expect(reading >= 1)
    }
}

/// `read` keeps each thread's transaction handle between reads (reset, then renewed): the next read must still
/// see every commit made since, and a thread that ends must give its reader slot back.
@Suite struct ParkedReadTests {
    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func aReadAfterACommitOnTheSameThreadSeesIt() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20)
        let db = try env.openDatabase(name: "plain")
        for round in 0..<5 {
            try env.write { txn in try txn.put(db, key: bytes("k"), value: bytes("v\(round)")) }
            #expect(try env.read { txn in try txn.get(db, key: bytes("k")) } == bytes("v\(round)"))
        }
        // Nested on one thread: the inner read begins its own transaction; both see the data.
        let nested = try env.read { outer in
            try (outer.get(db, key: bytes("k")), env.read { inner in try inner.get(db, key: bytes("k")) })
        }
        #expect(nested.0 == bytes("v4") && nested.1 == bytes("v4"))
        #expect(try env.read { txn in try txn.get(db, key: bytes("k")) } == bytes("v4"))
    }

    /// Three reader slots, twenty threads one after another: each parks its handle, and gives the slot back when
    /// it ends, or the fourth thread would find the reader table full.
    @Test func threadsThatEndGiveTheirReaderSlotsBack() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20, maxReaders: 3)
        let db = try env.openDatabase(name: "plain")
        try env.write { txn in try txn.put(db, key: bytes("k"), value: bytes("v")) }
        for _ in 0..<20 {
            let outcome = ThreadBody {
                let value = Result(catching: { try env.read { txn in try txn.get(db, key: Array("k".utf8)) } })
                return (try? value.get()) == Array("v".utf8) ? "read" : "\(value)"
            }
            var thread = pthread_t()
            let started = pthread_create(
                &thread,
                nil,
                { raw in
                    Unmanaged<ThreadBody>.fromOpaque(raw!).takeUnretainedValue().run()
                    return nil
                },
                Unmanaged.passUnretained(outcome).toOpaque()
            )
            #expect(started == 0)
            pthread_join(thread, nil)
            #expect(outcome.outcome == "read")
        }
    }

    @Test func closingWithParkedReadsAndReopeningWorks() throws {
        let dir = TemporaryDirectory()
        do {
            let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20)
            let db = try env.openDatabase(name: "plain")
            try env.write { txn in try txn.put(db, key: bytes("k"), value: bytes("v")) }
            #expect(try env.read { txn in try txn.get(db, key: bytes("k")) } == bytes("v"))
            env.close()
        }
        let env = try LMDBEnvironment(path: dir.path, mapSize: 16 << 20)
        let db = try env.openDatabase(name: "plain")
        #expect(try env.read { txn in try txn.get(db, key: bytes("k")) } == bytes("v"))
        env.close()
    }
}

/// Work for a thread of its own, and what it found.
private final class ThreadBody: Sendable {
    private let body: @Sendable () -> String
    private let result = Mutex("not run")

    init(_ body: @escaping @Sendable () -> String) { self.body = body }

    func run() {
        let found = body()
        result.withLock { $0 = found }
    }

    var outcome: String { result.withLock { $0 } }
}

/// Results of writer threads, by name.
private final class Outcomes: Sendable {
    private let state = Mutex<[String: String]>([:])
    func set(_ name: String, _ outcome: String) { state.withLock { $0[name] = outcome } }
    var values: [String: String] { state.withLock { $0 } }
}
