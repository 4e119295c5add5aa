import ArgumentParser
import KnitClient
import KnitSystem

#if canImport(Glibc)
    import Glibc
#endif

struct DataPull: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Download Data.",
        discussion: """
            Without --extract, writes DEST/<KNIT_ID>.tar.gz (the server is asked for tar+gzip; should it send \
            another format, the extension says which: .tar.zst or .tar). With --extract, unpacks into \
            DEST/<KNIT_ID>/, which is created and must not hold anything yet; the wire format is plain tar from a \
            server on this machine, tar+zstd from any other (--format chooses one). DEST - writes the tar.gz to \
            stdout. When the server sends an MD5 (x-checksum-md5) and the bytes received do not match it, the pull \
            fails: the archive file is not kept and an extracted directory is emptied again; with DEST - the bytes \
            already went to stdout, and the exit status says they are damaged.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(
        name: [.customShort("x"), .customLong("extract")],
        help: "Extract into DEST/<KNIT_ID>/ instead of saving the archive."
    )
    var extract = false

    @Option(help: FormatOption.help("asked for with --extract"))
    var format = "auto"

    @Argument(help: ArgumentHelp("The Data to download.", valueName: "KNIT_ID"))
    var knitId: String

    @Argument(help: ArgumentHelp("Where to put it; - for stdout.", valueName: "DEST"))
    var destination: String = "."

    func validate() throws {
        if extract && destination == "-" { throw ValidationError("--extract cannot write to stdout (DEST -)") }
        if try FormatOption.parse(format) != .auto && !extract {
            throw ValidationError("--format applies to --extract only (a saved archive is tar+gzip)")
        }
        if knitId.isEmpty || knitId.contains("/") { throw ValidationError("'\(knitId)' is not a Knit Id") }
    }

    func run() throws {
        let wire = try FormatOption.parse(format).format
        try reportingErrors { () throws(KnitClientError) in
            let client = try global.apiClient()
            let bar = destination == "-" ? nil : ProgressBar.make("[knit data pull] \(knitId)")
            let result: PullResult
            if destination == "-" {
                result = try client.pullTarGzip(knitId: knitId) { try Console.writeAll(1, $0) }
            } else if extract {
                let target = (destination.hasSuffix("/") ? destination : destination + "/") + knitId
                try makeDirectory(destination, mustBeNew: false)
                try makeDirectory(target, mustBeNew: false)
                result = try client.pullData(
                    knitId: knitId,
                    extractInto: target,
                    format: wire,
                    progress: bar.map { $0.update }
                )
                bar?.finish()
                Console.error("[knit data pull] extracted: \(target)")
            } else {
                try makeDirectory(destination, mustBeNew: false)
                result = try client.pullArchive(knitId: knitId, into: destination, progress: bar.map { $0.update })
                bar?.finish()
                Console.error("[knit data pull] saved: \(result.path ?? destination)")
            }
        }
    }

    private func makeDirectory(_ path: String, mustBeNew: Bool) throws(KnitClientError) {
        if mkdir(path, 0o755) == 0 || (errno == EEXIST && !mustBeNew && isDirectory(path)) { return }
        throw KnitClientError(.io, "cannot create directory \(path): \(Errno.current)")
    }
}
