import KnitCore
import KnitStore
import KnitSystem

#if canImport(Glibc)
    import Glibc
#endif

// `/api/runs…` (routes in Routes.swift): the read side (find, show, log), the user's stop requests (abort,
// tear-off), retry and delete.

extension KnitAPI {
    // MARK: GET /api/runs/{id}

    func showRun(runId: String) throws -> APIResponse {
        .json(try storeCall { () throws(StoreError) in try store.runDetail(runId: runId) })
    }

    // MARK: GET /api/runs/{id}/log

    /// The Run's log (the file `log` of its log Data), as text. With `follow` while the Run is starting or
    /// running, the stream goes on as the container writes and ends when the Run finishes, or as soon as
    /// the client is gone; a follower holds a slot of the log-stream pool (never a transfer slot). 404 when
    /// the plan has no log; 503 before the Run starts.
    func runLog(runId: String, follow: Bool, caller: Caller) throws -> APIResponse {
        let store = self.store
        let run = try storeCall { () throws(StoreError) in try store.runDetail(runId: runId) }
        guard let log = run.log else { throw KnitAPIError.notFound("run \(runId) has no log: its plan has none") }
        let status = RunStatus(rawValue: run.status)
        if status == .deactivated || status == .waiting || status == .ready {
            throw KnitAPIError(status: 503, reason: "the run has not started yet", advice: "retry once it is running")
        }
        let live = follow && (status == .starting || status == .running)
        let slot = live ? try logFollowers.acquire(user: caller.name) : nil
        let path = store.dataDirectory(knitId: log.knitId) + "/log"
        var headers = [("Content-Type", "text/plain; charset=utf-8")]
        // nginx must pass a followed log on at once instead of filling its buffers first.
        if live { headers.append(("X-Accel-Buffering", "no")) }
        return APIResponse(
            status: 200,
            headers: headers,
            body: .stream { sink in
                try withExtendedLifetime(slot) {
                    try streamFile(path, to: sink) {
                        guard live else { return false }
                        let current = (try? store.runDetail(runId: runId)).flatMap { RunStatus(rawValue: $0.status) }
                        return current == .starting || current == .running
                    }
                }
            }
        )
    }

    // MARK: PUT /api/runs/{id}/abort, /tearoff

    /// Abort (`fail`) or tear-off: 200 with the Run Detail; 404 for an unknown Run; 409 "prohibited
    /// operation" (advice: what the status allows) for an illegal transition.
    func stopRun(runId: String, fail: Bool) throws -> APIResponse {
        .json(try storeCall { () throws(StoreError) in try store.requestStop(runId: runId, fail: fail) })
    }

    // MARK: PUT /api/runs/{id}/retry, DELETE /api/runs/{id}

    /// Retry: 200 with the Run Detail (now waiting, with new output knitIds). Knitfab answers an empty 200
    /// although its API types document the Run Detail (quirk 11); the detail saves clients a second call and
    /// a Knitfab client ignores the body. 404 for an unknown or deleted Run; 409 when it is not finished, is
    /// an upload, or its outputs are in use.
    func retryRun(runId: String) throws -> APIResponse {
        let detail = try storeCall { () throws(StoreError) in try store.retryRun(runId: runId) }
        var response = APIResponse.json(detail)
        response.createdIds = detail.outputs.map(\.knitId) + (detail.log.map { [$0.knitId] } ?? [])
        return response
    }

    /// Delete: 204 without a body, as Knitfab. 404 for an unknown or already deleted Run; 409 "output of
    /// the run is in use" while live Runs consume its outputs, or when it has not finished.
    func deleteRun(runId: String) throws -> APIResponse {
        _ = try storeCall { () throws(StoreError) in try store.removeRun(runId: runId) }
        return APIResponse(status: 204)
    }

    // MARK: GET /api/runs

    /// `plan`, `knitIdInput`, `knitIdOutput`, `status`: comma lists (a parameter may also repeat), OR within
    /// a list and AND across; `since` (RFC 3339) and `duration` (Go syntax, needs `since`) on updatedAt;
    /// `creator` (Knit's addition) the Run's owner.
    func findRuns(_ request: APIRequest) throws -> APIResponse {
        func list(_ name: String) -> [String] {
            request.queryValues(name).flatMap { $0.split(separator: ",") }.map { $0.trimmed() }
                .filter { !$0.isEmpty }
        }
        var statuses: [RunStatus] = []
        for text in list("status") {
            guard let status = RunStatus(rawValue: text), status != .invalidated else {
                throw KnitAPIError.badRequest(
                    "query specification is incorrect",
                    advice: "unknown status '\(text)'; use "
                        + RunStatus.allCases.filter { $0 != .invalidated }.map(\.rawValue).joined(separator: ", ")
                )
            }
            statuses.append(status)
        }
        let (since, durationMs) = try timeWindow(request)
        let planIds = list("plan")
        let inputs = list("knitIdInput")
        let outputs = list("knitIdOutput")
        let creator = request.creatorFilter
        let found = try storeCall { () throws(StoreError) in
            try store.findRuns(
                planIds: planIds,
                inputKnitIds: inputs,
                outputKnitIds: outputs,
                statuses: statuses,
                since: since,
                durationMs: durationMs,
                creator: creator
            )
        }
        return .json(found)
    }
}

/// Sends the file at `path` to `sink`; at its end, while `stillWriting()` says the writer is busy, waits
/// for more. The last pass after the writer finished picks up what it wrote in between. A file that does
/// not exist (nothing written yet) streams as empty.
private func streamFile(
    _ path: String,
    to sink: APIResponse.Sink,
    stillWriting: () -> Bool
) throws {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 64 << 10)
    var finalPass = false
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count > 0 {
            try buffer.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            continue
        }
        if finalPass || count < 0 { return }
        if stillWriting() {
            // Nothing new to send, so no write would notice a client that left: ask the transport.
            try sink(UnsafeRawBufferPointer(start: nil, count: 0))
            usleep(200_000)
        } else {
            finalPass = true
        }
    }
}
