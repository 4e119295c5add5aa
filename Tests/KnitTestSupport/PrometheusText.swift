// A strict reader of Prometheus' text exposition format (version 0.0.4), written from the format's
// description, so tests can read `GET /metrics` back and find a malformed line instead of skipping it.

/// One sample line: `name{label="value",…} value`.
public struct PrometheusSample: Sendable, Equatable {
    public var name: String
    public var labels: [String: String]
    public var value: Double
}

/// A whole exposition, read back; `init(parsing:)` throws at the first line that is not well formed.
public struct PrometheusText: Sendable {
    public private(set) var samples: [PrometheusSample] = []
    /// Family name → `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    public private(set) var types: [String: String] = [:]
    public private(set) var help: [String: String] = [:]

    public struct Malformed: Error, CustomStringConvertible {
        public var line: Int
        public var text: String
        public var why: String
        public var description: String { "line \(line): \(why): \(text)" }
    }

    public init(parsing text: String) throws(Malformed) {
        guard text.hasSuffix("\n") else { throw Malformed(line: 0, text: "", why: "the text must end with a newline") }
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().enumerated() {
            let number = index + 1
            func malformed(_ why: String) -> Malformed { Malformed(line: number, text: String(line), why: why) }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
                guard parts.count >= 3, parts[0] == "#" else { continue }  // a plain comment
                let name = String(parts[2])
                guard Self.isMetricName(name) else { throw malformed("bad metric name") }
                if parts[1] == "TYPE" {
                    guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3])
                    else { throw malformed("bad TYPE") }
                    guard types[name] == nil else { throw malformed("second TYPE for \(name)") }
                    guard !samples.contains(where: { Self.family(of: $0.name, types: [name: "x"]) == name }) else {
                        throw malformed("TYPE after the family's samples")
                    }
                    types[name] = String(parts[3])
                } else if parts[1] == "HELP" {
                    guard help[name] == nil else { throw malformed("second HELP for \(name)") }
                    help[name] = parts.count == 4 ? String(parts[3]) : ""
                }
                continue
            }
            guard !line.isEmpty else { throw malformed("empty line") }
            samples.append(try Self.sample(Substring(line), malformed))
        }
        for sample in samples {
            guard let family = Self.family(of: sample.name, types: types) else {
                throw Malformed(line: 0, text: sample.name, why: "a sample without a TYPE")
            }
            if types[family] == "counter", !family.hasSuffix("_total") {
                throw Malformed(line: 0, text: family, why: "a counter's name must end in _total")
            }
        }
    }

    /// The family a sample belongs to: its own name, or for a histogram's `_bucket`, `_sum` and `_count` the
    /// name without the suffix.
    static func family(of name: String, types: [String: String]) -> String? {
        if types[name] != nil { return name }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if types[base] == "histogram" || types[base] == "summary" { return base }
        }
        return nil
    }

    static func isMetricName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.isASCIILetter || first == "_" || first == ":" else {
            return false
        }
        return name.unicodeScalars.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "_" || $0 == ":" }
    }

    private static func sample(
        _ line: Substring,
        _ malformed: (String) -> Malformed
    ) throws(Malformed) -> PrometheusSample {
        var rest = line[...]
        let name = String(rest.prefix { $0 != "{" && $0 != " " })
        guard isMetricName(name) else { throw malformed("bad metric name") }
        rest = rest.dropFirst(name.count)
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                let label = String(rest.prefix { $0 != "=" })
                guard isMetricName(label), !label.contains(":") else { throw malformed("bad label name") }
                rest = rest.dropFirst(label.count)
                guard rest.hasPrefix("=\"") else { throw malformed("a label value must be quoted") }
                rest = rest.dropFirst(2)
                var value = ""
                while true {
                    guard let character = rest.first else { throw malformed("unterminated label value") }
                    rest = rest.dropFirst()
                    if character == "\"" { break }
                    if character == "\\" {
                        switch rest.first {
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        case "n": value.append("\n")
                        default: throw malformed("bad escape in a label value")
                        }
                        rest = rest.dropFirst()
                    } else {
                        value.append(character)
                    }
                }
                guard labels.updateValue(value, forKey: label) == nil else { throw malformed("label given twice") }
                if rest.first == "," {
                    rest = rest.dropFirst()
                } else if rest.first != "}" {
                    throw malformed("labels must be separated by commas")
                }
            }
            rest = rest.dropFirst()
        }
        guard rest.first == " " else { throw malformed("no space before the value") }
        let fields = rest.dropFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 1 || (fields.count == 2 && Int64(fields[1]) != nil) else {
            throw malformed("a value and at most a timestamp must follow")
        }
        let text = String(fields[0])
        let value: Double
        switch text {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let parsed = Double(text), text.allSatisfy({ $0.isNumber || "+-.eE".contains($0) }) else {
                throw malformed("bad value")
            }
            value = parsed
        }
        return PrometheusSample(name: name, labels: labels, value: value)
    }

    /// The samples of `name` whose labels include all of `labels`.
    public func samples(_ name: String, _ labels: [String: String] = [:]) -> [PrometheusSample] {
        samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }
    }

    /// The one sample of `name` with exactly `labels`, or 0 when there is none (a counter not yet moved).
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.first { $0.name == name && $0.labels == labels }?.value ?? 0
    }

    /// Checks every histogram: per label set, `le` bounds ascending and ending in `+Inf`, bucket counts
    /// cumulative, the `+Inf` bucket equal to `_count`, a `_sum` present. Returns what is wrong, or nil.
    public func histogramProblems() -> String? {
        for (family, type) in types where type == "histogram" {
            var groups: [[String: String]: [(Double, Double)]] = [:]
            for sample in samples(family + "_bucket") {
                guard let le = sample.labels["le"], let bound = le == "+Inf" ? .infinity : Double(le) else {
                    return "\(family): a bucket without a numeric le"
                }
                var others = sample.labels
                others["le"] = nil
                groups[others, default: []].append((bound, sample.value))
            }
            for (labels, buckets) in groups {
                guard buckets.map(\.0) == buckets.map(\.0).sorted(), buckets.last?.0 == .infinity else {
                    return "\(family)\(labels): le bounds not ascending or no +Inf"
                }
                guard zip(buckets, buckets.dropFirst()).allSatisfy({ $0.1 <= $1.1 }) else {
                    return "\(family)\(labels): buckets not cumulative"
                }
                let count = samples.first { $0.name == family + "_count" && $0.labels == labels }?.value
                guard count == buckets.last?.1 else { return "\(family)\(labels): +Inf bucket != _count" }
                guard samples.contains(where: { $0.name == family + "_sum" && $0.labels == labels }) else {
                    return "\(family)\(labels): no _sum"
                }
            }
        }
        return nil
    }
}

extension Unicode.Scalar {
    fileprivate var isASCIILetter: Bool { ("a"..."z").contains(self) || ("A"..."Z").contains(self) }
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
