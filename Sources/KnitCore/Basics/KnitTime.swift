/// An instant with millisecond precision, the resolution Knitfab keeps in JSON and tags.
///
/// Rendering and parsing are done by hand: Foundation's date formatters pull in ICU (~50 MB per binary).
public struct KnitTime: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    public let milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }

    public static func < (lhs: KnitTime, rhs: KnitTime) -> Bool { lhs.milliseconds < rhs.milliseconds }

    /// Knitfab's rendering: `YYYY-MM-DDTHH:MM:SS.sss+00:00` in UTC, trailing fraction zeros trimmed
    /// (and the dot dropped when the fraction is zero).
    public var description: String { render(offsetMinutes: 0) }

    /// The same rendering at a fixed offset from UTC.
    ///
    /// Written into one fixed buffer: every Data in a query result shows one or two instants, and rendering
    /// through string interpolation was a tenth of a tag query's time.
    public func render(offsetMinutes: Int) -> String {
        let local = milliseconds + Int64(offsetMinutes) * 60_000
        let millis = Int(((local % 1000) + 1000) % 1000)
        let seconds = (local - Int64(millis)) / 1000
        let days = Int(floorDivide(seconds, 86_400))
        let secondOfDay = Int(seconds - Int64(days) * 86_400)
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        guard (0...9999).contains(year), abs(offsetMinutes) < 100 * 60 else {
            return renderGeneral(offsetMinutes: offsetMinutes)
        }
        return String(unsafeUninitializedCapacity: 29) { buffer in
            var at = 0
            func digits(_ value: Int, _ width: Int) {
                var rest = value
                for offset in stride(from: width - 1, through: 0, by: -1) {
                    buffer[at + offset] = UInt8(ascii: "0") + UInt8(rest % 10)
                    rest /= 10
                }
                at += width
            }
            func byte(_ ascii: Unicode.Scalar) {
                buffer[at] = UInt8(ascii: ascii)
                at += 1
            }
            digits(year, 4)
            byte("-")
            digits(month, 2)
            byte("-")
            digits(day, 2)
            byte("T")
            digits(secondOfDay / 3600, 2)
            byte(":")
            digits(secondOfDay / 60 % 60, 2)
            byte(":")
            digits(secondOfDay % 60, 2)
            if millis != 0 {
                byte(".")
                var fraction = millis
                var width = 3
                while fraction % 10 == 0 {
                    fraction /= 10
                    width -= 1
                }
                digits(fraction, width)
            }
            byte(offsetMinutes < 0 ? "-" : "+")
            digits(abs(offsetMinutes) / 60, 2)
            byte(":")
            digits(abs(offsetMinutes) % 60, 2)
            return at
        }
    }

    /// The rendering for any year and offset; ``render(offsetMinutes:)`` uses it outside years 0…9999.
    func renderGeneral(offsetMinutes: Int) -> String {
        let local = milliseconds + Int64(offsetMinutes) * 60_000
        let millis = Int(((local % 1000) + 1000) % 1000)
        let seconds = (local - Int64(millis)) / 1000
        let days = Int(floorDivide(seconds, 86_400))
        let secondOfDay = Int(seconds - Int64(days) * 86_400)
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        var text = "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T"
        text += "\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2))"
        if millis != 0 {
            var fraction = pad(millis, 3)
            while fraction.hasSuffix("0") { fraction.removeLast() }
            text += "." + fraction
        }
        let sign = offsetMinutes < 0 ? "-" : "+"
        let magnitude = abs(offsetMinutes)
        text += "\(sign)\(pad(magnitude / 60, 2)):\(pad(magnitude % 60, 2))"
        return text
    }

    /// Parses RFC 3339 (`2024-05-17T04:19:33.325+00:00`, `…Z`, fraction optional, `T` or space).
    /// - Throws: ``TimeParseError`` on anything else.
    public init(rfc3339 text: String) throws(TimeParseError) {
        guard let parsed = Self.parse(text, defaultOffsetMinutes: nil) else { throw TimeParseError(text: text) }
        self = parsed
    }

    /// Parses the loose forms the CLI accepts for `--since`: a date, optionally followed by hours,
    /// minutes, seconds, a fraction and an offset. A missing offset means `defaultOffsetMinutes`.
    public static func parseLoose(_ text: String, defaultOffsetMinutes: Int) -> KnitTime? {
        parse(text, defaultOffsetMinutes: defaultOffsetMinutes)
    }

    private static func parse(_ text: String, defaultOffsetMinutes: Int?) -> KnitTime? {
        var scanner = Scanner(Array(text.utf8))
        guard let year = scanner.digits(4), scanner.take(UInt8(ascii: "-")), let month = scanner.digits(2),
            scanner.take(UInt8(ascii: "-")), let day = scanner.digits(2)
        else { return nil }
        var hour = 0
        var minute = 0
        var second = 0
        var millis = 0
        let loose = defaultOffsetMinutes != nil
        if scanner.take(UInt8(ascii: "T")) || scanner.take(UInt8(ascii: "t")) || scanner.take(UInt8(ascii: " ")) {
            guard let h = scanner.digits(2) else { return nil }
            hour = h
            if scanner.take(UInt8(ascii: ":")) {
                guard let m = scanner.digits(2) else { return nil }
                minute = m
                if scanner.take(UInt8(ascii: ":")) {
                    guard let s = scanner.digits(2) else { return nil }
                    second = s
                    if scanner.take(UInt8(ascii: ".")) {
                        guard let fraction = scanner.fraction() else { return nil }
                        millis = fraction
                    }
                } else if !loose {
                    return nil
                }
            } else if !loose {
                return nil
            }
        } else if !loose {
            return nil
        }
        var offset: Int
        if scanner.take(UInt8(ascii: "Z")) || scanner.take(UInt8(ascii: "z")) {
            offset = 0
        } else if let signByte = scanner.peek(), signByte == UInt8(ascii: "+") || signByte == UInt8(ascii: "-") {
            _ = scanner.take(signByte)
            guard let oh = scanner.digits(2) else { return nil }
            var om = 0
            if scanner.take(UInt8(ascii: ":")) {
                guard let m = scanner.digits(2) else { return nil }
                om = m
            } else if let m = scanner.digits(2) {
                om = m
            }
            offset = (oh * 60 + om) * (signByte == UInt8(ascii: "-") ? -1 : 1)
        } else if let fallback = defaultOffsetMinutes {
            offset = fallback
        } else {
            return nil
        }
        guard scanner.atEnd, (1...12).contains(month), (1...daysIn(month: month, year: year)).contains(day),
            hour < 24, minute < 60, second < 61
        else { return nil }
        let days = Int64(daysSinceEpoch(year: year, month: month, day: day))
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offset * 60)
        return KnitTime(milliseconds: seconds * 1000 + Int64(millis))
    }
}

/// A time string that is not RFC 3339.
public struct TimeParseError: Error, Sendable, CustomStringConvertible {
    public let text: String
    public var description: String { "'\(text)' is not an RFC 3339 time (e.g. 2024-05-17T04:19:33+00:00)" }
}

/// Parses Go duration syntax (`300ms`, `1.5h`, `2h45m`), the form Knitfab takes for `duration`.
/// Negative durations are rejected. Returns milliseconds, rounded down.
public func parseGoDuration(_ text: String) -> Int64? {
    let bytes = Array(text.utf8)
    guard !bytes.isEmpty else { return nil }
    if bytes == [UInt8(ascii: "0")] { return 0 }
    var index = 0
    var totalNanos: Double = 0
    while index < bytes.count {
        let start = index
        while index < bytes.count, (bytes[index] >= 0x30 && bytes[index] <= 0x39) || bytes[index] == UInt8(ascii: ".") {
            index += 1
        }
        guard index > start, let number = Double(String(decoding: bytes[start..<index], as: UTF8.self)) else {
            return nil
        }
        let unitStart = index
        while index < bytes.count, !(bytes[index] >= 0x30 && bytes[index] <= 0x39), bytes[index] != UInt8(ascii: ".") {
            index += 1
        }
        let unit = String(decoding: bytes[unitStart..<index], as: UTF8.self)
        let scale: Double
        switch unit {
        case "ns": scale = 1
        case "us", "µs", "μs": scale = 1e3
        case "ms": scale = 1e6
        case "s": scale = 1e9
        case "m": scale = 60e9
        case "h": scale = 3600e9
        default: return nil
        }
        totalNanos += number * scale
    }
    guard totalNanos.isFinite, totalNanos < 9.2e18 else { return nil }
    return Int64(totalNanos / 1e6)
}

private struct Scanner {
    let bytes: [UInt8]
    var position = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var atEnd: Bool { position == bytes.count }
    func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }
    mutating func take(_ byte: UInt8) -> Bool {
        guard peek() == byte else { return false }
        position += 1
        return true
    }
    mutating func digits(_ count: Int) -> Int? {
        guard position + count <= bytes.count else { return nil }
        var value = 0
        for byte in bytes[position..<position + count] {
            guard byte >= 0x30 && byte <= 0x39 else { return nil }
            value = value * 10 + Int(byte - 0x30)
        }
        position += count
        return value
    }
    /// Reads fraction digits and returns milliseconds (extra precision truncated).
    mutating func fraction() -> Int? {
        var digits = 0
        var millis = 0
        while let byte = peek(), byte >= 0x30 && byte <= 0x39 {
            if digits < 3 { millis = millis * 10 + Int(byte - 0x30) }
            digits += 1
            position += 1
        }
        guard digits > 0 else { return nil }
        for _ in digits..<max(digits, 3) { millis *= 10 }
        return millis
    }
}

private func pad(_ value: Int, _ width: Int) -> String {
    let text = String(value)
    return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
}

private func floorDivide(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }

private func isLeap(_ year: Int) -> Bool { (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 }

private func daysIn(month: Int, year: Int) -> Int {
    switch month {
    case 2: return isLeap(year) ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
}

// Howard Hinnant's days-from-civil algorithm (public domain), proleptic Gregorian calendar.
private func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    return era * 146_097 + dayOfEra - 719_468
}

private func civilDate(daysSinceEpoch days: Int) -> (Int, Int, Int) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let dayOfEra = z - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let mp = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
}
