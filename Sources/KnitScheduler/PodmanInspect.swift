internal import Glibc
internal import KnitSystem
internal import Synchronization

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

// What podman says about containers: `podman container inspect` and `podman ps` decoded, and turned into
// the observations the driver acts on.
extension PodmanExecutor {
    public func observe(runId: String) async throws -> ExecutorObservation {
        try await observe(runIds: [runId])[runId] ?? .notFound
    }

    /// One `podman container inspect` for all of `runIds`: a tick follows every Run in flight, and one call
    /// per container (30-100 ms each) delayed the start of new Runs behind them.
    public func observe(runIds: [String]) async throws -> [String: ExecutorObservation] {
        guard !runIds.isEmpty else { return [:] }
        for runId in runIds { try Self.checkRunId(runId) }
        let names = runIds.map(Self.containerName(runId:))
        let result = try await podman(["container", "inspect"] + names, timeout: configuration.commandTimeout)
        // podman prints the containers it found and fails for the rest ("no such container").
        guard result.status == 0 || result.stderr.contains("no such container") else {
            throw commandError("inspect", runId: runIds.count == 1 ? runIds[0] : nil, result)
        }
        let containers: [InspectedContainer]
        do {
            let printed = result.stdout.utf8.contains { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }
            containers =
                printed ? try JSONDecoder().decode([InspectedContainer].self, from: Data(result.stdout.utf8)) : []
        } catch {
            throw ExecutorError(.commandFailed, "unreadable podman inspect output: \(error)")
        }
        var seen: [String: ExecutorObservation] = [:]
        for container in containers {
            guard let runId = container.config?.labels?["knit.run"], runIds.contains(runId) else { continue }
            seen[runId] = observation(of: container, runId: runId)
        }
        for runId in runIds where seen[runId] == nil { seen[runId] = .notFound }
        return seen
    }

    private func observation(of container: InspectedContainer, runId: String) -> ExecutorObservation {
        let memoryLimit = container.hostConfig?.memory ?? 0
        switch container.state.status {
        case "created", "configured", "initialized", "unknown":
            return .starting
        case "running", "paused", "stopping":
            if memoryLimit > 0, container.state.pid > 0,
                let kills = CgroupMemory.oomKillCount(pid: container.state.pid), kills > 0
            {
                runs.withLock { $0[runId, default: RunMemory()].oomKills = kills }
            }
            return .running
        case "removing":
            return .notFound
        default:
            let memory = runs.withLock { $0[runId] } ?? RunMemory()
            let code = container.state.exitCode
            let oomKilled =
                container.state.oomKilled || access(runDirectory(runId: runId) + "/oom", F_OK) == 0
                || memory.oomKills > 0 || (code == 137 && memoryLimit > 0 && !memory.stoppedByExecutor)
            return .exited(
                code: code,
                oomKilled: oomKilled,
                message: Self.exitMessage(
                    code: code,
                    oomKilled: oomKilled,
                    memoryLimit: memoryLimit,
                    stopped: memory.stoppedByExecutor,
                    runtimeError: container.state.error ?? ""
                )
            )
        }
    }

    public func list() async throws -> [String] {
        let result = try await podman(
            ["ps", "--all", "--filter", "label=knit.executor=\(configuration.instance)", "--format", "json"],
            timeout: configuration.commandTimeout
        )
        guard result.status == 0 else { throw commandError("ps", runId: nil, result) }
        do {
            let listed = try JSONDecoder().decode([ListedContainer].self, from: Data(result.stdout.utf8))
            return Set(listed.compactMap { $0.labels?["knit.run"] }).sorted()
        } catch {
            throw ExecutorError(.commandFailed, "unreadable podman ps output: \(error)")
        }
    }

    static func exitMessage(
        code: Int32,
        oomKilled: Bool,
        memoryLimit: Int64,
        stopped: Bool,
        runtimeError: String
    ) -> String {
        var message: String
        if oomKilled {
            message = "OOMKilled: exceeded its memory limit of \(byteText(memoryLimit))"
        } else {
            switch code {
            case 0: message = "completed"
            case 137: message = stopped ? "stopped: killed (SIGKILL) after the grace period" : "killed by SIGKILL"
            case 143: message = stopped ? "stopped: terminated by SIGTERM" : "terminated by SIGTERM"
            case 129...192: message = "killed by signal \(code - 128)"
            default: message = "exited with code \(code)"
            }
        }
        if !runtimeError.isEmpty { message += " (runtime: \(runtimeError))" }
        return message
    }

    static func byteText(_ bytes: Int64) -> String {
        if bytes > 0 && bytes % (1 << 30) == 0 { return "\(bytes >> 30) GiB" }
        if bytes > 0 && bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
        return "\(bytes) bytes"
    }
}

/// The parts of `podman container inspect` the executor reads.
struct InspectedContainer: Decodable {
    struct State: Decodable {
        var status: String
        var exitCode: Int32
        var oomKilled: Bool
        var pid: Int32
        var error: String?

        enum CodingKeys: String, CodingKey {
            case status = "Status", exitCode = "ExitCode", oomKilled = "OOMKilled", pid = "Pid", error = "Error"
        }
    }

    struct HostConfig: Decodable {
        var memory: Int64?
        enum CodingKeys: String, CodingKey { case memory = "Memory" }
    }

    struct Config: Decodable {
        var labels: [String: String]?
        enum CodingKeys: String, CodingKey { case labels = "Labels" }
    }

    var state: State
    var hostConfig: HostConfig?
    var config: Config?

    enum CodingKeys: String, CodingKey {
        case state = "State", hostConfig = "HostConfig", config = "Config"
    }
}

/// The parts of `podman ps --format json` the executor reads.
struct ListedContainer: Decodable {
    var labels: [String: String]?
    enum CodingKeys: String, CodingKey { case labels = "Labels" }
}
