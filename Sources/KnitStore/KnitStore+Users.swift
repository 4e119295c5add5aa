public import KnitCore
internal import KnitDigest
internal import KnitLMDB
internal import Logging

// Users and bearer tokens. Only the SHA-256 of a token is stored; the token itself is shown once.

extension KnitStore {
    /// Creates user `name` with `role` and returns their first token.
    /// - Throws: `.invalid` for a name not matching `[a-z0-9][a-z0-9._-]{0,62}`, `.conflict` when the
    ///   user exists.
    public func addUser(name: String, role: Role) throws(StoreError) -> String {
        guard Self.isValidUserName(name) else {
            throw StoreError(
                .invalid,
                "user name '\(name)' is invalid (use 1-63 of a-z 0-9 . _ -, starting with a letter or digit)"
            )
        }
        let token = Self.newToken()
        let user = UserRecord(name: name, role: role, createdAtMs: clock())
        try write("add user") { txn in
            do {
                try txn.put(db.users, key: Array(name.utf8), value: Self.encode(user), flags: .noOverwrite)
            } catch let error as LMDBError where error.code == .keyExists {
                throw StoreError(.conflict, "user \(name) exists already")
            }
            try txn.put(db.tokens, key: Self.tokenKey(token), value: Array(name.utf8), flags: .noOverwrite)
        }
        logger.info("user added", metadata: ["user.name": "\(name)", "user.role": "\(role.rawValue)"])
        return token
    }

    /// Issues another token for user `name`; earlier tokens stay valid.
    /// - Throws: `.notFound` when the user does not exist.
    public func issueToken(name: String) throws(StoreError) -> String {
        let token = Self.newToken()
        try write("issue token") { txn in
            guard try txn.get(db.users, key: Array(name.utf8)) != nil else {
                throw StoreError(.notFound, "user \(name) not found")
            }
            try txn.put(db.tokens, key: Self.tokenKey(token), value: Array(name.utf8), flags: .noOverwrite)
        }
        logger.info("token issued", metadata: ["user.name": "\(name)"])
        return token
    }

    /// The user owning `token`, or nil for an unknown token (or when the store cannot be read, logged).
    public func authenticate(token: String) -> StoreUser? {
        guard token.hasPrefix(Self.tokenPrefix), token.utf8.count < 256 else { return nil }
        do {
            return try read("authenticate") { txn -> StoreUser? in
                guard let name = try txn.get(db.tokens, key: Self.tokenKey(token)),
                    let user = try Self.decode(UserRecord.self, txn.get(db.users, key: name))
                else { return nil }
                return StoreUser(name: user.name, role: user.role)
            }
        } catch {
            logger.error("token lookup failed", metadata: ["store.error": "\(error)"])
            return nil
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

    // MARK: Internals

    static let tokenPrefix = "knit_"

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
