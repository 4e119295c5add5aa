internal import CKnitArchive

#if canImport(Glibc)
    internal import Glibc
#endif

/// Writes arbitrary entries, names taken verbatim: the hostile archives the extraction tests need (`../evil`,
/// absolute names, devices, links out of the tree). Package-internal: no product code should build archives
/// entry by entry.
package struct ArchiveBuilder {
    package enum Entry {
        case file(String, [UInt8], mode: UInt32 = 0o644)
        case directory(String, mode: UInt32 = 0o755)
        case symlink(String, target: String)
        case hardlink(String, target: String)
        case characterDevice(String)
        case fifo(String)
    }

    package var format: ArchiveFormat
    package var entries: [Entry] = []

    package init(format: ArchiveFormat = .tar, entries: [Entry] = []) {
        self.format = format
        self.entries = entries
    }

    /// The archive bytes.
    package func build() throws(ArchiveError) -> [UInt8] {
        try withUTF8Locale { () throws(ArchiveError) -> [UInt8] in
            var output: [UInt8] = []
            try withoutActuallyEscaping({ (chunk: UnsafeRawBufferPointer) in output.append(contentsOf: chunk) }) {
                (collect) throws(ArchiveError) in
                let writer = try ArchiveWriter(format: format, compressionLevel: nil, sink: WriteSink(write: collect))
                for entry in entries { try writer.addRaw(entry) }
                try writer.finish()
            }
            return output
        }
    }
}

extension ArchiveWriter {
    fileprivate func addRaw(_ spec: ArchiveBuilder.Entry) throws(ArchiveError) {
        guard let entry = archive_entry_new() else {
            throw ArchiveError(code: .io, message: "archive: out of memory creating an entry")
        }
        defer { archive_entry_free(entry) }
        archive_entry_set_mtime(entry, 1_700_000_000, 0)
        var data: [UInt8] = []
        switch spec {
        case .file(let name, let bytes, let mode):
            archive_entry_copy_pathname(entry, name)
            archive_entry_set_filetype(entry, typeRegular)
            archive_entry_set_perm(entry, mode)
            archive_entry_set_size(entry, la_int64_t(bytes.count))
            data = bytes
        case .directory(let name, let mode):
            archive_entry_copy_pathname(entry, name)
            archive_entry_set_filetype(entry, typeDirectory)
            archive_entry_set_perm(entry, mode)
        case .symlink(let name, let target):
            archive_entry_copy_pathname(entry, name)
            archive_entry_set_filetype(entry, typeSymlink)
            archive_entry_set_perm(entry, 0o777)
            archive_entry_copy_symlink(entry, target)
        case .hardlink(let name, let target):
            archive_entry_copy_pathname(entry, name)
            archive_entry_set_filetype(entry, typeRegular)
            archive_entry_set_perm(entry, 0o644)
            archive_entry_copy_hardlink(entry, target)
        case .characterDevice(let name):
            archive_entry_copy_pathname(entry, name)
            archive_entry_set_filetype(entry, typeCharDevice)
            archive_entry_set_perm(entry, 0o666)
            archive_entry_set_rdevmajor(entry, 1)
            archive_entry_set_rdevminor(entry, 3)
        case .fifo(let name):
            archive_entry_copy_pathname(entry, name)
            archive_entry_set_filetype(entry, typeFifo)
            archive_entry_set_perm(entry, 0o644)
        }
        if archive_write_header(handle, entry) < ARCHIVE_WARN {
            throw ArchiveError(code: .io, message: "archive: cannot write a test header: \(archiveMessage(handle))")
        }
        if !data.isEmpty, archive_write_data(handle, data, data.count) < 0 {
            throw ArchiveError(code: .io, message: "archive: cannot write test data: \(archiveMessage(handle))")
        }
    }
}

extension ArchiveBuilder {
    /// Entry names of an archive in order, as stored (for tests of the writer's naming and ordering).
    package static func entryNames(of archive: [UInt8]) throws(ArchiveError) -> [String] {
        try withUTF8Locale { () throws(ArchiveError) -> [String] in
            guard let reader = archive_read_new() else {
                throw ArchiveError(code: .io, message: "archive: out of memory creating a reader")
            }
            defer { archive_read_free(reader) }
            archive_read_support_filter_gzip(reader)
            archive_read_support_filter_zstd(reader)
            archive_read_support_format_tar(reader)
            let opened = archive.withUnsafeBytes { archive_read_open_memory(reader, $0.baseAddress, $0.count) }
            if opened != ARCHIVE_OK {
                throw ArchiveError(code: .corrupt, message: "archive: \(archiveMessage(reader))")
            }
            var names: [String] = []
            var entry: OpaquePointer?
            while true {
                let status = archive_read_next_header(reader, &entry)
                if status == ARCHIVE_EOF { return names }
                guard status >= ARCHIVE_WARN, let entry, let name = archive_entry_pathname(entry) else {
                    throw ArchiveError(code: .corrupt, message: "archive: \(archiveMessage(reader))")
                }
                names.append(String(cString: name))
            }
        }
    }
}
