import KnitClient
import KnitSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Pipes `dot` text into `dot -T<format>`, whose output goes straight to our stdout.
func renderWithGraphviz(_ text: String, format: String) throws(KnitClientError) {
    guard let dot = findExecutable("dot") else {
        throw KnitClientError(
            .usage,
            "--format \(format) needs graphviz ('dot' is not on PATH; install the graphviz package, "
                + "or use --format dot and render it elsewhere)"
        )
    }
    // dot may stop reading early: its exit status tells why, a SIGPIPE would only kill us.
    signal(SIGPIPE, SIG_IGN)
    let result: FilterResult
    do {
        result = try runFilter([dot, "-T" + format], input: Array(text.utf8), captureOutput: false, stderr: .inherit)
    } catch {
        throw KnitClientError(.io, "\(error)")
    }
    guard result.status.isSuccess else {
        throw KnitClientError(.io, "graphviz dot -T\(format) failed (exit status \(result.status))")
    }
    if let failure = result.inputError { throw KnitClientError(.io, "\(failure)") }
}
