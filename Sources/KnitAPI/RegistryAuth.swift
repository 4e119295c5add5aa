import KnitCore

/// `GET /api/auth/registry`: the yes/no that nginx's `auth_request` asks before it proxies a request to the
/// image registry (`/v2/…`, Debian's `docker-registry`, which has no authentication of its own).
///
/// nginx sends the original request's headers (so `Authorization`, Bearer or Basic with the token as password,
/// as `docker login` / `podman login` send it) and its method as `X-Original-Method`; nginx's own
/// `fastcgi_param HTTP_X_ORIGINAL_METHOD` replaces any such header a client sent, so a caller cannot claim to be
/// reading while pushing. Called directly (through `/api/`) without that header it answers for a read.
///
/// Answers 204 when the caller may do that method, 401 for a missing or unknown token, 403 when a reader tries
/// to write. Reads (GET, HEAD) are open to every role; anything else (POST, PUT, PATCH, DELETE: blob uploads,
/// manifest pushes, deletes) needs a role that may write. The check is per installation, not per repository:
/// Knit has no image ownership, as it has none for Data.
extension KnitAPI {
    func registryAuthorization(_ request: APIRequest, caller: Caller) throws -> APIResponse {
        let method = (request.header("x-original-method") ?? "GET").uppercased()
        switch method {
        case "GET", "HEAD":
            break
        case "POST", "PUT", "PATCH", "DELETE":
            guard caller.role.canWrite else {
                throw KnitAPIError(
                    status: 403,
                    reason: "your role (\(caller.role.rawValue)) may pull images but not push or delete them"
                )
            }
        default:
            // OPTIONS, TRACE and anything new: the registry API needs none of them.
            throw KnitAPIError(status: 403, reason: "method \(method) is not allowed on the image registry")
        }
        return APIResponse(status: 204)
    }
}
