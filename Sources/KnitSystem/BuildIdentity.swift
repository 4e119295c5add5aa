internal import Glibc

/// The GNU build id of the running executable (the linker's `.note.gnu.build-id`), as lowercase hex.
///
/// The linker derives it from the linked output, so two different builds of a program get different ids and
/// an administrator can tell which binary answers after an upgrade. Read through `/proc/self/exe`, which is the
/// file this process runs even after an upgrade replaced the one at its path. nil when there is no such note.
public enum BuildIdentity {
    public static let current: String? = read(path: "/proc/self/exe")

    /// The build id of the 64-bit little-endian ELF file at `path`.
    public static func read(path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        func bytes(_ count: Int, at offset: Int) -> [UInt8]? {
            guard count > 0, count <= 1 << 20 else { return nil }
            var buffer = [UInt8](repeating: 0, count: count)
            let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            return got == count ? buffer : nil
        }
        // ELFCLASS64, ELFDATA2LSB: the only kind Knit is built as.
        guard let header = bytes(64, at: 0), header[0..<4] == [0x7f, 0x45, 0x4c, 0x46], header[4] == 2,
            header[5] == 1
        else { return nil }
        let programHeaders = Int(header.integer(at: 32, size: 8))
        let entrySize = Int(header.integer(at: 54, size: 2))
        let entries = Int(header.integer(at: 56, size: 2))
        for index in 0..<entries {
            guard let entry = bytes(entrySize, at: programHeaders + index * entrySize), entry.count >= 56,
                entry.integer(at: 0, size: 4) == 4  // PT_NOTE
            else { continue }
            guard let notes = bytes(Int(entry.integer(at: 32, size: 8)), at: Int(entry.integer(at: 8, size: 8))) else {
                continue
            }
            if let id = buildId(inNotes: notes) { return id }
        }
        return nil
    }

    /// Each note: name size, descriptor size, type (4 bytes each), then name and descriptor, each 4-aligned.
    private static func buildId(inNotes notes: [UInt8]) -> String? {
        var offset = 0
        while offset + 12 <= notes.count {
            let nameSize = Int(notes.integer(at: offset, size: 4))
            let descriptorSize = Int(notes.integer(at: offset + 4, size: 4))
            let type = notes.integer(at: offset + 8, size: 4)
            let descriptorStart = offset + 12 + ((nameSize + 3) & ~3)
            guard descriptorStart + descriptorSize <= notes.count else { return nil }
            // NT_GNU_BUILD_ID (3), owner "GNU".
            if type == 3, notes[(offset + 12)..<(offset + 12 + nameSize)].elementsEqual(Array("GNU\0".utf8)) {
                let digits = Array("0123456789abcdef".utf8)
                var hex: [UInt8] = []
                for byte in notes[descriptorStart..<(descriptorStart + descriptorSize)] {
                    hex.append(digits[Int(byte >> 4)])
                    hex.append(digits[Int(byte & 0xf)])
                }
                return String(decoding: hex, as: UTF8.self)
            }
            offset = descriptorStart + ((descriptorSize + 3) & ~3)
        }
        return nil
    }
}

extension Array where Element == UInt8 {
    /// The little-endian unsigned integer of `size` bytes at `offset`.
    fileprivate func integer(at offset: Int, size: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in stride(from: size - 1, through: 0, by: -1) { value = value << 8 | UInt64(self[offset + index]) }
        return value
    }
}
