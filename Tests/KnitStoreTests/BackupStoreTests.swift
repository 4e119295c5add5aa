import Foundation
import KnitCore
import KnitSystem
import KnitTestSupport
import Testing

@testable import KnitStore

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct BackupStoreTests {
    /// A Run may leave names that are not UTF-8, symlinks and odd modes: a linked and a copied tree carry them
    /// all, the fingerprint of both equals the original's, and a changed byte, mode or name changes it.
    @Test func treeCopyKeepsRawNamesLinksAndModesAndTheFingerprintSeesChanges() throws {
        let dir = TemporaryDirectory()
        let source = dir.path + "/source"
        try FileManager.default.createDirectory(atPath: source + "/sub", withIntermediateDirectories: true)
        writeFile(source + "/sub/a.txt", "alpha")
        chmod(source + "/sub/a.txt", 0o640)
        chmod(source + "/sub", 0o700)
        let rawName: [UInt8] = Array("raw-".utf8) + [0xFF, 0xFE]
        let rawPath = Array((source + "/").utf8) + rawName
        let fd = withCName(rawPath) { open($0, O_WRONLY | O_CREAT | O_EXCL, 0o644) }
        try #require(fd >= 0)
        _ = "bytes".withCString { write(fd, $0, 5) }
        close(fd)
        try FileManager.default.createSymbolicLink(atPath: source + "/link", withDestinationPath: "sub/a.txt")

        var linked = TreeCopyCount()
        try TreeCopy.copy(source, to: dir.path + "/linked", link: true, count: &linked)
        #expect(linked.linkedFiles == 2 && linked.copiedFiles == 0)
        var copied = TreeCopyCount()
        try TreeCopy.copy(source, to: dir.path + "/copied", link: false, count: &copied)
        #expect(copied.copiedFiles == 2 && copied.copiedBytes == 10)

        let original = try TreeCopy.digest(source)
        #expect(original.files == 2 && original.bytes == 10)
        #expect(try TreeCopy.digest(dir.path + "/linked") == original)
        #expect(try TreeCopy.digest(dir.path + "/copied") == original)
        var info = stat()
        #expect(withCName(Array((dir.path + "/copied/").utf8) + rawName) { lstat($0, &info) } == 0)
        #expect(lstat(dir.path + "/copied/sub", &info) == 0 && info.st_mode & 0o7777 == 0o700)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir.path + "/copied/link") == "sub/a.txt")

        writeFile(dir.path + "/copied/sub/a.txt", "alphA", mode: 0o640)
        #expect(try TreeCopy.digest(dir.path + "/copied") != original, "a changed byte")
        writeFile(dir.path + "/copied/sub/a.txt", "alpha", mode: 0o640)
        #expect(try TreeCopy.digest(dir.path + "/copied") == original)
        chmod(dir.path + "/copied/sub/a.txt", 0o644)
        #expect(try TreeCopy.digest(dir.path + "/copied") != original, "a changed mode")
        chmod(dir.path + "/copied/sub/a.txt", 0o640)
        #expect(try TreeCopy.digest(dir.path + "/copied") == original)
        rename(dir.path + "/copied/sub/a.txt", dir.path + "/copied/sub/b.txt")
        #expect(try TreeCopy.digest(dir.path + "/copied") != original, "a changed name")
    }

    /// The home-in-use check sees the lock LMDB takes on `db/lock.mdb` in another process (a stand-in holding
    /// the same shared lock), names that process, and sees nothing once it is gone.
    @Test func processHoldingNamesTheProcessWithTheStoreOpen() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path)
        store.close()
        #expect(KnitStore.processHolding(home: dir.path) == nil)
        let holder = try Subprocess.spawn(
            [
                "/usr/bin/python3", "-c",
                "import fcntl, sys, time; f = open(sys.argv[1], 'rb'); fcntl.lockf(f, fcntl.LOCK_SH, 1, 0); "
                    + "time.sleep(60)",
                dir.path + "/db/lock.mdb",
            ],
            stdout: .null
        )
        var seen: Int32?
        for _ in 0..<200 where seen == nil {
            seen = KnitStore.processHolding(home: dir.path)
            if seen == nil { usleep(50_000) }
        }
        #expect(seen == holder.pid)
        holder.kill()
        _ = try holder.wait()
        #expect(KnitStore.processHolding(home: dir.path) == nil)
    }

    /// Backup and restore at the store's level: Data, tags and records come back in a new home, fingerprints
    /// are checked, and the target's previous content is moved aside, not deleted.
    @Test func backupRestoresIntoAnotherHomeAndKeepsItsPreviousContent() throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir.path + "/home")
        let details = try (0..<3).map { try upload(store, tags: ["k:v\($0)"]) }
        let report = try store.backup(to: dir.path + "/backup")
        #expect(report.data == 3 && report.linkedFiles == 3 && report.snapshots == 1)
        store.close()

        let target = dir.path + "/target"
        let old = try openStore(target)
        _ = try upload(old, tags: ["old:one"])
        old.close()
        let restored = try KnitStore.restore(from: dir.path + "/backup", into: target)
        #expect(restored.data == 3)
        let aside = try #require(restored.previousContent)
        #expect(FileManager.default.fileExists(atPath: aside + "/db/data.mdb"))
        let reopened = try openStore(target)
        defer { reopened.close() }
        for detail in details {
            let found = try reopened.findData(tags: [tag("knit#id:\(detail.knitId)")], since: nil, durationMs: nil)
            #expect(found == [detail])
        }
        #expect(try reopened.findData(tags: [tag("old:one")], since: nil, durationMs: nil).isEmpty)
        #expect(try reopened.checkConsistency().directoriesWithoutRecord.isEmpty)
    }
}
