internal import Glibc

/// The budget of cpu and memory the driver may hand to Runs at once. A Run holds its plan
/// resources from `starting` until it is finished. A Run without a limit (unset, or a value the store
/// could not read) is never free: it holds ``unlimitedDemand`` of that resource, the plan defaults
/// (1 cpu, 1 GiB), since it may well use that much and more.
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

        /// A Run's demand from its plan limits; a missing or non-positive limit counts as
        /// ``Capacity/unlimitedDemand``'s share, never as nothing.
        public init(cpuMillis: Int?, memoryBytes: Int64?) {
            self.cpuMillis = cpuMillis.flatMap { $0 > 0 ? $0 : nil } ?? Capacity.unlimitedDemand.cpuMillis
            self.memoryBytes = memoryBytes.flatMap { $0 > 0 ? $0 : nil } ?? Capacity.unlimitedDemand.memoryBytes
        }

        public static func + (lhs: Demand, rhs: Demand) -> Demand {
            Demand(cpuMillis: lhs.cpuMillis + rhs.cpuMillis, memoryBytes: lhs.memoryBytes + rhs.memoryBytes)
        }
    }

    public var cpuMillis: Int
    public var memoryBytes: Int64

    /// What a Run without a cpu or memory limit holds of each: the plan defaults, 1 cpu and 1 GiB.
    public static let unlimitedDemand = Demand(cpuMillis: 1000, memoryBytes: 1 << 30)

    public init(cpuMillis: Int, memoryBytes: Int64) {
        precondition(cpuMillis > 0 && memoryBytes > 0, "a capacity must be positive")
        self.cpuMillis = cpuMillis
        self.memoryBytes = memoryBytes
    }

    /// No budget at all, for an executor whose runtime admits Runs itself (a cluster's scheduler keeps pods
    /// that do not fit Pending). Large enough that no sum of Runs reaches it, small enough that sums never
    /// overflow.
    public static let unbounded = Capacity(cpuMillis: Int(Int32.max), memoryBytes: Int64(1) << 60)

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
