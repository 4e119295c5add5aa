import ArgumentParser
import KnitClient
import KnitCore
import KnitSystem

#if canImport(Glibc)
    import Glibc
#endif

struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Put container images into Knit's image registry.",
        subcommands: [ImageLoad.self]
    )
}

struct ImageLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Push a `docker save` / `podman save` archive to Knit's image registry.",
        discussion: """
            For machines without docker or podman push: reads an image archive (docker-archive, as \
            `docker save` and `podman save` write it, or an OCI layout tar from `podman save --format \
            oci-archive`; compressed is fine) from stdin or -i FILE and pushes its image to the registry \
            behind this profile's server, with the profile's token and CA. Layers stream straight through; \
            nothing is unpacked to disk. Prints {"image":"HOST:PORT/name:tag","digest":"sha256:…"}; use \
            that image name in a plan.

              podman save localhost/train:v1 | knit image load
              knit image load -i train.tar -t train:v2
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(
        name: [.customShort("i"), .customLong("input")],
        help: ArgumentHelp("Image archive to read instead of stdin (- is stdin).", valueName: "IMAGE_TAR")
    )
    var input: String?

    @Option(
        name: [.customShort("t"), .customLong("tag")],
        help: ArgumentHelp(
            "Name in the registry (default: the archive's own tag without its registry part). With several "
                + "images in the archive, the one carrying this tag.",
            valueName: "NAME:TAG"
        )
    )
    var tag: String?

    func run() throws {
        try reportingErrors { () throws(KnitClientError) in
            let client = try global.apiClient()
            let fd: Int32
            let source: String
            if let input, input != "-" {
                fd = open(input, O_RDONLY | O_CLOEXEC)
                if fd < 0 {
                    throw KnitClientError(.io, "cannot open input file \(input): \(Errno.current)")
                }
                source = input
            } else {
                if isatty(0) == 1 {
                    throw KnitClientError(
                        .usage,
                        "stdin is a terminal: pipe in a `docker save` archive, or use -i IMAGE_TAR"
                    )
                }
                fd = 0
                source = "STDIN"
            }
            defer { if fd != 0 { close(fd) } }
            var bar: ProgressBar?
            var entry = ""
            let result = try client.loadImage(fileDescriptor: fd, source: source, name: tag) { progress in
                guard Console.stderrIsTerminal else { return }
                if progress.entry != entry {
                    bar?.finish()
                    entry = progress.entry
                    bar = ProgressBar(label: "layer " + String(progress.entry.prefix(19)))
                }
                bar?.update(progress.transfer)
            }
            bar?.finish()
            Console.output(
                "{\n    \"image\": \(JSONValue.quoted(result.image)),\n    \"digest\": \(JSONValue.quoted(result.digest))\n}\n"
            )
        }
    }
}
