#!/usr/bin/env bash
# Tag queries over 1,000,000 Data: in-process KnitStore.findData latency, then GET /api/data?tag=…
# through nginx (TLS) + knitd against nginx answering `return 200` in the same server block, and against
# GET /api/health (the FastCGI round trip alone).
# Targets: in-process p50 <= 50 µs; API req/s >= 60 % of the static location.
# Environment: KNIT_BENCH_COUNT (1000000), KNIT_BENCH_SHARDS (100000; count/shards Data per tag),
# KNIT_BENCH_QUERIES (20000), KNIT_BENCH_WRK_SECONDS (10), KNIT_BENCH_RUNS (3), KNIT_BENCH_NO_BUILD=1.
source "$(dirname "$0")/lib.sh"

COUNT=${KNIT_BENCH_COUNT:-1000000}
SHARDS=${KNIT_BENCH_SHARDS:-100000}
QUERIES=${KNIT_BENCH_QUERIES:-20000}
SECONDS_PER_RUN=${KNIT_BENCH_WRK_SECONDS:-10}
RUNS=${KNIT_BENCH_RUNS:-3}

build_products knitd knitadm
build_bench_helper

ROOT=$(mktemp -d /tmp/knit-bench-query.XXXXXX)
trap 'stop_started; rm -rf "$ROOT"' EXIT

init_instance "$ROOT"
log "loading $COUNT Data (shard:<i % $SHARDS>, batch:<i / 1000>)"
"$BENCH_BIN/knit-bench-store" load --home "$HOME_DIR" --count "$COUNT" --shards "$SHARDS" | tee "$ROOT/load.txt"

# key=value lines -> value of KEY in FILE
value() { tr ' ' '\n' <"$2" | sed -n "s/^$1=//p"; }

declare -A inproc
for run in $(seq "$RUNS"); do
    "$BENCH_BIN/knit-bench-store" query --home "$HOME_DIR" --count "$COUNT" --shards "$SHARDS" \
        --queries "$QUERIES" --seed "$run" >"$ROOT/query-$run.txt"
    for key in hit_p50_us hit_p90_us hit_p99_us hit_results miss_p50_us pair_p50_us pair_p99_us; do
        inproc[$key]+="$(value "$key" "$ROOT/query-$run.txt") "
    done
    log "in-process run $run: $(tr '\n' ' ' <"$ROOT/query-$run.txt")"
done

start_instance "$ROOT"
export KNIT_BENCH_TOKEN=$TOKEN KNIT_BENCH_SHARDS=$SHARDS
status=$(curl -s -o "$ROOT/one.json" -w '%{http_code}' --cacert "$ROOT/tls/ca.crt" \
    -H "Authorization: Bearer $TOKEN" "$API/data?tag=shard%3A7")
log "sample query: HTTP $status, $(wc -c <"$ROOT/one.json") bytes"
[ "$status" = 200 ] || { log "API query failed: $(cat "$ROOT/one.json")"; exit 1; }

wrk_rps() { # PATHKIND SECONDS -> req/s; non-2xx responses are reported on stderr
    local out
    out=$(KNIT_BENCH_PATH=$1 wrk -t2 -c32 -d"$2"s --latency -s "$BENCH_DIR/wrk/find.lua" "https://127.0.0.1:$PORT")
    if grep -q 'Non-2xx' <<<"$out"; then log "wrk $1: $(grep 'Non-2xx' <<<"$out")"; fi
    log "wrk $1: $(grep -E 'Requests/sec|^ +50%|^ +99%' <<<"$out" | tr -s ' ' | tr '\n' ' ')"
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}

wrk_rps api 2 >/dev/null # warm the page cache and nginx's TLS session cache
api_runs=() static_runs=() health_runs=()
for run in $(seq "$RUNS"); do
    api_runs+=("$(wrk_rps api "$SECONDS_PER_RUN")")
    static_runs+=("$(wrk_rps static "$SECONDS_PER_RUN")")
    health_runs+=("$(wrk_rps health "$SECONDS_PER_RUN")")
done

p50=$(median ${inproc[hit_p50_us]})
miss=$(median ${inproc[miss_p50_us]})
api=$(median "${api_runs[@]}")
static=$(median "${static_runs[@]}")
health=$(median "${health_runs[@]}")
cat <<EOF

== query.sh: $COUNT Data, $SHARDS shards ($(median ${inproc[hit_results]}) Data per tag), medians of $RUNS runs ==
in-process findData, one tag ($QUERIES random queries per run):
  hit   p50 $p50 µs   p90 $(median ${inproc[hit_p90_us]}) µs   p99 $(median ${inproc[hit_p99_us]}) µs   (target p50 <= 50 µs; p50 is $(ratio "$p50" 50) of it)
  baseline: absent tag (read txn + index probe only) p50 $miss µs; hit costs $(awk -v a="$p50" -v b="$miss" 'BEGIN{printf "%.0f", a/b}')x the bare lookup
  two tags (shard + batch, 1 result) p50 $(median ${inproc[pair_p50_us]}) µs   p99 $(median ${inproc[pair_p99_us]}) µs
HTTP (wrk -t2 -c32 -d${SECONDS_PER_RUN}s, TLS, one nginx; runs: api ${api_runs[*]} / static ${static_runs[*]} / health ${health_runs[*]}):
  GET /api/data?tag=shard:N   $api req/s
  GET /static200 (return 200) $static req/s
  ratio api/static            $(ratio "$api" "$static")   (target >= 60 %)
  floor: GET /api/health      $health req/s = $(ratio "$health" "$static") of static (FastCGI round trip, no query)
  ratio api/health            $(ratio "$api" "$health")
EOF
