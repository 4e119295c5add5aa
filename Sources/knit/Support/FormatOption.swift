import ArgumentParser
import KnitClient

/// `--format` of `knit data push` and `knit data pull -x`.
enum FormatOption {
    static func help(_ what: String) -> ArgumentHelp {
        ArgumentHelp(
            "Wire format \(what): tar, tar+zstd or tar+gzip. auto: the server's first (Knit's: tar+zstd).",
            valueName: "FORMAT"
        )
    }

    static func parse(_ value: String) throws -> FormatChoice {
        guard let choice = FormatChoice(rawValue: value) else {
            throw ValidationError("--format must be auto, tar, tar+zstd or tar+gzip, not '\(value)'")
        }
        return choice
    }
}
