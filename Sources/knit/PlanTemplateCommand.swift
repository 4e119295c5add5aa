import ArgumentParser
import KnitClient
import KnitCore
import KnitSystem

#if canImport(Glibc)
    import Glibc
#endif

struct PlanTemplateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "template",
        abstract: "Print a commented plan file derived from a container image.",
        discussion: """
            Reads a `docker save` (or `podman save`) archive from stdin, or from -i FILE, and prints a plan \
            file for its image on stdout: entrypoint and args from the image's ENTRYPOINT and CMD, inputs and \
            outputs from arguments and VOLUMEs with an `in` or `out` path segment, tagged with the knitenv \
            tags and type:<name>. Compressed archives are fine; layers are skipped, not loaded.

              docker save repo/train:v1 | knit plan template > train.plan.yaml
              knit plan template -i images.tar repo/train:v1 > train.plan.yaml
              knit plan template --scratch > plan.yaml
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Write a generic template without reading an image.")
    var scratch = false

    @Option(
        name: [.customShort("i"), .customLong("input")],
        help: ArgumentHelp(
            "Image archive to read instead of stdin (- is stdin).",
            valueName: "IMAGE_TAR"
        )
    )
    var input: String?

    @Argument(
        help: ArgumentHelp(
            "The image to use when the archive holds several (one of its tags); also the name the plan uses.",
            valueName: "IMAGE:TAG"
        )
    )
    var imageTag: String?

    func validate() throws {
        if scratch && imageTag != nil { throw ValidationError("IMAGE:TAG and --scratch are exclusive") }
        if scratch && input != nil { throw ValidationError("-i/--input and --scratch are exclusive") }
    }

    func run() throws {
        try reportingErrors { () throws(KnitClientError) in
            let env = try global.knitenv()
            let template: PlanTemplate
            if scratch {
                template = PlanTemplate.scratch(env: env)
            } else if let input, input != "-" {
                let fd = open(input, O_RDONLY | O_CLOEXEC)
                if fd < 0 {
                    throw KnitClientError(.io, "cannot open input file \(input): \(Errno.current)")
                }
                defer { close(fd) }
                Console.error("[knit plan template] ...analyzing image from \"\(input)\"")
                template = try PlanTemplate.fromArchive(fileDescriptor: fd, source: input, tag: imageTag, env: env)
            } else {
                if isatty(0) == 1 {
                    throw KnitClientError(
                        .usage,
                        "stdin is a terminal: pipe in a `docker save` archive, or use -i IMAGE_TAR or --scratch"
                    )
                }
                Console.error("[knit plan template] ...analyzing image from \"STDIN\"")
                template = try PlanTemplate.fromArchive(fileDescriptor: 0, source: "STDIN", tag: imageTag, env: env)
            }
            Console.output(template.render())
            if template.inputs.isEmpty {
                Console.error(
                    "[knit plan template] the image names no path with an `in` segment (ENTRYPOINT, CMD, VOLUME): "
                        + "add at least one entry under inputs"
                )
            }
            Console.error("[knit plan template] # Plan file is generated. modify it as you like.")
        }
    }
}
