internal import Glibc

/// The budget of cpu and memory the driver may hand to Runs at once. A Run holds its plan
/// resources from `starting` until it is finished; a Run without a limit holds nothing of that
/// resource (it is capped only by the machine).
///
/// Admission is strict FIFO: the oldest startable Run that does not fit blocks the ones behind it,
/// even smaller ones, so a big Run is never starved by a stream of small ones. A Run larger than
/// the whole budget would then block forever, so it starts when nothing else holds anything
/// (alone, as close to fitting as this machine gets).
public struct Capacity: Sendable, Equatable {
    /// An amount of the two resources.
    public struct Demand: Sendable, Equatable {
        public var cpuMillis: Int
        public var memoryBytes: Int64

        public init(cpuMillis: Int, memoryBytes: Int64) {
            self.cpuMillis = cpuMillis
            self.memoryBytes = memoryBytes
        }

        public static let zero = Demand(cpuMillis: 0, memoryBytes: 0)

        public static func + (lhs: Demand, rhs: Demand) -> Demand {
            Demand(cpuMillis: lhs.cpuMillis + rhs.cpuMillis, memoryBytes: lhs.memoryBytes + rhs.memoryBytes)
        }
    }

    public var cpuMillis: Int
    public var memoryBytes: Int64

    public init(cpuMillis: Int, memoryBytes: Int64) {
        precondition(cpuMillis > 0 && memoryBytes > 0, "a capacity must be positive")
        self.cpuMillis = cpuMillis
        self.memoryBytes = memoryBytes
    }

    /// All online cores and all physical memory of this machine.
    public static func machine() -> Capacity {
        let cores = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let pages = max(1, sysconf(Int32(_SC_PHYS_PAGES)))
        let pageSize = max(1, sysconf(Int32(_SC_PAGESIZE)))
        return Capacity(cpuMillis: cores * 1000, memoryBytes: Int64(pages) * Int64(pageSize))
    }

    /// Whether `demand` may start while `held` is in use.
    public func admits(_ demand: Demand, holding held: Demand) -> Bool {
        if held == .zero { return true }
        let total = held + demand
        return total.cpuMillis <= cpuMillis && total.memoryBytes <= memoryBytes
    }
}
