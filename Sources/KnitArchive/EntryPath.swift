/// Entry names and link targets split into components, as Knit interprets them.
enum EntryPath {
    enum Problem: Error { case absolute, dotDot }

    /// Components of a relative name with empty and `.` components dropped; `./a//b/` gives `[a, b]`.
    static func components(_ name: [UInt8]) -> Result<[[UInt8]], Problem> {
        if name.first == UInt8(ascii: "/") { return .failure(.absolute) }
        var parts: [[UInt8]] = []
        for part in name.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if part.count == 1 && part.first == UInt8(ascii: ".") { continue }
            if part.count == 2 && part.allSatisfy({ $0 == UInt8(ascii: ".") }) { return .failure(.dotDot) }
            parts.append(Array(part))
        }
        return .success(parts)
    }

    static func join(_ parts: some Sequence<[UInt8]>) -> [UInt8] {
        Array(parts.joined(separator: [UInt8(ascii: "/")]))
    }
}
