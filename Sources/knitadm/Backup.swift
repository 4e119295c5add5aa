import ArgumentParser
import KnitStore

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Back the store up into DIR while knitd and the scheduler serve; print a JSON report.",
        discussion: """
            DIR keeps one complete backup: a compacted LMDB snapshot, the directories of the Data it records \
            and the image registry's storage (hard links into the home where the file system allows). Run it again to refresh it: only \
            what DIR lacks is copied, and an interrupted run (even kill -9) leaves the previous backup whole.
            """
    )
    @ParentCommand var root: Knitadm
    var home: HomeOption { root.home }
    @Argument(help: "Backup directory (created when absent).")
    var directory: String

    func run() throws {
        let store = try home.openStore()
        defer { store.close() }
        let report = try audited("backup \(directory)") { () throws(StoreError) in
            try store.backup(to: directory)
        }
        if !report.missing.isEmpty {
            printError("knitadm: \(report.missing.count) Data have no directory in the store; see knitadm fsck")
        }
        printJSON(report)
    }
}

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore the backup in DIR into a home no process has open; print a JSON report.",
        discussion: """
            Every Data directory is checked against the fingerprint taken at backup time before the home is \
            touched (registry blobs against their digests). The home's previous db/, data/, staging/ and \
            registry/ are moved into HOME/pre-restore-<time>/, never deleted. Refused while knitd, knit-scheduler or another knitadm has the home's store open.
            """
    )
    @ParentCommand var root: Knitadm
    @Argument(help: "Backup directory written by `knitadm backup`.")
    var directory: String
    @Option(name: .customLong("home"), help: "Home to restore into (default: knitadm's --home, $KNIT_HOME…).")
    var target: String?

    func run() throws {
        let home = target ?? root.home.resolved
        let report = try audited("restore \(directory) --home \(home)") { () throws(StoreError) in
            try KnitStore.restore(from: directory, into: home)
        }
        printJSON(report)
    }
}

struct Fsck: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare Data records with Data directories; print a JSON report, exit 2 when problems were found.",
        discussion: """
            Reports Data of ended Runs whose directory is gone and directories under data/ that no record (or \
            pending deletion) explains, and users whose kept usage (bytes, Data count) differs from a recount of \
            their Data records. --repair deletes the directories (through the store's garbage list, like a \
            deleted Data) and rewrites the kept usage from the recount; it never changes a Data or Run record: a \
            Data without its directory is for an admin to restore from a backup, or to retry or delete its Run.
            """
    )
    @ParentCommand var root: Knitadm
    var home: HomeOption { root.home }
    @Flag(help: "Delete directories without records and rewrite kept usage that differs from a recount.")
    var repair = false

    func run() throws {
        let store = try home.openStore()
        defer { store.close() }
        var report = try fail { () throws(StoreError) in try store.checkConsistency() }
        report.usageMismatches = try fail { () throws(StoreError) in try store.checkUsage(repair: false) }
        let found =
            report.recordsWithoutDirectory.count + report.directoriesWithoutRecord.count
            + report.usageMismatches.count
        if repair, !report.usageMismatches.isEmpty {
            // Recounted again inside the rewriting transaction, so uploads since the check are not lost.
            report.usageMismatches = try audited("fsck --repair usage") { () throws(StoreError) in
                try store.checkUsage(repair: true)
            }
            report.usageRewritten = true
        }
        if repair, !report.directoriesWithoutRecord.isEmpty {
            let orphans = report.directoriesWithoutRecord
            report.removedDirectories = try audited("fsck --repair") { () throws(StoreError) in
                try store.repairOrphanDirectories(orphans)
            }
        }
        printJSON(report)
        if found > 0 { throw ExitCode(2) }
    }
}
