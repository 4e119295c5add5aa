import Logging

/// The log handler of one request: the server's handler, plus the request's id, method and path on every line
/// the request logs.
///
/// Those three go into a line only when one is written. Setting them as the handler's metadata instead made
/// swift-log's stream handler render all its metadata once per request (~2 % of knitd's CPU per tag query),
/// although at the default level hardly any request logs a line. Lines come out the same: a line's own
/// metadata wins over the request's, which wins over the server handler's.
struct RequestLogHandler: LogHandler {
    var base: any LogHandler
    let id: String
    let method: String
    let path: String

    func log(event: LogEvent) {
        var event = event
        var metadata: Logger.Metadata = [
            "request.id": "\(id)", "request.method": "\(method)", "request.path": "\(path)",
        ]
        if let own = event.metadata { metadata.merge(own) { _, own in own } }
        event.metadata = metadata
        base.log(event: event)
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { requestMetadata[key] ?? base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    var metadata: Logger.Metadata {
        get { base.metadata.merging(requestMetadata) { _, request in request } }
        set { base.metadata = newValue }
    }

    var logLevel: Logger.Level {
        get { base.logLevel }
        set { base.logLevel = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { base.metadataProvider }
        set { base.metadataProvider = newValue }
    }

    private var requestMetadata: Logger.Metadata {
        ["request.id": "\(id)", "request.method": "\(method)", "request.path": "\(path)"]
    }
}
