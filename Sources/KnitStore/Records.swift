public import KnitCore

// The LMDB schema's values. Only this module reads or writes them. Data and Run records, read on
// every query, use the binary form of RecordCodec.swift; the rest are compact JSON, so that optional
// fields can be added without a migration.

/// `data`: knitId → the Data's stored facts. System tags are derived, never stored.
struct DataRecord: Sendable {
    var knitId: String
    var runId: String
    var outputPath: String
    /// Sorted and unique (as `TagSet` keeps them).
    var userTags: [Tag]
    var timestampMs: Int64?
    var sizeBytes: Int64?
    var creator: String
    /// A copy of what the Data's detail shows of its producing Run, so a query reads one record per Data
    /// instead of two random B-tree lookups. Nil only in a record of format 1, before it is resolved
    /// against the Run (``KnitStore/dataRecord(_:_:)`` does that).
    var producer: ProducerSnapshot?
    /// Whether the Data is its Run's log rather than an output.
    var isLog = false
    /// The tags of the output (or log) point of the plan that made it, as its upstream shows them; empty
    /// for uploads.
    var mountpointTags: [Tag] = []
}

/// The producing Run's fields a Data detail needs. Kept equal to the Run's by ``KnitStore/putRun(_:_:)``,
/// the one way a Run record is written.
struct ProducerSnapshot: Sendable, Equatable {
    var status: RunStatus
    var updatedAtMs: Int64
    var planId: String
    var exit: RunExitJSON?
}

/// `runs`: runId → the Run's state.
struct RunRecord: Sendable {
    var runId: String
    var planId: String
    var status: RunStatus
    var updatedAtMs: Int64
    var exit: RunExitJSON?
    /// Every Data the Run makes: its outputs in plan order, then its log.
    var outputs: [String]
    var creator: String
    /// One per plan input, in plan order: the input's mountpoint and the Data assigned to it.
    var assignments: [RunAssignmentRecord] = []
    /// The log Data (also the last of `outputs`), when the plan keeps a log.
    var logKnitId: String? = nil
    /// Why a `starting` Run's worker cannot start yet, as the executor said (a pod no node can take); nil
    /// once the Run changes status (``KnitStore/putRun(_:_:)`` clears it).
    var waitingFor: String? = nil

    var snapshot: ProducerSnapshot {
        ProducerSnapshot(status: status, updatedAtMs: updatedAtMs, planId: planId, exit: exit)
    }
}

/// A Run's input: the mountpoint (path and its tags, kept so a Run reads without its plan) and the Data.
struct RunAssignmentRecord: Sendable, Equatable {
    var path: String
    var tags: [Tag]
    var knitId: String
}

/// `plans`: planId → the Plan. Pseudo plans have `pseudoName` and no image.
///
/// An image plan also keeps its normalized spec (``Plan/spec``, whose `resources` are the plan's exact
/// resources: an unset `cpu` stays unset) with who registered it and when. `image`, `entrypoint`, `args`
/// and `annotations` repeat the spec's, so the summary embedded in Data and Run details needs no
/// re-validation.
struct PlanRecord: Codable, Sendable {
    var planId: String
    var pseudoName: String?
    var image: String?
    var entrypoint: [String]?
    var args: [String]?
    var annotations: [String]?
    var spec: PlanSpecJSON?
    var creator: String?
    var createdAtMs: Int64?

    var summary: PlanSummaryJSON {
        PlanSummaryJSON(
            planId: planId,
            image: image,
            name: pseudoName,
            entrypoint: entrypoint,
            args: args,
            annotations: annotations
        )
    }
}

/// `users`: name → the user.
struct UserRecord: Codable, Sendable {
    var name: String
    var role: Role
    var createdAtMs: Int64
    /// Set while the user is disabled: their tokens are kept but refused.
    var disabled: Bool?
    /// Set when the user was deleted: their tokens are gone and the name stays reserved, so nobody new
    /// inherits what they own.
    var deletedAtMs: Int64?
}

extension UserRecord {
    /// Decodes the JSON of a user record without Foundation: every request checks its token, and
    /// JSONDecoder was two thirds of that check. Reads only the compact form ``KnitStore/encode(_:)`` writes
    /// (no spaces, no escapes, integers, each field once, no field it does not know); for anything else it
    /// returns nil and the caller asks JSONDecoder, which stays the judge.
    init?(json bytes: UnsafeRawBufferPointer) {
        var scanner = CompactJSONScanner(bytes: bytes)
        var name: String?
        var role: Role?
        var createdAtMs: Int64?
        var disabled: Bool?
        var deletedAtMs: Int64?
        var seen = Set<String>()
        guard scanner.take(UInt8(ascii: "{")) else { return nil }
        if !scanner.take(UInt8(ascii: "}")) {
            repeat {
                guard let key = scanner.plainString(), seen.insert(key).inserted, scanner.take(UInt8(ascii: ":"))
                else { return nil }
                switch key {
                case "name": name = scanner.plainString()
                case "role": role = scanner.plainString().flatMap(Role.init(rawValue:))
                case "createdAtMs": createdAtMs = scanner.integer()
                case "disabled":
                    if scanner.take("true") {
                        disabled = true
                    } else if scanner.take("false") {
                        disabled = false
                    } else if !scanner.take("null") {
                        return nil
                    }
                case "deletedAtMs":
                    if !scanner.take("null") {
                        guard let instant = scanner.integer() else { return nil }
                        deletedAtMs = instant
                    }
                default: return nil
                }
            } while scanner.take(UInt8(ascii: ","))
            guard scanner.take(UInt8(ascii: "}")) else { return nil }
        }
        guard scanner.atEnd, let name, let role, let createdAtMs else { return nil }
        self.init(name: name, role: role, createdAtMs: createdAtMs, disabled: disabled, deletedAtMs: deletedAtMs)
    }
}

/// Reads compact JSON as Knit's own encoders write it; every method returns nil (or false) at the first
/// byte it does not expect, leaving the decision to a full decoder.
private struct CompactJSONScanner {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    var atEnd: Bool { position == bytes.count }

    mutating func take(_ byte: UInt8) -> Bool {
        guard position < bytes.count, bytes[position] == byte else { return false }
        position += 1
        return true
    }

    mutating func take(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard bytes.count - position >= count else { return false }
        for index in 0..<count where bytes[position + index] != word.utf8Start[index] { return false }
        position += count
        return true
    }

    /// A string without escapes or control characters.
    mutating func plainString() -> String? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = position
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                position += 1
                return String(validating: UnsafeRawBufferPointer(rebasing: bytes[start..<position - 1]), as: UTF8.self)
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
            position += 1
        }
        return nil
    }

    /// An integer as JSON writes it (no leading zeros, no fraction or exponent) that fits an Int64.
    mutating func integer() -> Int64? {
        let negative = take(UInt8(ascii: "-"))
        let start = position
        var value: Int64 = 0
        while position < bytes.count, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") {
            let digit = Int64(bytes[position] - UInt8(ascii: "0"))
            // Accumulated negatively, so Int64.min fits.
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = times10.subtractingReportingOverflow(digit)
            guard !overflow1, !overflow2 else { return nil }
            value = next
            position += 1
        }
        let digits = position - start
        guard digits > 0, digits == 1 || bytes[start] != UInt8(ascii: "0") else { return nil }
        if position < bytes.count {
            switch bytes[position] {
            case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): return nil
            default: break
            }
        }
        if negative { return value }
        guard value != Int64.min else { return nil }
        return -value
    }
}

/// `tokens`: SHA-256 of a token → whom it belongs to, as lines (read on every request, so not JSON, whose
/// decoding would cost a third of a token check): `user`, `createdAtMs`, `expiresAtMs` (empty: never). Tokens
/// issued before expiry existed hold only the user name. More fields may follow as further lines.
struct TokenRecord: Sendable, Equatable {
    var user: String
    var createdAtMs: Int64?
    var expiresAtMs: Int64?

    var bytes: [UInt8] {
        Array("\(user)\n\(createdAtMs.map(String.init) ?? "")\n\(expiresAtMs.map(String.init) ?? "")".utf8)
    }

    /// Nil when a number is malformed.
    init?(decoding bytes: [UInt8]) {
        let fields = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        func number(_ index: Int) -> Int64?? {
            guard index < fields.count, !fields[index].isEmpty else { return .some(nil) }
            return Int64(String(decoding: fields[index], as: UTF8.self)).map { .some($0) }
        }
        guard let created = number(1), let expires = number(2) else { return nil }
        self.init(user: String(decoding: fields[0], as: UTF8.self), createdAtMs: created, expiresAtMs: expires)
    }

    init(user: String, createdAtMs: Int64? = nil, expiresAtMs: Int64? = nil) {
        self.user = user
        self.createdAtMs = createdAtMs
        self.expiresAtMs = expiresAtMs
    }
}

/// An authenticated user.
public struct StoreUser: Sendable, Hashable, Codable {
    public var name: String
    public var role: Role
    public init(name: String, role: Role) {
        self.name = name
        self.role = role
    }
}

/// An upload in progress: write the content under ``stagingPath``, then finish or abandon it.
public struct UploadTicket: Sendable, Hashable {
    public let knitId: String
    public let runId: String
    public let stagingPath: String
    /// Bytes of content the uploader's quota leaves for this Data when it began (nil: no limit). Uploads in
    /// parallel each see the same figure; publishing checks again against what the others committed.
    public let quotaBytesLeft: Int64?
    /// The uploader's bytes quota when it began, beside ``quotaBytesLeft``, for the refusal's message.
    public let quotaBytesLimit: Int64?
    public init(
        knitId: String,
        runId: String,
        stagingPath: String,
        quotaBytesLeft: Int64? = nil,
        quotaBytesLimit: Int64? = nil
    ) {
        self.knitId = knitId
        self.runId = runId
        self.stagingPath = stagingPath
        self.quotaBytesLeft = quotaBytesLeft
        self.quotaBytesLimit = quotaBytesLimit
    }
}

/// What ``KnitStore/recoverAtStartup()`` cleaned up.
public struct RecoveryReport: Sendable, Equatable {
    /// Uploads whose knitd died mid-way; their Run and Data records are gone now.
    public var abandonedUploads: Int
    /// Entries removed from `staging/`.
    public var removedStagingEntries: Int
    /// Entries of `staging/` that could not be removed (logged; tried again at the next start).
    public var unremovableStagingEntries: Int
    public init(abandonedUploads: Int = 0, removedStagingEntries: Int = 0, unremovableStagingEntries: Int = 0) {
        self.abandonedUploads = abandonedUploads
        self.removedStagingEntries = removedStagingEntries
        self.unremovableStagingEntries = unremovableStagingEntries
    }
}
