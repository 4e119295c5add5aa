/// Where everything of one Knit instance lives under its home (`KNIT_HOME`, `/var/lib/knit` by default).
///
/// Pure path arithmetic, so that knitd, knit-scheduler, the store, the installer's tests and the test harness
/// spell each path once. The installer (shell) and the systemd units use the same names.
public struct InstanceLayout: Sendable, Equatable {
    public let home: String

    public init(home: String) { self.home = home }

    /// The LMDB environment.
    public var database: String { home + "/db" }
    /// Finished Data, one directory per knitId.
    public var data: String { home + "/data" }
    /// Uploads in progress, renamed into ``data`` when complete.
    public var staging: String { home + "/staging" }
    /// Sockets and pid files.
    public var run: String { home + "/run" }
    /// knitd's FastCGI socket (nginx connects to it).
    public var knitdSocket: String { run + "/knitd.sock" }
    /// The scheduler's wake-up datagram socket (knitd rings it after every change).
    public var schedulerSocket: String { run + "/scheduler.sock" }
    /// The image registry's socket directory and socket (only nginx's group may enter).
    public var registrySocketDirectory: String { run + "/registry" }
    public var registrySocket: String { registrySocketDirectory + "/registry.sock" }
    /// The registry's storage.
    public var registryStorage: String { home + "/registry" }
    /// The executor's working files (container ids, pull state).
    public var executor: String { home + "/executor" }

    /// `data/<knitId>`: the content of one Data.
    public func dataDirectory(knitId: String) -> String { data + "/" + knitId }
    /// `staging/<knitId>`: an upload in progress.
    public func stagingDirectory(knitId: String) -> String { staging + "/" + knitId }
}
