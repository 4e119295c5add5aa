#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// The head of an HTTP request as the API sees it, independent of FastCGI.
public struct APIRequest: Sendable {
    public var method: String
    /// Percent-decoded path without the query, e.g. `/api/data/1234/`.
    public var path: String
    /// Decoded query items in order (`+` is a space, as in HTML forms and Go's url.Values).
    public var query: [(name: String, value: String)]
    /// Header values by lower-case name.
    public var headers: [String: String]
    /// The front end's id for this request (nginx's `$request_id`, FastCGI parameter `REQUEST_ID`): knitd logs
    /// it as `request.id` and answers it as `X-Request-Id`, so one id finds a request in nginx's access log,
    /// knitd's log (the journal under systemd) and the client's view. Nil without one, or when it is not a
    /// short token of letters, digits and `-` (it goes into every log line as is).
    public var requestID: String? {
        didSet {
            if let id = requestID, !Self.isPlausibleRequestID(id) { requestID = nil }
        }
    }

    static func isPlausibleRequestID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64
            && id.utf8.allSatisfy { $0 == UInt8(ascii: "-") || ($0 < 128 && isalnumASCII($0)) }
    }

    public init(method: String, path: String, query: [(name: String, value: String)], headers: [String: String]) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
    }

    /// Splits a request URI (`/api/data/?tag=a%3Ab`) into path and query.
    /// - Returns: nil when the URI's percent-encoding is malformed.
    public init?(method: String, uri: String, headers: [String: String]) {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard let path = percentDecode(String(parts[0]), plusIsSpace: false) else { return nil }
        var items: [(name: String, value: String)] = []
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") where !pair.isEmpty {
                let halves = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let name = percentDecode(String(halves[0]), plusIsSpace: true),
                    let value = percentDecode(halves.count > 1 ? String(halves[1]) : "", plusIsSpace: true)
                else { return nil }
                items.append((name, value))
            }
        }
        self.init(method: method, path: path, query: items, headers: headers)
    }

    public func queryValues(_ name: String) -> [String] { query.filter { $0.name == name }.map(\.value) }
    public func queryValue(_ name: String) -> String? { query.first { $0.name == name }?.value }
    public func header(_ name: String) -> String? { headers[name.lowercased()] }

    /// `creator=NAME` of the find endpoints (Knit's addition); absent or empty: anyone's.
    var creatorFilter: String? { queryValue("creator").flatMap { $0.isEmpty ? nil : $0 } }
}

private func isalnumASCII(_ byte: UInt8) -> Bool {
    (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
        || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
}

/// Decodes `%XX` escapes (and `+` when `plusIsSpace`); nil for a broken escape or invalid UTF-8.
public func percentDecode(_ text: String, plusIsSpace: Bool) -> String? {
    // Most parts of a URI have nothing to decode: the String is then already the answer (and valid UTF-8).
    guard text.utf8.contains(where: { $0 == UInt8(ascii: "%") || (plusIsSpace && $0 == UInt8(ascii: "+")) }) else {
        return text
    }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(text.utf8.count)
    var iterator = text.utf8.makeIterator()
    while let byte = iterator.next() {
        switch byte {
        case UInt8(ascii: "%"):
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                return nil
            }
            bytes.append(high << 4 | low)
        case UInt8(ascii: "+") where plusIsSpace:
            bytes.append(UInt8(ascii: " "))
        default:
            bytes.append(byte)
        }
    }
    return String(validating: bytes, as: UTF8.self)
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case 0x30...0x39: return byte - 0x30
    case 0x41...0x46: return byte - 0x41 + 10
    case 0x61...0x66: return byte - 0x61 + 10
    default: return nil
    }
}
