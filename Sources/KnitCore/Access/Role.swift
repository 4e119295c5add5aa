/// User roles: `reader` may only read, `user` may also write, `admin` may also manage users.
public enum Role: String, Codable, Sendable, CaseIterable, Comparable {
    case reader, user, admin

    public var canWrite: Bool { self != .reader }

    public static func < (lhs: Role, rhs: Role) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}
