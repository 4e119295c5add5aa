internal import KnitSystem

/// ``runCommand(_:environment:directory:output:timeout:)`` with its failures told as the executor's errors.
func runChild(
    _ argv: [String],
    environment: [String],
    directory: String,
    output: ChildOutput = .capture,
    timeout: Duration
) async throws(ExecutorError) -> CommandOutput {
    do {
        return try await runCommand(
            argv,
            environment: environment,
            directory: directory,
            output: output,
            timeout: timeout
        )
    } catch {
        switch error {
        case .failed(let message): throw ExecutorError(.commandFailed, message)
        case .timedOut(let message): throw ExecutorError(.timedOut, message)
        }
    }
}
