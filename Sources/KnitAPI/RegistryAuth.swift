import KnitCore
import KnitStore
import Logging

/// `GET /api/auth/registry`: the yes/no that nginx's `auth_request` asks before it proxies a request to the
/// image registry (`/v2/…`, Debian's `docker-registry`, which has no authentication of its own).
///
/// nginx sends the original request's headers (so `Authorization`, Bearer or Basic with the token as password,
/// as `docker login` / `podman login` send it) and its method as `X-Original-Method`; nginx's own
/// `fastcgi_param HTTP_X_ORIGINAL_METHOD` replaces any such header a client sent, so a caller cannot claim to be
/// reading while pushing. Called directly (through `/api/`) without that header it answers for a read.
///
/// Answers 204 when the caller may do that method, 401 for a missing or unknown token, 403 otherwise. Reads
/// (GET, HEAD) are open to every role. Writes (POST, PUT, PATCH, DELETE: blob uploads, manifest pushes,
/// deletes) need a role that may write and, as for Data and Plans, ownership: the first user to push to a
/// repository owns it, and only that user or an admin may push to it or delete from it afterwards, so nobody
/// can replace or remove the image another user's Plans run.
extension KnitAPI {
    func registryAuthorization(_ request: APIRequest, caller: Caller, logger: Logger) throws -> APIResponse {
        let method = (request.header("x-original-method") ?? "GET").uppercased()
        switch method {
        case "GET", "HEAD":
            return APIResponse(status: 204)
        case "POST", "PUT", "PATCH", "DELETE":
            break
        default:
            // OPTIONS, TRACE and anything new: the registry API needs none of them.
            throw KnitAPIError(status: 403, reason: "method \(method) is not allowed on the image registry")
        }
        let target = request.header("x-original-uri") ?? ""
        let action = APIRequest(method: method, path: String(target.prefix { $0 != "?" }), query: [], headers: [:])
        guard caller.role.canWrite else {
            audit(caller, action, outcome: "denied", logger: logger)
            throw KnitAPIError(
                status: 403,
                reason: "your role (\(caller.role.rawValue)) may pull images but not push or delete them"
            )
        }
        guard let repository = registryRepository(inPath: action.path) else {
            audit(caller, action, outcome: "denied", logger: logger)
            throw KnitAPIError(status: 403, reason: "\(method) \(action.path) names no image repository")
        }
        let store = self.store
        let owner = try storeCall { () throws(StoreError) in
            try store.claimImageRepository(repository, for: caller.name)
        }
        guard Ownership.mayChange(owner: owner, caller: caller.name, role: caller.role) else {
            audit(caller, action, outcome: "denied", logger: logger)
            throw KnitAPIError(
                status: 403,
                reason:
                    "image repository \(repository) belongs to user '\(owner)'; only its owner or an admin may push to it or delete from it",
                advice: "push under another name, or ask its owner or an administrator"
            )
        }
        audit(caller, action, outcome: "allowed", logger: logger)
        return APIResponse(status: 204)
    }
}

/// The repository name of a registry API path: `/v2/team/train/manifests/1` → `team/train`; nil for paths
/// that name none (`/v2/`, `/v2/_catalog`).
func registryRepository(inPath path: String) -> String? {
    guard path.hasPrefix("/v2/") else { return nil }
    let rest = path.dropFirst(4)
    for marker in ["/blobs/", "/manifests/", "/tags/"] {
        if let range = rest.ranges(of: marker).last {
            let name = String(rest[..<range.lowerBound])
            return name.isEmpty ? nil : name
        }
    }
    return nil
}
