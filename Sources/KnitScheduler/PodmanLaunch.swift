internal import Glibc
internal import KnitCore
internal import KnitSystem

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

// How a Run becomes a `podman run`: the checks a launch must pass and the arguments it turns into.
extension PodmanExecutor {
    /// Capabilities a Run's container keeps: KnitCore's `RunConfinement.keptCapabilities`, shared with
    /// every executor.
    public static var keptCapabilities: [String] { RunConfinement.keptCapabilities }

    /// Capabilities of podman's defaults here (docker's long list: CapEff a80425fb) that a Run never gets:
    /// no device nodes (MKNOD), no file capabilities or s-bits kept on writes (SETFCAP, FSETID), no
    /// capability games (SETPCAP), no chroot, no audit writes, no raw sockets.
    public static let droppedCapabilities = [
        "MKNOD", "SETFCAP", "SETPCAP", "SYS_CHROOT", "AUDIT_WRITE", "NET_RAW", "FSETID",
    ]

    /// Arguments that confine every Run's container: every capability dropped and only the kept ones added
    /// back (so whatever defaults a podman version or containers.conf brings, a Run has exactly those;
    /// CapEff 4eb), and no privilege gained through setuid binaries or file capabilities
    /// (`no-new-privileges`).
    static let confinement =
        ["--cap-drop", "ALL"] + keptCapabilities.flatMap { ["--cap-add", $0] }
        + ["--security-opt", "no-new-privileges"]

    /// The arguments of `podman run` for `launch`: named and labelled after the Run, never pulling, on
    /// ``Configuration/network``, confined, its mounts `nosuid,nodev`, its limits and environment, the
    /// entrypoint in JSON form, then the image and its args.
    func runArguments(for launch: RunLaunch) throws -> [String] {
        let name = Self.containerName(runId: launch.runId)
        var arguments = [
            "run", "--detach", "--name", name,
            "--label", "knit.run=\(launch.runId)", "--label", "knit.executor=\(configuration.instance)",
            "--pull=never", "--network", configuration.network,
            "--log-driver", launch.logPath == nil ? "none" : "passthrough",
        ]
        arguments += Self.confinement
        // nosuid,nodev: a setuid binary or a device node in a Data directory means nothing inside the container
        // (the OutputSanitizer removes what a Run leaves behind, after it ends).
        for mount in launch.inputs {
            arguments += ["--volume", "\(mount.hostPath):\(mount.containerPath):ro,nosuid,nodev"]
        }
        for mount in launch.outputs {
            arguments += ["--volume", "\(mount.hostPath):\(mount.containerPath):rw,nosuid,nodev"]
        }
        if let millis = launch.cpuMillis {
            arguments += ["--cpus", Self.cpuText(millis: millis)]
        }
        if let bytes = launch.memoryBytes {
            // Equal limits mean "no swap at all"; podman's default would allow 2× the limit.
            arguments += ["--memory", "\(bytes)", "--memory-swap", "\(bytes)"]
        }
        for (key, value) in launch.environment.sorted(by: { $0.key < $1.key }) {
            arguments += ["--env", "\(key)=\(value)"]
        }
        if let entrypoint = launch.entrypoint, !entrypoint.isEmpty {
            // The JSON form keeps each element one argv entry; a plain string would be split.
            let json = String(decoding: try JSONEncoder().encode(entrypoint), as: UTF8.self)
            arguments += ["--entrypoint", json]
        }
        arguments.append(launch.image)
        arguments += launch.args ?? []
        return arguments
    }

    /// Run ids become container names and directory names: nothing but `[A-Za-z0-9_.-]`, not
    /// starting with a dot.
    static func checkRunId(_ id: String) throws {
        let idIsSafe =
            !id.isEmpty && id.count <= 200 && !id.hasPrefix(".")
            && id.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
            }
        guard idIsSafe else {
            throw ExecutorError(.invalidLaunch, "run id \"\(id)\" cannot name a container (use [A-Za-z0-9_.-])")
        }
    }

    static func validate(_ launch: RunLaunch) throws {
        let id = launch.runId
        try checkRunId(id)
        guard !launch.image.isEmpty, !launch.image.hasPrefix("-") else {
            throw ExecutorError(.invalidLaunch, "run \(id): image name \"\(launch.image)\" is not usable")
        }
        for mount in launch.inputs + launch.outputs {
            // `--volume` separates its fields with ':' and options with ','.
            guard !mount.hostPath.contains(":"), !mount.containerPath.contains(":"),
                !mount.hostPath.contains(","), !mount.containerPath.contains(","),
                mount.hostPath.hasPrefix("/"), mount.containerPath.hasPrefix("/")
            else {
                throw ExecutorError(
                    .invalidLaunch,
                    "run \(id): mount \(mount.hostPath) → \(mount.containerPath) needs absolute paths without ':' or ','"
                )
            }
        }
        for mount in launch.inputs {
            var info = stat()
            guard stat(mount.hostPath, &info) == 0 else {
                throw ExecutorError(
                    .invalidLaunch,
                    "run \(id): input \(mount.containerPath): \(mount.hostPath): \(Errno.current)"
                )
            }
        }
        for mount in launch.outputs {
            var info = stat()
            guard stat(mount.hostPath, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                throw ExecutorError(
                    .invalidLaunch,
                    "run \(id): output \(mount.containerPath): \(mount.hostPath) is not a directory"
                )
            }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: mount.hostPath)) ?? ["?"]
            guard entries.isEmpty else {
                throw ExecutorError(
                    .invalidLaunch,
                    "run \(id): output \(mount.containerPath): \(mount.hostPath) is not empty"
                )
            }
        }
        for key in launch.environment.keys where key.isEmpty || key.contains("=") || key.contains("\0") {
            throw ExecutorError(.invalidLaunch, "run \(id): environment variable name \"\(key)\" is not usable")
        }
        if let millis = launch.cpuMillis, millis <= 0 {
            throw ExecutorError(.invalidLaunch, "run \(id): cpu limit must be positive, got \(millis)m")
        }
        // podman refuses less than 6 MiB.
        if let bytes = launch.memoryBytes, bytes < 6 << 20 {
            throw ExecutorError(.invalidLaunch, "run \(id): memory limit must be at least 6 MiB, got \(bytes) bytes")
        }
    }

    /// `--cpus` text: 1500 → "1.5", 250 → "0.25", 2000 → "2".
    static func cpuText(millis: Int) -> String {
        let whole = millis / 1000
        var fraction = String(millis % 1000)
        guard fraction != "0" else { return String(whole) }
        while fraction.count < 3 { fraction = "0" + fraction }
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(whole).\(fraction)"
    }
}
