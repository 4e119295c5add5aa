-- wrk script for bench/query.sh. KNIT_BENCH_PATH=api asks GET /api/data?tag=shard:<random>;
-- KNIT_BENCH_PATH=static asks nginx's /static200; KNIT_BENCH_PATH=health asks knitd's /api/health (FastCGI
-- round trip without a store query or JSON of Data); KNIT_BENCH_PATH=ceiling asks /ceiling, the minimal C
-- FastCGI responder (bench/ceiling), with a query string like the API's. KNIT_BENCH_PATH=pair (bench/scale.sh) asks
-- GET /api/data?tag=shard:<i % shards>&tag=batch:<i / 1000> for a random i below KNIT_BENCH_COUNT: one Data.
-- All carry the same Authorization header.
local token = os.getenv("KNIT_BENCH_TOKEN") or ""
local shards = tonumber(os.getenv("KNIT_BENCH_SHARDS") or "100000")
local kind = os.getenv("KNIT_BENCH_PATH") or "api"
local count = tonumber(os.getenv("KNIT_BENCH_COUNT") or "1000000")
local headers = { ["Authorization"] = "Bearer " .. token }
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("seed", counter * 7919)
end

function init(args)
    math.randomseed(seed or 1)
end

function request()
    if kind == "static" then
        return wrk.format("GET", "/static200", headers)
    elseif kind == "health" then
        return wrk.format("GET", "/api/health", headers)
    elseif kind == "pair" then
        local i = math.random(0, count - 1)
        local query = "tag=shard%3A" .. (i % shards) .. "&tag=batch%3A" .. math.floor(i / 1000)
        return wrk.format("GET", "/api/data?" .. query, headers)
    elseif kind == "ceiling" then
        return wrk.format("GET", "/ceiling?tag=shard%3A" .. math.random(0, shards - 1), headers)
    end
    return wrk.format("GET", "/api/data?tag=shard%3A" .. math.random(0, shards - 1), headers)
end
