import KnitAPI
import KnitCore
import KnitStore
import KnitTestSupport
import Logging
import Synchronization
import Testing

/// The request's id, method and path reach every line a request logs, yet a request that logs nothing never
/// touches the server's handler: swift-log's stream handler renders its metadata again on each change, which
/// cost knitd ~2 % of its CPU per tag query when it happened for every request.
struct RequestLogHandlerTests {
    @Test func aRequestThatLogsNothingLeavesTheHandlersMetadataAloneAndOneThatLogsCarriesTheRequest() throws {
        let home = scratchDirectory("knit-api-log-")
        defer { _ = run(["rm", "-rf", home]) }
        let store = try KnitStore(home: home, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        defer { store.close() }
        let reader = try store.addUser(name: "rita", role: .reader)
        let recorder = MetadataRecorder()
        var logger = Logger(label: "test", factory: { _ in RecordingHandler(recorder: recorder) })
        logger[metadataKey: "server"] = "knitd"
        let api = KnitAPI(store: store, logger: logger)
        let setsBefore = recorder.metadataSets

        for uri in ["/api/health", "/api/data?tag=a%3Ab"] {
            let request = try #require(
                APIRequest(method: "GET", uri: uri, headers: ["authorization": "Bearer \(reader)"])
            )
            #expect(api.handle(request) { _ in 0 }.status == 200)
        }
        #expect(recorder.metadataSets == setsBefore)
        #expect(recorder.lines.isEmpty)

        // A reader may not change tags: the refusal is audited, and the audit line has the request's fields (a
        // token pasted into the path redacted), its own and the server handler's.
        var refused = try #require(
            APIRequest(method: "PUT", uri: "/api/data/\(reader)", headers: ["authorization": "Bearer \(reader)"])
        )
        refused.requestID = "req-7"
        #expect(api.handle(refused) { _ in 0 }.status == 403)
        let audit = try #require(recorder.lines.first { $0.message == "audit" })
        #expect(audit.metadata["request.id"] == "req-7")
        #expect(audit.metadata["request.method"] == "PUT")
        #expect(audit.metadata["request.path"] == "/api/data/knit_[redacted]")
        #expect(audit.metadata["audit.outcome"] == "denied")
        #expect(audit.metadata["server"] == "knitd")
        #expect(recorder.lines.allSatisfy { !$0.metadata.values.contains { $0.contains(reader) } })
        #expect(recorder.metadataSets == setsBefore)
    }
}

private final class MetadataRecorder: Sendable {
    private let state = Mutex((sets: 0, lines: [(message: String, metadata: [String: String])]()))

    var metadataSets: Int { state.withLock { $0.sets } }
    var lines: [(message: String, metadata: [String: String])] { state.withLock { $0.lines } }

    func metadataWasSet() { state.withLock { $0.sets += 1 } }
    func append(_ message: String, _ metadata: [String: String]) {
        state.withLock { $0.lines.append((message, metadata)) }
    }
}

/// Counts changes of its metadata, as the stream handler pays for each with a rendering.
private struct RecordingHandler: LogHandler {
    let recorder: MetadataRecorder
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:] {
        didSet { recorder.metadataWasSet() }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        recorder.append("\(event.message)", merged.mapValues { "\($0)" })
    }
}
