#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// Ids of Data, Runs and Plans: lower-case UUID v4 text, 36 characters, as Knitfab uses.
public enum KnitIdentifier {
    /// A new random id.
    public static func make() -> String { UUID().uuidString.lowercased() }

    /// True for the canonical 8-4-4-4-12 lower- or upper-case hex form.
    public static func isWellFormed(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (index, byte) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(index) {
                guard byte == UInt8(ascii: "-") else { return false }
            } else {
                let isHex =
                    (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66) || (byte >= 0x41 && byte <= 0x46)
                guard isHex else { return false }
            }
        }
        return true
    }
}
