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
