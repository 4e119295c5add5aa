/// The ASCII bytes `trimmed(_:)` removes from both ends of a text.
public struct ASCIIBlanks: Sendable {
    let bytes: [UInt8]

    /// Space and tab: the blanks around HTTP header values and list items.
    public static let spaceAndTab = ASCIIBlanks(bytes: [0x20, 0x09])
    /// Space, tab and carriage return: a header line read without its CR stripped.
    public static let spaceTabAndReturn = ASCIIBlanks(bytes: [0x20, 0x09, 0x0D])

    func contains(_ character: Character) -> Bool {
        guard let ascii = character.asciiValue else { return false }
        return bytes.contains(ascii)
    }
}

extension StringProtocol {
    /// This text without the leading and trailing `blanks`. ASCII only: protocol text is ASCII, and a
    /// non-ASCII space in it is content, not padding.
    public func trimmed(_ blanks: ASCIIBlanks = .spaceAndTab) -> String {
        var text = self[...]
        while let first = text.first, blanks.contains(first) { text.removeFirst() }
        while let last = text.last, blanks.contains(last) { text.removeLast() }
        return String(text)
    }
}
