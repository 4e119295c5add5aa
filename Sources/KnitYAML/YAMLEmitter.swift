/// A value to write as YAML. Only what Knit's own files need: strings, lists and ordered maps.
public indirect enum YAMLValue: Sendable, Equatable {
    case string(String)
    case sequence([YAMLValue])
    case mapping([YAMLPair])

    /// Block-style YAML text ending in a newline. Every string and key is double-quoted, so no value
    /// can change meaning (`no`, `1e3`, `: `, `#`) and ``parseYAML(_:limits:)`` reads back the same text.
    public func rendered() -> String {
        var out = ""
        switch self {
        case .string(let text): out = Self.quoted(text) + "\n"
        case .sequence(let items) where items.isEmpty: out = "[]\n"
        case .mapping(let pairs) where pairs.isEmpty: out = "{}\n"
        default: render(into: &out, indent: "")
        }
        return out
    }

    private func render(into out: inout String, indent: String) {
        switch self {
        case .string(let text): out += Self.quoted(text) + "\n"
        case .sequence(let items):
            for item in items {
                out += indent + "-"
                item.renderValue(into: &out, indent: indent + "  ")
            }
        case .mapping(let pairs):
            for pair in pairs {
                out += indent + Self.quoted(pair.key) + ":"
                pair.value.renderValue(into: &out, indent: indent + "  ")
            }
        }
    }

    /// Continues a line that already holds `- ` or `key:`.
    private func renderValue(into out: inout String, indent: String) {
        switch self {
        case .string(let text): out += " " + Self.quoted(text) + "\n"
        case .sequence(let items) where items.isEmpty: out += " []\n"
        case .mapping(let pairs) where pairs.isEmpty: out += " {}\n"
        default:
            out += "\n"
            render(into: &out, indent: indent)
        }
    }

    /// A YAML double-quoted scalar; non-printable characters are escaped, other Unicode is kept as is.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || (0x80..<0xA0).contains(scalar.value)
                    || scalar.value == 0xFEFF || scalar.value == 0x2028 || scalar.value == 0x2029
                {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// One `key: value` of a ``YAMLValue/mapping(_:)``.
public struct YAMLPair: Sendable, Equatable {
    public let key: String
    public let value: YAMLValue

    public init(_ key: String, _ value: YAMLValue) {
        self.key = key
        self.value = value
    }
}
