/// Whether symlinks stay inside a tree, resolved the way the kernel would.
///
/// A purely lexical check is not enough: with `up -> .` in the tree, `z -> up/..` looks like the root but
/// resolves to its parent. So a target is walked component by component, expanding every symlink the tree
/// holds (``links``). The archive extractor (uploads) and the output sanitiser (what a Run wrote) both judge
/// links with it, so the two trees that become Data follow one rule.
///
/// Paths are bytes (names need not be UTF-8): components relative to the root joined by `/`.
public struct SymlinkContainment: Sendable {
    /// Link path to its raw target.
    public private(set) var links: [[UInt8]: [UInt8]]

    /// Linux gives up with ELOOP after 40 expansions; a loop never reaches outside, so it counts as inside.
    static let maximumExpansions = 40

    public init(links: [[UInt8]: [UInt8]] = [:]) { self.links = links }

    public mutating func add(linkAt path: [UInt8], target: [UInt8]) { links[path] = target }

    public mutating func remove(linkAt path: [UInt8]) { links[path] = nil }

    public func isLink(_ path: [UInt8]) -> Bool { links[path] != nil }

    /// True when `target`, read relative to the directory holding the link at `path`, leaves the root. An
    /// absolute or empty target always does.
    public func escapes(linkAt path: [UInt8], target: [UInt8]) -> Bool {
        var current = path.split(separator: UInt8(ascii: "/")).map(Array.init)
        if !current.isEmpty { current.removeLast() }
        var pending: [[UInt8]] = []
        guard Self.push(target, onto: &pending) else { return true }
        var expansions = 0
        while let part = pending.popLast() {
            if part == [UInt8(ascii: ".")] { continue }
            if part == [UInt8(ascii: "."), UInt8(ascii: ".")] {
                if current.isEmpty { return true }
                current.removeLast()
                continue
            }
            current.append(part)
            if let next = links[Self.join(current)] {
                expansions += 1
                if expansions > Self.maximumExpansions { return false }
                current.removeLast()
                guard Self.push(next, onto: &pending) else { return true }
            }
        }
        return false
    }

    /// Every link whose target leaves the root, judged against the whole tree.
    public func escaping() -> [[UInt8]: [UInt8]] { links.filter { escapes(linkAt: $0.key, target: $0.value) } }

    /// Pushes the components of `target` so the first pops first; false for an absolute or empty target.
    private static func push(_ target: [UInt8], onto stack: inout [[UInt8]]) -> Bool {
        if target.isEmpty || target.first == UInt8(ascii: "/") { return false }
        for part in target.split(separator: UInt8(ascii: "/")).reversed() { stack.append(Array(part)) }
        return true
    }

    private static func join(_ components: [[UInt8]]) -> [UInt8] {
        var path: [UInt8] = []
        for component in components {
            if !path.isEmpty { path.append(UInt8(ascii: "/")) }
            path += component
        }
        return path
    }
}
