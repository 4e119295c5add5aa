import KnitCore
import Testing

@testable import KnitStore

/// Token checks decode the user record by hand (`UserRecord(json:)`); whatever it accepts must decode exactly
/// as JSONDecoder does, and whatever it does not know it must leave to JSONDecoder.
@Suite struct UserRecordDecodingTests {
    static func fast(_ text: [UInt8]) -> UserRecord? {
        text.withUnsafeBytes { UserRecord(json: $0) }
    }

    static func same(_ a: UserRecord, _ b: UserRecord) -> Bool {
        a.name == b.name && a.role == b.role && a.createdAtMs == b.createdAtMs && a.disabled == b.disabled
            && a.deletedAtMs == b.deletedAtMs
    }

    @Test func everyStoredFormDecodesAsJSONDecoderDoesIt() throws {
        let names = ["alice", "a", "bob.smith_2-x", String(repeating: "z", count: 63)]
        let instants: [Int64] = [0, 1, 1_733_400_000_123, -5, Int64.max, Int64.min]
        var checked = 0
        for name in names {
            for role in Role.allCases {
                for created in instants {
                    for disabled in [nil, true, false] as [Bool?] {
                        for deleted in [nil, 0, 1_733_400_999_999] as [Int64?] {
                            let record = UserRecord(
                                name: name,
                                role: role,
                                createdAtMs: created,
                                disabled: disabled,
                                deletedAtMs: deleted
                            )
                            let bytes = try KnitStore.encode(record)
                            let expected = try #require(try KnitStore.decode(UserRecord.self, bytes))
                            let decoded = try #require(Self.fast(bytes), "\(String(decoding: bytes, as: UTF8.self))")
                            #expect(Self.same(decoded, expected), "\(String(decoding: bytes, as: UTF8.self))")
                            checked += 1
                        }
                    }
                }
            }
        }
        #expect(checked == 4 * 3 * 6 * 3 * 3)
    }

    /// Spellings JSONDecoder reads that Knit never writes: the hand decoder either reads them exactly as
    /// JSONDecoder does or leaves them to it, never reads them otherwise.
    @Test func otherSpellingsAreReadAsJSONDecoderReadsThemOrLeftToIt() throws {
        let texts = [
            #"{"role":"admin","createdAtMs":7,"name":"alice","disabled":null}"#,
            #"{"name":"bob","role":"reader","createdAtMs":-3,"deletedAtMs":null}"#,
            #"{"name":"café","role":"user","createdAtMs":-0,"disabled":false,"deletedAtMs":4}"#,
            #"{"role":"admin","createdAtMs":7,"name":"al\u0069ce","extra":[1,{"x":null}],"disabled":null}"#,
            #" { "name" : "bob" , "role" : "reader" , "createdAtMs" : -3 , "deletedAtMs" : null } "#,
            #"{"name":"caf\u00e9\"","role":"user","createdAtMs":12,"disabled":false,"deletedAtMs":4}"#,
        ]
        var read = 0
        for text in texts {
            let bytes = Array(text.utf8)
            let expected = try #require(try KnitStore.decode(UserRecord.self, bytes))
            guard let decoded = Self.fast(bytes) else { continue }
            #expect(Self.same(decoded, expected), "\(text)")
            read += 1
        }
        #expect(read == 3, "the first three are in the compact form the hand decoder reads")
    }

    /// Anything else is left to JSONDecoder (nil here), whose verdict the token check then takes.
    @Test func whatTheHandDecoderDoesNotKnowIsLeftToJSONDecoder() {
        let texts = [
            #"{"name":"a","role":"root","createdAtMs":1}"#,
            #"{"name":1,"role":"user","createdAtMs":1}"#,
            #"{"name":"a","role":"user","createdAtMs":1.5}"#,
            #"{"name":"a","role":"user","createdAtMs":"1"}"#,
            #"{"name":"a","role":"user","createdAtMs":99999999999999999999}"#,
            #"{"name":"a","role":"user"}"#,
            #"{"name":"a","name":"b","role":"user","createdAtMs":1}"#,
            #"{"name":"a","role":"user","createdAtMs":1,"disabled":"yes"}"#,
            #"{"name":"a","role":"user","createdAtMs":1,"deletedAtMs":true}"#,
            #"{"name":"a","role":"user","createdAtMs":01}"#,
            #"{"name":"a\n","role":"user","createdAtMs":1}"#,
            #"{"name":"a","role":"user","createdAtMs":1,"other":1}"#,
            #"{"name":"a","role":"user","createdAtMs":1} "#,
            #"{"name":"a","role":"user","createdAtMs":-9223372036854775809}"#,
            #"["a"]"#, "", "{", "null",
        ]
        for text in texts {
            #expect(Self.fast(Array(text.utf8)) == nil, "\(text)")
        }
    }
}
