/// One delivery of an after hook waiting in the store's outbox: the Run Detail JSON of one status change the
/// scheduler made, for one URL. Written in the transaction of the change itself, so a crash between the
/// change and the delivery loses nothing; removed once the URL answered 2xx.
public struct LifecycleEvent: Sendable, Equatable {
    /// The outbox key: increases with every event ever written (never reused), so it orders the events.
    public var sequence: UInt64
    /// The same for every delivery of one event (one per URL); sent as `X-Knit-Event-Id` so a receiver that
    /// got a delivery twice (the sender crashed after the answer, before removing it) can tell.
    public var eventId: String
    public var runId: String
    /// The Run's status after the change (`ready`, `starting`, `running`, `completing`, `aborting`, `done`,
    /// `failed`).
    public var status: String
    public var url: String
    /// The Run Detail JSON after the change, as `GET /api/runs/{id}` shows it.
    public var body: [UInt8]

    public init(sequence: UInt64, eventId: String, runId: String, status: String, url: String, body: [UInt8]) {
        self.sequence = sequence
        self.eventId = eventId
        self.runId = runId
        self.status = status
        self.url = url
        self.body = body
    }
}

/// What the scheduler's hook sender needs from the store (KnitStore conforms; one transaction per call).
public protocol LifecycleOutbox: Sendable {
    /// The oldest `limit` deliveries still owed, by ``LifecycleEvent/sequence``.
    func pendingLifecycleEvents(limit: Int) throws -> [LifecycleEvent]

    /// Removes one delivery once its URL answered 2xx. Returns false when it was gone already.
    func removeLifecycleEvent(sequence: UInt64) throws -> Bool
}
