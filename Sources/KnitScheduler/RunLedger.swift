public import KnitCore

extension ScheduledRun {
    /// What the Run holds of the capacity while it is in flight.
    public var demand: Capacity.Demand { Capacity.Demand(cpuMillis: cpuMillis, memoryBytes: memoryBytes) }
}

extension RunInFlight {
    /// What the Run holds of the capacity while it is in flight.
    public var demand: Capacity.Demand { Capacity.Demand(cpuMillis: cpuMillis, memoryBytes: memoryBytes) }
}
