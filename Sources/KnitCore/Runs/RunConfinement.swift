/// What every executor gives a Run alike, so a Run has the same name and the same rights on podman and on
/// Kubernetes.
public enum RunConfinement {
    /// Capabilities a Run's container keeps after dropping all: what ordinary images need to install and drop
    /// to their own users and write their files as root (CHOWN, DAC_OVERRIDE, FOWNER, SETUID, SETGID), signal
    /// their own processes (KILL) and bind low ports on their loopback (NET_BIND_SERVICE).
    public static let keptCapabilities = [
        "CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL", "NET_BIND_SERVICE",
    ]

    /// The name of a Run's worker (container or Job): `knit-run-<runId>`.
    public static func workerName(runId: String) -> String { "knit-run-" + runId }
}
