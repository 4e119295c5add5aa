public import ArgumentParser
internal import Logging

/// The options every Knit daemon takes the same way (`knitd`, `knit-scheduler`): `@OptionGroup var daemon`.
public struct DaemonOptions: ParsableArguments {
    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    public var logLevel: String = "info"

    public init() {}

    public func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("unknown --log-level '\(logLevel)'")
        }
    }

    /// Logs go to standard error, one line each (systemd's journal or the supervisor's log file takes them),
    /// at the chosen level. Call once, first thing in `run()`.
    public func bootstrapLogging() {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
