import KnitCore
import KnitStore

// `/api/runs…`: the read side (find, show) and the user's stop requests (abort, tear-off). Retry,
// delete and logs come later.

extension KnitAPI {
    /// Routes `segments` (after `api`, starting with `runs`).
    func routeRuns(_ request: APIRequest, segments: [String], caller: Caller) throws -> APIResponse {
        switch (request.method, segments.count) {
        case ("PUT", 3) where segments[2] == "abort" || segments[2] == "tearoff":
            guard caller.role.canWrite else { throw KnitAPIError.forbidden }
            return try stopRun(runId: segments[1], fail: segments[2] == "abort")
        case (_, 3) where segments[2] == "abort" || segments[2] == "tearoff":
            throw KnitAPIError(status: 405, reason: "method \(request.method) is not allowed on \(request.path)")
        case ("GET", 1):
            return try findRuns(request)
        case ("GET", 2):
            let runId = segments[1]
            return .json(try storeCall { () throws(StoreError) in try store.runDetail(runId: runId) })
        case (_, 1), (_, 2):
            throw KnitAPIError(status: 405, reason: "method \(request.method) is not allowed on \(request.path)")
        default:
            throw KnitAPIError.notFound("no such endpoint: \(request.method) \(request.path)")
        }
    }

    // MARK: PUT /api/runs/{id}/abort, /tearoff

    /// Abort (`fail`) or tear-off: 200 with the Run Detail; 404 for an unknown Run; 409 "prohibited
    /// operation" (advice: what the status allows) for an illegal transition.
    func stopRun(runId: String, fail: Bool) throws -> APIResponse {
        do {
            return .json(try store.requestStop(runId: runId, fail: fail))
        } catch {
            let prefix = "prohibited operation: "
            if error.code == .conflict, error.message.hasPrefix(prefix) {
                throw KnitAPIError.conflict(
                    "prohibited operation",
                    advice: String(error.message.dropFirst(prefix.count))
                )
            }
            throw apiError(for: error)
        }
    }

    // MARK: GET /api/runs

    /// `plan`, `knitIdInput`, `knitIdOutput`, `status`: comma lists (a parameter may also repeat), OR within
    /// a list and AND across; `since` (RFC 3339) and `duration` (Go syntax, needs `since`) on updatedAt.
    func findRuns(_ request: APIRequest) throws -> APIResponse {
        func list(_ name: String) -> [String] {
            request.queryValues(name).flatMap { $0.split(separator: ",") }.map { String($0).trimmedSpaces }
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
        let found = try storeCall { () throws(StoreError) in
            try store.findRuns(
                planIds: planIds,
                inputKnitIds: inputs,
                outputKnitIds: outputs,
                statuses: statuses,
                since: since,
                durationMs: durationMs
            )
        }
        return .json(found)
    }
}
