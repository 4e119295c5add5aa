/// Decides whether a symlink target stays inside the Data root, the way the kernel would resolve it.
///
/// A purely lexical check is not enough: with `up -> .` in the tree, `z -> up/..` looks like the root but
/// resolves to its parent. So the target is walked component by component, expanding every symlink the archive
/// created (the tree was empty before extraction, so those are the only ones). Extraction runs this for each
/// link as it arrives and once more over all links at the end, because a later link can change what an earlier
/// target means.
struct SymlinkResolver {
    /// Link path (components joined by "/") to its raw target.
    private(set) var links: [[UInt8]: [UInt8]] = [:]

    /// Linux gives up with ELOOP after 40 expansions; a loop never reaches outside, so it counts as inside.
    private static let maximumExpansions = 40

    mutating func add(path: [[UInt8]], target: [UInt8]) {
        links[EntryPath.join(path)] = target
    }

    func isLink(_ path: [UInt8]) -> Bool { links[path] != nil }

    /// True when `target`, read relative to the directory holding the link at `path`, leaves the root.
    func escapes(linkAt path: [[UInt8]], target: [UInt8]) -> Bool {
        var current = Array(path.dropLast())
        var pending: [[UInt8]] = []
        var expansions = 0
        if !push(target, onto: &pending) { return true }
        while let part = pending.popLast() {
            if part == [UInt8(ascii: ".")] { continue }
            if part == [UInt8(ascii: "."), UInt8(ascii: ".")] {
                if current.isEmpty { return true }
                current.removeLast()
                continue
            }
            current.append(part)
            if let next = links[EntryPath.join(current)] {
                expansions += 1
                if expansions > Self.maximumExpansions { return false }
                current.removeLast()
                if !push(next, onto: &pending) { return true }
            }
        }
        return false
    }

    /// Pushes the components of `target` so the first is popped first; false for an absolute target.
    private func push(_ target: [UInt8], onto stack: inout [[UInt8]]) -> Bool {
        if target.first == UInt8(ascii: "/") { return false }
        let parts = target.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true)
        for part in parts.reversed() { stack.append(Array(part)) }
        return true
    }
}
