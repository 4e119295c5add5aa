import KnitCore
import KnitStore

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// Who is calling, resolved from `Authorization`.
public struct Caller: Sendable, Equatable {
    public var name: String
    public var role: Role
}

/// Extracts the token from `Authorization: Bearer T`, or from HTTP Basic with the token as password, which is
/// what Knitfab's own CLI sends for an apiRoot of the form `https://USER:TOKEN@host/api`.
func bearerToken(fromAuthorization header: String?) -> String? {
    guard let header else { return nil }
    let trimmed = header.drop { $0 == " " }
    guard let space = trimmed.firstIndex(of: " ") else { return nil }
    let scheme = trimmed[..<space].lowercased()
    let credential = String(trimmed[space...].drop { $0 == " " })
    switch scheme {
    case "bearer":
        return credential.isEmpty ? nil : credential
    case "basic":
        guard let decoded = Data(base64Encoded: credential), let text = String(data: decoded, encoding: .utf8),
            let colon = text.firstIndex(of: ":")
        else { return nil }
        let password = String(text[text.index(after: colon)...])
        return password.isEmpty ? nil : password
    default:
        return nil
    }
}

/// Whether `text` holds `knit_`. A byte scan: `String.contains(_:)`'s generic search was 2 % of knitd's CPU
/// per request, for a path that almost never holds one.
private func mayHoldToken(_ text: String) -> Bool {
    let prefix: StaticString = "knit_"
    var matched = 0
    for byte in text.utf8 {
        if byte == prefix.utf8Start[matched] {
            matched += 1
            if matched == prefix.utf8CodeUnitCount { return true }
        } else {
            // `k` occurs only at the start of the prefix, so a mismatch restarts there.
            matched = byte == UInt8(ascii: "k") ? 1 : 0
        }
    }
    return false
}

/// `text` with everything that looks like a Knit token (`knit_` and the base64url characters after it) replaced
/// by `knit_[redacted]`, for log lines built from client input.
public func redactingTokens(_ text: String) -> String {
    guard mayHoldToken(text) else { return text }
    func isTokenByte(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }
    let bytes = Array(text.utf8)
    let prefix = Array("knit_".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var index = 0
    while index < bytes.count {
        if bytes[index...].starts(with: prefix) {
            var end = index + prefix.count
            while end < bytes.count, isTokenByte(bytes[end]) { end += 1 }
            out.append(contentsOf: Array("knit_[redacted]".utf8))
            index = end
        } else {
            out.append(bytes[index])
            index += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}
