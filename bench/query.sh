#!/usr/bin/env bash
# Tag queries over 1,000,000 Data: in-process KnitStore.findData latency, then GET /api/data?tag=…
# through nginx (TLS) + knitd against, in the same run, behind the same nginx and TLS: the architecture's own
# ceiling (bench/ceiling/fcgi-ceiling.c, a minimal libfcgi responder with knitd's threading model on the same
# kind of unix socket, answering the very bytes of a real query's answer), nginx answering `return 200`,
# and GET /api/health (knitd's FastCGI round trip without a query).
# Targets: in-process p50 <= 50 µs; API req/s >= 85 % of the ceiling and >= 25 % of `return 200`; p50/p99
# latency under KNIT_BENCH_CONNECTIONS (64) concurrent clients reported for each, and knitd's own CPU per request
# (user + system from /proc, so other work on the machine does not count) for the query and for health.
# Environment: KNIT_BENCH_COUNT (1000000), KNIT_BENCH_SHARDS (100000; count/shards Data per tag),
# KNIT_BENCH_QUERIES (20000), KNIT_BENCH_WRK_SECONDS (10), KNIT_BENCH_RUNS (3), KNIT_BENCH_CONNECTIONS (64),
# KNIT_BENCH_NO_BUILD=1.
source "$(dirname "$0")/lib.sh"

COUNT=${KNIT_BENCH_COUNT:-1000000}
SHARDS=${KNIT_BENCH_SHARDS:-100000}
QUERIES=${KNIT_BENCH_QUERIES:-20000}
SECONDS_PER_RUN=${KNIT_BENCH_WRK_SECONDS:-10}
RUNS=${KNIT_BENCH_RUNS:-3}
CONNECTIONS=${KNIT_BENCH_CONNECTIONS:-64}
KNITD_THREADS=48 # as lib.sh starts knitd; the ceiling gets as many

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
    for key in hit_p50_us hit_p90_us hit_p99_us hit_results answer_p50_us answer_p99_us answer_results miss_p50_us pair_p50_us pair_p99_us; do
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

gcc -O2 -o "$ROOT/fcgi-ceiling" "$BENCH_DIR/ceiling/fcgi-ceiling.c" -lfcgi -lpthread
"$ROOT/fcgi-ceiling" "$ROOT/ceiling.sock" "$ROOT/one.json" "$KNITD_THREADS" &
STARTED_PIDS+=("$!")
for _ in $(seq 50); do [ -S "$ROOT/ceiling.sock" ] && break; sleep 0.1; done
cmp -s <(curl -s --cacert "$ROOT/tls/ca.crt" -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$PORT/ceiling") \
    "$ROOT/one.json" || { log "the ceiling responder does not answer the query's bytes"; exit 1; }

# wrk's latency in ms (it prints us, ms or s)
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}'; }

# knitd's user + system CPU so far, in clock ticks (fields 14 and 15 of /proc/PID/stat)
knitd_ticks() { awk '{print $14 + $15}' "/proc/$KNITD_PID/stat"; }
TICKS_PER_SECOND=$(getconf CLK_TCK)

declare -A rps p50ms p99ms cpu_us
wrk_run() { # PATHKIND SECONDS : appends req/s, p50 and p99 (ms) and knitd's CPU µs per request to rps/p50ms/p99ms/cpu_us[PATHKIND]
    local out before
    before=$(knitd_ticks)
    out=$(KNIT_BENCH_PATH=$1 wrk -t2 -c"$CONNECTIONS" -d"$2"s --latency -s "$BENCH_DIR/wrk/find.lua" \
        "https://127.0.0.1:$PORT")
    cpu_us[$1]+="$(awk -v t="$(($(knitd_ticks) - before))" -v hz="$TICKS_PER_SECOND" \
        '/requests in/ {printf "%.0f", t * 1000000 / hz / $1}' <<<"$out") "
    if grep -q 'Non-2xx' <<<"$out"; then log "wrk $1: $(grep 'Non-2xx' <<<"$out")"; fi
    log "wrk $1: $(grep -E 'Requests/sec|^ +50%|^ +99%' <<<"$out" | tr -s ' ' | tr '\n' ' ')"
    rps[$1]+="$(awk '/Requests\/sec/ {print $2}' <<<"$out") "
    p50ms[$1]+="$(awk '$1 == "50%" {print $2}' <<<"$out" | to_ms) "
    p99ms[$1]+="$(awk '$1 == "99%" {print $2}' <<<"$out" | to_ms) "
}

wrk_run api 2 # warm the page cache and nginx's TLS session cache
rps=() p50ms=() p99ms=() cpu_us=()
kinds="api ceiling static health"
for run in $(seq "$RUNS"); do
    for kind in $kinds; do wrk_run "$kind" "$SECONDS_PER_RUN"; done
done

p50=$(median ${inproc[hit_p50_us]})
miss=$(median ${inproc[miss_p50_us]})
api=$(median ${rps[api]})
ceiling=$(median ${rps[ceiling]})
static=$(median ${rps[static]})
health=$(median ${rps[health]})
latency() { echo "p50 $(median ${p50ms[$1]}) ms  p99 $(median ${p99ms[$1]}) ms"; }
cat <<EOF

== query.sh: $COUNT Data, $SHARDS shards ($(median ${inproc[hit_results]}) Data per tag), medians of $RUNS runs ==
in-process findData, one tag ($QUERIES random queries per run):
  hit   p50 $p50 µs   p90 $(median ${inproc[hit_p90_us]}) µs   p99 $(median ${inproc[hit_p99_us]}) µs   (target p50 <= 50 µs; p50 is $(ratio "$p50" 50) of it)
  baseline: absent tag (read txn + index probe only) p50 $miss µs; hit costs $(awk -v a="$p50" -v b="$miss" 'BEGIN{printf "%.0f", a/b}')x the bare lookup
  two tags (shard + batch, 1 result) p50 $(median ${inproc[pair_p50_us]}) µs   p99 $(median ${inproc[pair_p99_us]}) µs
  the answer's bytes as the API writes them (findDataJSON, one tag, $(median ${inproc[answer_results]}) Data) p50 $(median ${inproc[answer_p50_us]}) µs   p99 $(median ${inproc[answer_p99_us]}) µs
HTTP (wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s, TLS, one nginx; req/s runs: api ${rps[api]}/ ceiling ${rps[ceiling]}/ static ${rps[static]}/ health ${rps[health]}):
  GET /api/data?tag=shard:N     $api req/s   $(latency api)
  GET /ceiling (C libfcgi)      $ceiling req/s   $(latency ceiling)   (same $(wc -c <"$ROOT/one.json") bytes, $KNITD_THREADS threads)
  GET /static200 (return 200)   $static req/s   $(latency static)
  GET /api/health (knitd)       $health req/s   $(latency health)
  ratio api/ceiling             $(ratio "$api" "$ceiling")   (target >= 85 %)
  ratio api/static              $(ratio "$api" "$static")   (target >= 25 %)
  ratio ceiling/static          $(ratio "$ceiling" "$static")   (what the FastCGI architecture itself reaches)
  ratio health/ceiling          $(ratio "$health" "$ceiling")   (knitd's own per-request cost, no query)
  knitd CPU per request         query $(median ${cpu_us[api]}) µs, health $(median ${cpu_us[health]}) µs (user + system, /proc)
EOF
