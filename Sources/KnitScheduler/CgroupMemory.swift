internal import KnitSystem

/// Reads how many processes the kernel's OOM killer has killed inside a process's memory
/// cgroup. podman 4.3 on this kind of host never sets `State.OOMKilled` (conmon watches the
/// wrong hierarchy on a cgroup v1 "hybrid" host) and the cgroup disappears with the container,
/// so the executor samples this counter whenever it sees a limited container running.
enum CgroupMemory {
    /// The `oom_kill` counter of the memory cgroup of `pid`, or nil when it cannot be read.
    static func oomKillCount(pid: Int32) -> Int? {
        guard let membership = readTextFile("/proc/\(pid)/cgroup") else { return nil }
        var unifiedPath: Substring?
        for line in membership.split(separator: "\n") {
            // "hierarchy-id:controllers:path"; the path itself may contain ':'.
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if fields[1].split(separator: ",").contains("memory") {
                // cgroup v1 memory controller: its counter lives in memory.oom_control.
                return counter("oom_kill", in: readTextFile("/sys/fs/cgroup/memory\(fields[2])/memory.oom_control"))
            }
            if fields[0] == "0" && fields[1].isEmpty { unifiedPath = fields[2] }
        }
        guard let unifiedPath else { return nil }
        return counter("oom_kill", in: readTextFile("/sys/fs/cgroup\(unifiedPath)/memory.events"))
    }

    /// The value of a `name value` line.
    static func counter(_ name: String, in text: String?) -> Int? {
        guard let text else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2 && parts[0] == name { return Int(parts[1]) }
        }
        return nil
    }
}
