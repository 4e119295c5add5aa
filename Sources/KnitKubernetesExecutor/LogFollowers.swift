internal import Glibc
internal import KnitCore
internal import KnitKubeClient
internal import KnitKubernetes
internal import Synchronization

/// One thread per running Run that follows its pod's log (`follow=true`) and appends it to the Run's log file
/// as the bytes arrive, so `knit run show --log -f` shows them while the Run runs.
///
/// The kubelet answers a pod's log with the same bytes every time, from the first, so a follower that begins
/// where a file already holds some (written by an instance of the executor before a restart, or by a follower
/// that failed) skips that many bytes: nothing is written twice and nothing is lost.
final class LogFollowers: Sendable {
    private final class Follower: Sendable {
        enum Status { case following, ended, failed }
        let podUID: String
        let status = Mutex(Status.following)
        let cancelled = Atomic(false)

        init(podUID: String) { self.podUID = podUID }
    }

    private let api: KubeAPI
    private let podsPath: String
    private let followers = Mutex<[String: Follower]>([:])

    init(api: KubeAPI, podsPath: String) {
        self.api = api
        self.podsPath = podsPath
    }

    /// Starts following the pod's log unless a follower of this pod is at work or has read it to its end.
    func follow(runId: String, pod: JSONValue, logPath: String) {
        guard let uid = KubernetesExecutor.uid(of: pod) else { return }
        let name = KubernetesExecutor.name(of: pod)
        let follower: Follower? = followers.withLock { followers in
            if let current = followers[runId], current.podUID == uid,
                current.status.withLock({ $0 }) != .failed
            {
                return nil
            }
            followers[runId]?.cancelled.store(true, ordering: .relaxed)
            let follower = Follower(podUID: uid)
            followers[runId] = follower
            return follower
        }
        guard let follower else { return }
        startThread { [api, podsPath] in
            let ended = Self.append(
                api: api,
                path: podsPath + "/\(name)/log?container=\(KubernetesObjects.containerName)&follow=true",
                to: logPath,
                isCancelled: { follower.cancelled.load(ordering: .relaxed) }
            )
            follower.status.withLock { $0 = ended ? .ended : .failed }
        }
    }

    /// Once the pod's container has terminated: waits for its follower to read the log to the end (the kubelet
    /// ends a followed log when it next looks at the container, within about 5 s of its exit), or reads what
    /// the file lacks at once when there was no follower, it failed, or it does not end within
    /// ``KubernetesExecutor/logDrainWait``. The follower is not cut short even for a pod being deleted: the
    /// kubelet removes a deleted pod's container soon after it ends, and then no second read can have the log.
    func complete(runId: String, pod: JSONValue, logPath: String) async {
        let uid = KubernetesExecutor.uid(of: pod)
        let follower = followers.withLock { $0[runId] }.flatMap { $0.podUID == uid ? $0 : nil }
        if let follower {
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: KubernetesExecutor.logDrainWait)
            while follower.status.withLock({ $0 }) == .following && clock.now < deadline {
                try? await Task.sleep(for: .milliseconds(10))
            }
            if follower.status.withLock({ $0 }) == .ended { return }
            follower.cancelled.store(true, ordering: .relaxed)
            // Its thread writes no more once it sees the flag (within about a second).
            while follower.status.withLock({ $0 }) == .following {
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        _ = Self.append(
            api: api,
            path: podsPath + "/\(KubernetesExecutor.name(of: pod))/log?container=\(KubernetesObjects.containerName)",
            to: logPath,
            isCancelled: nil
        )
    }

    /// Ends the Run's follower (cleanup).
    func stop(runId: String) {
        followers.withLock { $0.removeValue(forKey: runId) }?.cancelled.store(true, ordering: .relaxed)
    }

    func stopAll() {
        followers.withLock { followers in
            for follower in followers.values { follower.cancelled.store(true, ordering: .relaxed) }
            followers.removeAll()
        }
    }

    /// Parts of what the kubelet writes into a log answer whose `200` has gone out when reading the log fails,
    /// e.g. once the container of a deleted pod is removed: `rpc error: code = NotFound desc = …`, `Unable to
    /// retrieve container logs for containerd://…`, `failed to try resolving symlinks in path …`. Such text is
    /// not the container's output and never ends in a newline: it is the whole unfinished tail of the answer.
    static let kubeletErrors = [
        "rpc error: code = ", "retrieve container logs for ", "failed to try resolving symlinks in path ",
    ].map { Array($0.utf8) }

    /// Appends the log at `path` to the file at `logPath`, past the bytes the file already holds. True when
    /// the server ended the log and all of it is in the file.
    ///
    /// A line goes to the file once its newline has arrived (or the log has ended): an unfinished line may yet
    /// turn out to end in the kubelet's error text, which is dropped (and the log is not whole). Bytes not
    /// written are read again by whoever continues the file.
    private static func append(
        api: KubeAPI,
        path: String,
        to logPath: String,
        isCancelled: (@Sendable () -> Bool)?
    ) -> Bool {
        let fd = open(logPath, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { return false }
        var skip = Int(status.st_size)
        var unfinished: [UInt8] = []
        struct WriteFailed: Error {}
        func writeAll(_ bytes: ArraySlice<UInt8>) throws {
            var offset = bytes.startIndex
            while offset < bytes.endIndex {
                let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
                guard written > 0 else { throw WriteFailed() }
                offset += written
            }
        }
        do {
            try api.stream(path, isCancelled: isCancelled) { chunk in
                // A cancelled follower writes nothing more: another may append to the same file next.
                if isCancelled?() == true { throw WriteFailed() }
                let fresh = min(skip, chunk.count)
                skip -= fresh
                unfinished.append(contentsOf: chunk[fresh...])
                guard let newline = unfinished.lastIndex(of: UInt8(ascii: "\n")) else { return }
                try writeAll(unfinished[...newline])
                unfinished.removeSubrange(...newline)
            }
        } catch {
            return false
        }
        if kubeletErrors.contains(where: { unfinished.firstRange(of: $0) != nil }) { return false }
        do { try writeAll(unfinished[...]) } catch { return false }
        return true
    }
}
