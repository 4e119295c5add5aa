import KnitAPI
import KnitCore
import KnitStore
import KnitSystem
import KnitTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// F9: an entry name that is not UTF-8 gave 500, left its staging directory behind and broke start-up recovery.
@Suite struct BadNameTests {
    @Test(
        "F9: an entry name that is not valid UTF-8 is 400 with the reason, and staging stays empty",
        arguments: ["GNU_FORMAT", "PAX_FORMAT", "USTAR_FORMAT"]
    )
    func nonUTF8EntryNameIsRefused(format: String) throws {
        let harness = try APIHarness()
        let body = try pythonTar(
            """
            ti = tarfile.TarInfo(b'bad\\xff\\xfename'.decode('utf-8', 'surrogateescape')); ti.size = 1
            t.addfile(ti, io.BytesIO(b'x'))
            """,
            format: format
        )
        let response = harness.request("POST", "/api/data/", body: body)
        #expect(response.status == 400)
        #expect(try json(response)["reason"]?.stringValue?.contains("not valid UTF-8") == true)
        #expect(harness.stagingEntries().isEmpty)
        #expect(harness.dataEntries().isEmpty)
        #expect(harness.store.dataCount() == 0)
    }

    @Test("F9: a symlink target that is not valid UTF-8 is 400, and staging stays empty")
    func nonUTF8LinkTargetIsRefused() throws {
        let harness = try APIHarness()
        let body = try pythonTar(
            """
            ti = tarfile.TarInfo('ok'); ti.size = 1; t.addfile(ti, io.BytesIO(b'x'))
            ti = tarfile.TarInfo('l'); ti.type = tarfile.SYMTYPE
            ti.linkname = b'ok\\xff'.decode('utf-8', 'surrogateescape'); t.addfile(ti)
            """
        )
        let response = harness.request("POST", "/api/data/", body: body)
        #expect(response.status == 400)
        #expect(try json(response)["reason"]?.stringValue?.contains("not valid UTF-8") == true)
        #expect(harness.stagingEntries().isEmpty)
        #expect(harness.store.dataCount() == 0)
    }
}

/// A tar (GNU format unless `format` says otherwise) written by Python's tarfile; `entries` is Python code
/// adding to `t` (with `io` imported).
func pythonTar(_ entries: String, format: String = "GNU_FORMAT") throws -> [UInt8] {
    let dir = scratchDirectory("knit-pytar-")
    defer { run(["rm", "-rf", dir]) }
    let script = """
        import io, sys, tarfile
        with tarfile.open(sys.argv[1], 'w', format=tarfile.\(format), encoding='utf-8', errors='surrogateescape') as t:
        \(entries.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        """
    try #require(run(["python3", "-c", script, dir + "/out.tar"]) == 0)
    return readBytes(dir + "/out.tar")
}
