import KnitCore
import Testing

/// The one rule uploads and Run outputs are both held to: a symlink must resolve inside its tree.
@Suite struct SymlinkContainmentTests {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    private func tree(_ links: [String: String]) -> SymlinkContainment {
        var tree = SymlinkContainment()
        for (path, target) in links { tree.add(linkAt: bytes(path), target: bytes(target)) }
        return tree
    }

    @Test func targetsInsideStayAndTargetsOutsideEscape() {
        let links = tree(["a/b/l": "../c", "a/up": "..", "top": "..", "abs": "/etc/shadow", "dot": "."])
        #expect(!links.escapes(linkAt: bytes("a/b/l"), target: bytes("../c")))
        #expect(!links.escapes(linkAt: bytes("a/up"), target: bytes("..")))
        #expect(links.escapes(linkAt: bytes("top"), target: bytes("..")))
        #expect(links.escapes(linkAt: bytes("abs"), target: bytes("/etc/shadow")))
        #expect(links.escapes(linkAt: bytes("empty"), target: []))
        #expect(Set(links.escaping().keys) == [bytes("top"), bytes("abs")])
    }

    /// A lexical check would pass `z -> up/..`; through `up -> .` it is the root's parent.
    @Test func linksAreResolvedThroughTheTreesOtherLinks() {
        let links = tree(["up": ".", "z": "up/.."])
        #expect(links.escapes(linkAt: bytes("z"), target: bytes("up/..")))
        var fixed = links
        fixed.remove(linkAt: bytes("up"))
        #expect(!fixed.escapes(linkAt: bytes("z"), target: bytes("up/..")))
    }

    @Test func loopsReachNothingAndCountAsInside() {
        let links = tree(["a": "b", "b": "a"])
        #expect(!links.escapes(linkAt: bytes("a"), target: bytes("b")))
        #expect(links.escaping().isEmpty)
    }

    @Test func namesNeedNotBeUTF8() {
        let name: [UInt8] = [0x62, 0xFF, 0xFE]
        var links = SymlinkContainment()
        links.add(linkAt: name, target: bytes("../../x"))
        #expect(links.isLink(name))
        #expect(links.escapes(linkAt: name, target: bytes("../../x")))
    }
}
