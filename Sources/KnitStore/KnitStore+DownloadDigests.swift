internal import KnitLMDB
internal import Logging

// Downloads are deterministic per Data and archive variant (fixed entry order, owners and mtimes, gzip without a
// timestamp, zstd with fixed parameters), so the MD5 of a variant's byte stream is computed once and sent as the
// `x-checksum-md5` header of every download. The archive writer's version is kept with it: a new libarchive,
// zlib or libzstd may write other bytes, and then the digest is computed again rather than trusted.

extension KnitStore {
    /// The MD5 (hex) recorded for downloads of `knitId` in `variant` by archive writer `writer`; nil when none was
    /// recorded, or one was recorded by another writer version.
    public func downloadDigest(knitId: String, variant: String, writer: String) -> String? {
        let key = Array((knitId + "/" + variant).utf8)
        let stored = try? read("read download digest") { txn in try txn.get(db.downloadDigests, key: key) }
        guard let stored = stored ?? nil else { return nil }
        let text = String(decoding: stored, as: UTF8.self)
        guard let space = text.lastIndex(of: " "), text[..<space] == writer else { return nil }
        return String(text[text.index(after: space)...])
    }

    /// Records the MD5 of `knitId`'s download in `variant` by `writer`. Best effort: a failure is logged and the
    /// digest is computed again next time. Nothing is recorded for a Data that is gone.
    public func recordDownloadDigest(knitId: String, variant: String, writer: String, md5: String) {
        do {
            try write("record download digest") { txn in
                guard try txn.get(db.data, key: Array(knitId.utf8)) != nil else { return }
                try txn.put(
                    db.downloadDigests,
                    key: Array((knitId + "/" + variant).utf8),
                    value: Array((writer + " " + md5).utf8)
                )
            }
        } catch {
            logger.warning(
                "cannot record a download digest",
                metadata: ["data.id": "\(knitId)", "store.error": "\(error)"]
            )
        }
    }

    /// Deletes every digest of `knitId` (its Data is being deleted).
    func dropDownloadDigests(_ txn: borrowing LMDBTransaction, knitId: String) throws {
        let prefix = Array((knitId + "/").utf8)
        var keys: [[UInt8]] = []
        try txn.forEach(db.downloadDigests, prefix: prefix) { key, _ in
            keys.append(Array(key))
            return true
        }
        for key in keys { try txn.delete(db.downloadDigests, key: key) }
    }
}
