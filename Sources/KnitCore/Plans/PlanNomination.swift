// Nomination ("Data D can be assigned to input I") and projection ("which Runs does a new nomination
// create"), as pure rules; the store keeps the nominations and the combinations already run.

/// Whether a Data may be assigned to `input`.
///
/// All of: the Data's producing Run is `done`; every user tag of the input is among `dataTags` (which may
/// carry more, and may include system tags, which are ignored here); a required `knit#id` equals `knitId`;
/// a required `knit#timestamp` is the same instant as `timestamp`. Knitfab v1.6.1 skips the `done` check
/// for inputs that require only system tags (quirk 15); Knit requires it for every input, so a Run never
/// starts on Data that is still being written or that failed.
public func isAssignable(
    dataTags: TagSet,
    knitId: String,
    timestamp: KnitTime?,
    producerDone: Bool,
    to input: PlanInput
) -> Bool {
    guard producerDone else { return false }
    if let required = input.knitId, required != knitId { return false }
    if let required = input.timestamp, required != timestamp { return false }
    return dataTags.isSuperset(of: input.userTags)
}

/// Building Runs from nominations.
public enum Projection {
    /// The input combinations one new nomination creates: the trigger Data on its input, crossed with
    /// every Data already known on each other input (`known[triggerInput]` is ignored). Each result lists
    /// one knitId per input, in input order. Empty when some other input has no Data yet.
    ///
    /// Because the trigger is always new and the others are already processed, handling nominations one at
    /// a time this way produces every combination exactly once; the store still skips combinations an
    /// existing Run (including a deleted Run's tombstone) already has.
    public static func combinations(triggerInput: Int, triggerKnitId: String, known: [[String]]) -> [[String]] {
        precondition(known.indices.contains(triggerInput), "trigger input \(triggerInput) out of range")
        var result: [[String]] = [[]]
        for (index, candidates) in known.enumerated() {
            let choices = index == triggerInput ? [triggerKnitId] : candidates
            if choices.isEmpty { return [] }
            var next: [[String]] = []
            next.reserveCapacity(result.count * choices.count)
            for prefix in result {
                for choice in choices { next.append(prefix + [choice]) }
            }
            result = next
        }
        return result
    }

    /// Bytes naming one combination of `planId` with one knitId per input (in input order), for a store
    /// index of combinations already run. Length-prefixed, so different combinations never collide.
    public static func combinationKey(planId: String, knitIds: [String]) -> [UInt8] {
        var bytes: [UInt8] = []
        for part in [planId] + knitIds {
            bytes.append(contentsOf: String(part.utf8.count).utf8)
            bytes.append(UInt8(ascii: ":"))
            bytes.append(contentsOf: part.utf8)
        }
        return bytes
    }
}
