import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// F9: start-up recovery stopped at the first staging entry it could not remove, and could not remove names
/// that are not UTF-8 (they were looked up through a lossy String).
@Suite(.serialized) struct RecoveryRobustnessTests {
    /// Creates `parent/<name>` (raw bytes) as a file, or as a directory when `directory`.
    private func make(_ parent: String, _ name: [UInt8], directory: Bool = false) {
        make(Array(parent.utf8), name, directory: directory)
    }

    private func make(_ parent: [UInt8], _ name: [UInt8], directory: Bool = false) {
        let path = parent + [UInt8(ascii: "/")] + name + [0]
        path.withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { cPath in
                if directory {
                    precondition(mkdir(cPath.baseAddress!, 0o755) == 0)
                } else {
                    let fd = open(cPath.baseAddress!, O_WRONLY | O_CREAT | O_EXCL, 0o644)
                    precondition(fd >= 0)
                    close(fd)
                }
            }
        }
    }

    private let badName: [UInt8] = Array("bad".utf8) + [0xFF, 0xFE] + Array("name".utf8)

    @Test("F9: recovery removes a staging directory holding names that are not UTF-8")
    func recoveryRemovesNonUTF8Names() throws {
        let dir = TemporaryDirectory()
        let staging = dir.path + "/staging"
        do {
            let store = try openStore(dir.path)
            store.close()
        }
        make(staging, Array("leftover".utf8), directory: true)
        make(staging + "/leftover", badName)
        make(staging + "/leftover", badName + Array("-dir".utf8), directory: true)
        make(Array((staging + "/leftover/").utf8) + badName + Array("-dir".utf8), Array("inner".utf8))
        make(staging, badName)
        let store = try openStore(dir.path)
        defer { store.close() }
        let report = store.recoverAtStartup()
        #expect(report == RecoveryReport(removedStagingEntries: 2))
        #expect(listDirectory(staging).isEmpty)
    }

    @Test(
        "F9: recovery goes on past a staging entry it cannot remove",
        .enabled(if: getuid() == 0, "a mount point is what root cannot remove")
    )
    func recoveryContinuesPastAnUnremovableEntry() throws {
        let dir = TemporaryDirectory()
        let staging = dir.path + "/staging"
        do {
            let store = try openStore(dir.path)
            store.close()
        }
        for name in ["a", "busy", "z"] { make(staging, Array(name.utf8), directory: true) }
        make(staging + "/a", badName)
        make(staging + "/z", badName)
        make(staging, Array("stray".utf8))
        // rmdir of a mount point fails with EBUSY, even for root.
        try #require(run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", staging + "/busy"]) == 0)
        defer { run(["umount", staging + "/busy"]) }
        let store = try openStore(dir.path)
        defer { store.close() }
        let report = store.recoverAtStartup()
        #expect(report == RecoveryReport(removedStagingEntries: 3, unremovableStagingEntries: 1))
        #expect(listDirectory(staging) == ["busy"])
    }
}
