/// A Kubernetes resource quantity (`1`, `0.5`, `500m`, `1Gi`, `2e3`), kept as written and also read as a
/// number so the local executor can add up what its Runs ask for.
///
/// Grammar (Kubernetes' `resource.Quantity`): an optional sign, digits with an optional fraction, then
/// either a binary suffix (`Ki` … `Ei`), a decimal suffix (`m`, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal
/// exponent (`e3`, `E-2`). Unlike Kubernetes the text is not re-rendered in canonical form (`1000m` stays
/// `1000m`); negative quantities are refused because they mean nothing as limits.
public struct ResourceQuantity: Sendable, Hashable, CustomStringConvertible {
    public let text: String
    /// The decimal digits without the point, as a number: `1.25` → 125.
    private let mantissa: Int64
    /// Power of ten applied to `mantissa`: `1.25` → -2, `3k` → 3, `5m` → -3.
    private let exponent: Int
    /// Power of 1024 applied: `Gi` → 3.
    private let binaryPower: Int

    /// Parses `text` (white space around it is dropped).
    /// - Throws: a message saying what is wrong, for ``PlanValidationError``.
    public init(parsing raw: String) throws(QuantityError) {
        let text = Tag.trimmed(Substring(raw))
        var bytes = Array(text.utf8)[...]
        guard !bytes.isEmpty else { throw QuantityError(text: raw, reason: "is empty") }
        if bytes.first == UInt8(ascii: "+") { bytes = bytes.dropFirst() }
        if bytes.first == UInt8(ascii: "-") { throw QuantityError(text: raw, reason: "must not be negative") }
        let (mantissa, fractionDigits, rest) = try Self.number(bytes, raw: raw)
        var exponent = -fractionDigits
        var binaryPower = 0
        switch String(decoding: rest, as: UTF8.self) {
        case "": break
        case "m": exponent -= 3
        case "k": exponent += 3
        case "M": exponent += 6
        case "G": exponent += 9
        case "T": exponent += 12
        case "P": exponent += 15
        case "E": exponent += 18
        case "Ki": binaryPower = 1
        case "Mi": binaryPower = 2
        case "Gi": binaryPower = 3
        case "Ti": binaryPower = 4
        case "Pi": binaryPower = 5
        case "Ei": binaryPower = 6
        default:
            guard let first = rest.first, first == UInt8(ascii: "e") || first == UInt8(ascii: "E") else {
                throw QuantityError(text: raw, reason: "has an unknown suffix (use m, k, M, G, Ki, Mi, Gi, … or e<N>)")
            }
            var digits = rest.dropFirst()
            var negative = false
            if let sign = digits.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
                negative = sign == UInt8(ascii: "-")
                digits = digits.dropFirst()
            }
            guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy(Self.isDigit) else {
                throw QuantityError(text: raw, reason: "has a malformed exponent")
            }
            let value = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
            exponent += negative ? -value : value
        }
        self.text = text
        self.mantissa = mantissa
        self.exponent = exponent
        self.binaryPower = binaryPower
    }

    public var description: String { text }

    /// The quantity times `unit`, rounded up (as Kubernetes' `MilliValue` rounds), or nil if it does not
    /// fit in 63 bits. CPU in millicores is `scaled(by: 1000)`, memory in bytes `scaled(by: 1)`.
    public func scaled(by unit: Int64) -> Int64? {
        var numerator = mantissa
        for _ in 0..<binaryPower {
            guard let next = Self.multiply(numerator, 1024) else { return nil }
            numerator = next
        }
        guard let withUnit = Self.multiply(numerator, unit) else { return nil }
        numerator = withUnit
        if exponent >= 0 {
            for _ in 0..<exponent {
                guard let next = Self.multiply(numerator, 10) else { return nil }
                numerator = next
            }
            return numerator
        }
        // Dividing by more than 10^18 leaves less than one for any Int64: the round-up makes it 1.
        guard -exponent <= 18 else { return numerator == 0 ? 0 : 1 }
        var divisor: Int64 = 1
        for _ in 0..<(-exponent) { divisor *= 10 }
        let (quotient, remainder) = numerator.quotientAndRemainder(dividingBy: divisor)
        return remainder == 0 ? quotient : quotient + 1
    }

    public static func == (lhs: ResourceQuantity, rhs: ResourceQuantity) -> Bool { lhs.text == rhs.text }
    public func hash(into hasher: inout Hasher) { hasher.combine(text) }

    private static func multiply(_ a: Int64, _ b: Int64) -> Int64? {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? nil : product
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// `digits[.digits]` at the start of `bytes`: the digits as one number, how many were after the point,
    /// and what follows.
    private static func number(
        _ bytes: ArraySlice<UInt8>,
        raw: String
    ) throws(QuantityError) -> (Int64, Int, ArraySlice<UInt8>) {
        var rest = bytes
        var value: Int64 = 0
        var digits = 0
        var fractionDigits = 0
        var seenPoint = false
        while let byte = rest.first {
            if isDigit(byte) {
                // Digits beyond 18 significant ones would overflow; quantities that precise are not limits.
                if value > 0 || byte != UInt8(ascii: "0") {
                    guard let shifted = multiply(value, 10) else {
                        throw QuantityError(text: raw, reason: "has too many digits")
                    }
                    value = shifted + Int64(byte - UInt8(ascii: "0"))
                }
                digits += 1
                if seenPoint { fractionDigits += 1 }
            } else if byte == UInt8(ascii: "."), !seenPoint {
                seenPoint = true
            } else {
                break
            }
            rest = rest.dropFirst()
        }
        guard digits > 0 else { throw QuantityError(text: raw, reason: "is not a number (e.g. 1, 0.5, 500m, 1Gi)") }
        return (value, fractionDigits, rest)
    }
}

/// Why a quantity was refused.
public struct QuantityError: Error, Sendable, Equatable, CustomStringConvertible {
    public let text: String
    public let reason: String
    public var description: String { "\(quoted(text)) \(reason)" }
}

extension Plan {
    /// What a plan gets for the resources it does not name, at registration.
    public static let defaultResources: [String: ResourceQuantity] = [
        "cpu": try! ResourceQuantity(parsing: "1"),
        "memory": try! ResourceQuantity(parsing: "1Gi"),
    ]

    /// The CPU limit in millicores, or nil when the plan has none (it was unset).
    public var cpuMillicores: Int64? { resources["cpu"]?.scaled(by: 1000) }

    /// The memory limit in bytes, or nil when the plan has none.
    public var memoryBytes: Int64? { resources["memory"]?.scaled(by: 1) }
}
