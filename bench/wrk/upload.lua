-- wrk script for bench/scale.sh: every request is a small upload, POST /api/data?tag=scale:push with
-- KNIT_BENCH_BODY (a plain tar file, read once) as its body. Each wrk connection is one client pushing one
-- Data after another, so -c N is N concurrent pushers. Non-2xx answers are counted by wrk and reported.
local token = os.getenv("KNIT_BENCH_TOKEN") or ""
local path = os.getenv("KNIT_BENCH_BODY") or error("KNIT_BENCH_BODY must name a tar file")
local file = assert(io.open(path, "rb"))
local body = file:read("*a")
file:close()
local request_bytes

-- Formatted per thread in init, once wrk has set the Host header (a request without it is answered 400).
function init(args)
    request_bytes = wrk.format("POST", "/api/data?tag=scale%3Apush", {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = "application/x-tar",
    }, body)
end

function request()
    return request_bytes
end
