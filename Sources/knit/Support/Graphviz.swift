import KnitClient

#if canImport(Glibc)
    import Glibc
#endif

/// The first executable `dot` on PATH.
func graphvizDotPath() -> String? {
    let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") where !directory.isEmpty {
        let candidate = String(directory) + "/dot"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}

/// Pipes `dot` text into `dot -T<format>`, whose output goes straight to our stdout.
func renderWithGraphviz(_ text: String, format: String) throws(KnitClientError) {
    guard let dot = graphvizDotPath() else {
        throw KnitClientError(
            .usage,
            "--format \(format) needs graphviz ('dot' is not on PATH; install the graphviz package, "
                + "or use --format dot and render it elsewhere)"
        )
    }
    var pipeFds: [Int32] = [-1, -1]
    guard pipe(&pipeFds) == 0 else { throw KnitClientError(.io, "cannot create a pipe to graphviz") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, pipeFds[0], 0)
    posix_spawn_file_actions_addclose(&actions, pipeFds[0])
    posix_spawn_file_actions_addclose(&actions, pipeFds[1])
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup(dot), strdup("-T" + format), nil]
    defer { argv.forEach { free($0) } }
    var pid = pid_t()
    let spawned = posix_spawn(&pid, dot, &actions, nil, argv, environ)
    close(pipeFds[0])
    guard spawned == 0 else {
        close(pipeFds[1])
        throw KnitClientError(.io, "cannot start \(dot): \(String(cString: strerror(spawned)))")
    }
    signal(SIGPIPE, SIG_IGN)
    let written: Result<Void, KnitClientError> = Array(text.utf8).withUnsafeBytes { bytes in
        do { try Console.writeAll(pipeFds[1], bytes) } catch let error as KnitClientError {
            return .failure(error)
        } catch { return .failure(KnitClientError(.io, "\(error)")) }
        return .success(())
    }
    close(pipeFds[1])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    if (status & 0x7f) != 0 || (status >> 8) & 0xff != 0 {
        throw KnitClientError(.io, "graphviz dot -T\(format) failed (exit status \((status >> 8) & 0xff))")
    }
    if case .failure(let error) = written { throw error }
}
