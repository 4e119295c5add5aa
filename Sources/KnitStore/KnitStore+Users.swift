public import KnitCore
internal import KnitDigest
internal import KnitLMDB
internal import Logging

// Users and bearer tokens. Only the SHA-256 of a token is stored; the token itself is shown once.

extension KnitStore {
    /// Creates user `name` with `role` and returns their first token.
    /// - Throws: `.invalid` for a name not matching `[a-z0-9][a-z0-9._-]{0,62}`, `.conflict` when the
    ///   user exists or existed (a deleted user's name stays reserved).
    public func addUser(name: String, role: Role) throws(StoreError) -> String {
        guard Self.isValidUserName(name) else {
            throw StoreError(
                .invalid,
                "user name '\(name)' is invalid (use 1-63 of a-z 0-9 . _ -, starting with a letter or digit)"
            )
        }
        let token = Self.newToken()
        let now = clock()
        let user = UserRecord(name: name, role: role, createdAtMs: now)
        try write("add user") { txn in
            if let existing = try Self.decode(UserRecord.self, txn.get(db.users, key: Array(name.utf8))) {
                if existing.deletedAtMs != nil {
                    // Data, Plans and Runs name their creator by name: a new user of that name would own them.
                    throw StoreError(
                        .conflict,
                        "user \(name) was deleted; the name stays reserved so that nobody inherits what it owns",
                        advice: "choose another name"
                    )
                }
                throw StoreError(.conflict, "user \(name) exists already")
            }
            try txn.put(db.users, key: Array(name.utf8), value: Self.encode(user))
            try txn.put(
                db.tokens,
                key: Self.tokenKey(token),
                value: TokenRecord(user: name, createdAtMs: now).bytes,
                flags: .noOverwrite
            )
        }
        logger.info("user added", metadata: ["user.name": "\(name)", "user.role": "\(role.rawValue)"])
        return token
    }

    /// Issues another token for user `name` that never expires; earlier tokens stay valid.
    /// - Throws: `.notFound` when the user does not exist or was deleted.
    public func issueToken(name: String) throws(StoreError) -> String {
        try issueToken(for: name, expiry: .never).token
    }

    /// Issues another token for user `name`, valid until `expiry`. Earlier tokens stay valid unless
    /// `revokingOthers`, which revokes them in the same transaction.
    /// - Throws: `.notFound` when the user does not exist or was deleted; `.invalid` for an expiry that is not
    ///   in the future.
    public func issueToken(
        for name: String,
        expiry: TokenExpiry,
        revokingOthers: Bool = false
    ) throws(StoreError) -> IssuedToken {
        let token = Self.newToken()
        let now = clock()
        let expiresAtMs: Int64?
        switch expiry {
        case .never: expiresAtMs = nil
        case .at(let instant): expiresAtMs = instant
        // From the issuing instant itself, so a token of 6 s is recorded as lasting exactly 6 s.
        case .after(let duration): expiresAtMs = now.addingReportingOverflow(duration).partialValue
        }
        if let expiresAtMs, expiresAtMs <= now {
            throw StoreError(.invalid, "the expiry \(KnitTime(milliseconds: expiresAtMs)) is not in the future")
        }
        let revoked = try write("issue token") { txn -> [String] in
            guard let user = try Self.decode(UserRecord.self, txn.get(db.users, key: Array(name.utf8))),
                user.deletedAtMs == nil
            else { throw StoreError(.notFound, "user \(name) not found") }
            let others = revokingOthers ? try tokenKeys(txn, of: name) : []
            for key in others { _ = try txn.delete(db.tokens, key: key) }
            try txn.put(
                db.tokens,
                key: Self.tokenKey(token),
                value: TokenRecord(user: name, createdAtMs: now, expiresAtMs: expiresAtMs).bytes,
                flags: .noOverwrite
            )
            return others.map(Self.tokenId(ofKey:))
        }
        logger.info("token issued", metadata: ["user.name": "\(name)", "token.revoked": "\(revoked.count)"])
        return IssuedToken(
            token: token,
            id: Self.tokenId(ofKey: Self.tokenKey(token)),
            expires: expiresAtMs.map { KnitTime(milliseconds: $0) },
            revokedIds: revoked
        )
    }

    /// The user owning `token`, or nil for an unknown, expired or revoked token or a disabled user (or when
    /// the store cannot be read, logged).
    public func authenticate(token: String) -> StoreUser? {
        if case .valid(let user) = check(token: token) { return user }
        return nil
    }

    /// What `token` is worth now. Read from the store on every call (nothing is cached), so disabling a
    /// user, deleting one or revoking a token holds from the next request on.
    public func check(token: String) -> TokenCheck {
        guard token.hasPrefix(Self.tokenPrefix), token.utf8.count < 256 else { return .unknown }
        let now = clock()
        do {
            return try read("authenticate") { txn -> TokenCheck in
                guard let value = try txn.get(db.tokens, key: Self.tokenKey(token)) else { return .unknown }
                let record = try Self.tokenRecord(value)
                let found = try txn.withValue(db.users, key: record.user.utf8) { bytes in
                    try bytes.map { try UserRecord(json: $0) ?? Self.decode(UserRecord.self, $0) }
                }
                guard let user = found else { return .unknown }
                if user.deletedAtMs != nil { return .unknown }
                if user.disabled == true { return .disabled(user: user.name) }
                if let expires = record.expiresAtMs, expires <= now {
                    return .expired(user: user.name, at: KnitTime(milliseconds: expires))
                }
                return .valid(StoreUser(name: user.name, role: user.role))
            }
        } catch {
            logger.error("token lookup failed", metadata: ["store.error": "\(error)"])
            return .unknown
        }
    }

    /// All users, ordered by name.
    public func users() throws(StoreError) -> [StoreUser] {
        try read("list users") { txn in
            var out: [StoreUser] = []
            try txn.forEach(db.users) { _, value in
                let user = try Self.decode(UserRecord.self, value)
                out.append(StoreUser(name: user.name, role: user.role))
                return true
            }
            return out
        }
    }

    /// Every user ever added, deleted ones included (they still own Data, Plans and Runs), ordered by name,
    /// with how many tokens each holds (expired ones included: they are listed until revoked).
    public func userSummaries() throws(StoreError) -> [UserSummary] {
        try read("list users") { txn in
            var counts: [String: Int] = [:]
            try txn.forEach(db.tokens) { _, value in
                counts[try Self.tokenRecord(Array(value)).user, default: 0] += 1
                return true
            }
            var out: [UserSummary] = []
            try txn.forEach(db.users) { _, value in
                let user = try Self.decode(UserRecord.self, value)
                let state: UserState =
                    user.deletedAtMs != nil ? .deleted : user.disabled == true ? .disabled : .enabled
                out.append(
                    UserSummary(
                        name: user.name,
                        role: user.role,
                        state: state,
                        created: KnitTime(milliseconds: user.createdAtMs).description,
                        tokens: counts[user.name] ?? 0
                    )
                )
                return true
            }
            return out
        }
    }

    /// Disables (`enabled` false) or enables user `name`. Their tokens are kept; while disabled every one
    /// is refused. Returns whether the state changed.
    /// - Throws: `.notFound` for an unknown user, `.conflict` for a deleted one.
    @discardableResult
    public func setUserEnabled(name: String, enabled: Bool) throws(StoreError) -> Bool {
        let changed = try write("set user enabled") { txn -> Bool in
            guard var user = try Self.decode(UserRecord.self, txn.get(db.users, key: Array(name.utf8))) else {
                throw StoreError(.notFound, "user \(name) not found")
            }
            guard user.deletedAtMs == nil else {
                throw StoreError(.conflict, "user \(name) was deleted and cannot be enabled or disabled")
            }
            guard (user.disabled == true) == enabled else { return false }
            user.disabled = enabled ? nil : true
            try txn.put(db.users, key: Array(name.utf8), value: Self.encode(user))
            return true
        }
        logger.info(enabled ? "user enabled" : "user disabled", metadata: ["user.name": "\(name)"])
        return changed
    }

    /// Deletes user `name`: revokes all their tokens and keeps the record as deleted. What they own stays,
    /// owned by the name (an admin may still change it), and the name is never given to a new user.
    /// Returns how many tokens were revoked.
    /// - Throws: `.notFound` for an unknown or already deleted user.
    @discardableResult
    public func deleteUser(name: String) throws(StoreError) -> Int {
        let now = clock()
        let revoked = try write("delete user") { txn -> Int in
            guard var user = try Self.decode(UserRecord.self, txn.get(db.users, key: Array(name.utf8))),
                user.deletedAtMs == nil
            else { throw StoreError(.notFound, "user \(name) not found") }
            let keys = try tokenKeys(txn, of: name)
            for key in keys { _ = try txn.delete(db.tokens, key: key) }
            user.deletedAtMs = now
            user.disabled = nil
            try txn.put(db.users, key: Array(name.utf8), value: Self.encode(user))
            return keys.count
        }
        logger.info("user deleted", metadata: ["user.name": "\(name)", "token.revoked": "\(revoked)"])
        return revoked
    }

    /// Tokens (never their secrets), of one user or of all, ordered by user, then creation, then id.
    public func tokens(of name: String? = nil) throws(StoreError) -> [TokenSummary] {
        try read("list tokens") { txn in
            if let name {
                guard try txn.get(db.users, key: Array(name.utf8)) != nil else {
                    throw StoreError(.notFound, "user \(name) not found")
                }
            }
            var out: [(created: Int64, summary: TokenSummary)] = []
            try txn.forEach(db.tokens) { key, value in
                let record = try Self.tokenRecord(Array(value))
                if let name, record.user != name { return true }
                out.append(
                    (
                        record.createdAtMs ?? 0,
                        TokenSummary(
                            id: Self.tokenId(ofKey: Array(key)),
                            user: record.user,
                            created: record.createdAtMs.map { KnitTime(milliseconds: $0).description },
                            expires: record.expiresAtMs.map { KnitTime(milliseconds: $0).description }
                        )
                    )
                )
                return true
            }
            out.sort { a, b in
                if a.summary.user != b.summary.user { return a.summary.user < b.summary.user }
                if a.created != b.created { return a.created < b.created }
                return a.summary.id < b.summary.id
            }
            return out.map(\.summary)
        }
    }

    /// Revokes the token with id `id` (as ``tokens(of:)`` shows it) and returns whose it was.
    /// - Throws: `.notFound` when no token has that id.
    @discardableResult
    public func revokeToken(id: String) throws(StoreError) -> String {
        let wanted = id.lowercased()
        guard wanted.utf8.count == Self.tokenIdLength,
            wanted.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else {
            throw StoreError(.invalid, "'\(id)' is not a token id (\(Self.tokenIdLength) hex digits, see `token list`)")
        }
        let user = try write("revoke token") { txn -> String in
            var found: (key: [UInt8], user: String)?
            // Keys are hex digests, so the id is a key prefix.
            try txn.forEach(db.tokens, prefix: Array(wanted.utf8)) { key, value in
                found = (Array(key), try Self.tokenRecord(Array(value)).user)
                return false
            }
            guard let found else { throw StoreError(.notFound, "token \(id) not found") }
            _ = try txn.delete(db.tokens, key: found.key)
            return found.user
        }
        logger.info("token revoked", metadata: ["user.name": "\(user)", "token.id": "\(wanted)"])
        return user
    }

    // MARK: Internals

    static let tokenPrefix = "knit_"
    /// Hex digits of a token's SHA-256 that name it in listings: enough to never collide among one store's
    /// tokens, and useless for finding the token itself.
    static let tokenIdLength = 16

    static func tokenId(ofKey key: [UInt8]) -> String { String(decoding: key.prefix(tokenIdLength), as: UTF8.self) }

    static func tokenRecord(_ value: [UInt8]) throws -> TokenRecord {
        guard let record = TokenRecord(decoding: value) else {
            throw StoreError(.corrupted, "store: a token record is malformed")
        }
        return record
    }

    /// Keys of every token of user `name`.
    func tokenKeys(_ txn: borrowing LMDBTransaction, of name: String) throws -> [[UInt8]] {
        var keys: [[UInt8]] = []
        try txn.forEach(db.tokens) { key, value in
            if try Self.tokenRecord(Array(value)).user == name { keys.append(Array(key)) }
            return true
        }
        return keys
    }

    static func isValidUserName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count) else { return false }
        func isAlnum(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) }
        guard isAlnum(bytes[0]) else { return false }
        return bytes.dropFirst().allSatisfy {
            isAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
        }
    }

    /// `knit_` + 32 random bytes in unpadded base64url (43 characters).
    static func newToken() -> String { tokenPrefix + base64URL(randomBytes(32)) }

    static func tokenKey(_ token: String) -> [UInt8] { Array(SHA256Digest.hex(of: token).utf8) }

    static func base64URL(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            var value: UInt32 = 0
            for (offset, byte) in chunk.enumerated() { value |= UInt32(byte) << (16 - 8 * offset) }
            let characters = chunk.count + 1
            for position in 0..<characters { out.append(alphabet[Int((value >> (18 - 6 * position)) & 0x3F)]) }
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A new token and how to name it later.
public struct IssuedToken: Sendable {
    /// The secret, shown once.
    public var token: String
    /// What `token list` and `token revoke` call it.
    public var id: String
    public var expires: KnitTime?
    /// Ids of the user's earlier tokens revoked with it (`--rotate`).
    public var revokedIds: [String]
}

/// When a new token stops working.
public enum TokenExpiry: Sendable, Equatable {
    case never
    /// At this instant (milliseconds since the epoch).
    case at(Int64)
    /// This many milliseconds after it is issued.
    case after(Int64)
}

/// What a presented token is worth.
public enum TokenCheck: Sendable, Equatable {
    case valid(StoreUser)
    /// No such token (never issued, revoked, or its user deleted).
    case unknown
    case expired(user: String, at: KnitTime)
    case disabled(user: String)
}

public enum UserState: String, Codable, Sendable {
    case enabled, disabled, deleted
}

/// A user as `knitadm user list` shows them.
public struct UserSummary: Codable, Sendable, Equatable {
    public var name: String
    public var role: Role
    public var state: UserState
    /// RFC 3339.
    public var created: String
    /// Tokens the user holds, expired ones included until revoked.
    public var tokens: Int
}

/// A token as `knitadm token list` shows it: never the secret.
public struct TokenSummary: Codable, Sendable, Equatable {
    public var id: String
    public var user: String
    /// RFC 3339; nil for a token issued before tokens recorded it.
    public var created: String?
    /// RFC 3339; nil for a token that never expires.
    public var expires: String?
}
