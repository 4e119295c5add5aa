#!/usr/bin/env bash
# Scale: everything on ONE store of KNIT_BENCH_SCALE_COUNT (10,000,000) Data, tagged as query.sh tags them
# (shard:<i % (count / 10)>, so 10 Data per shard tag, and batch:<i / 1000>). In order:
#   1. bulk ingest rate of the in-process loader (`knit-bench-store load`), then bytes per Data in LMDB (pages in
#      use × page size / Data, the store's statistics = knit_lmdb_map_used_bytes) and on disk (`du` of the home);
#   2. in-process findData p50/p99 by one tag (10 Data) and by two tags (1 Data);
#   3. lineage of a KNIT_BENCH_CHAIN (1,000) deep chain built inside the big store;
#   4. `plan apply` (registration) of KNIT_BENCH_PLANS (10,000) plans and finishUpload with them registered,
#      against the same pushes into the same store before the plans (as plans.sh, but on the big store);
#   5. through knitd + nginx + TLS: GET /api/data by one and by two tags (wrk -c64, short runs);
#   6. one real 1 KiB push (curl, plain tar): what it costs on disk beyond its bytes;
#   7. small concurrent uploads through nginx (wrk, 1 KiB tar bodies, KNIT_BENCH_CLIENTS "1 8 32" clients):
#      Data/s and p50/p99 per push, with a `perf trace -s` of knitd during one extra run at the middle count
#      (where the time of fsync/fdatasync goes);
#   8. the limits: how many such Data the map (64 GiB default) and the free disk hold.
# Nothing is asserted; every figure is printed. The load average is printed next to each phase (the machine
# is shared). Environment: KNIT_BENCH_SCALE_COUNT (10000000), KNIT_BENCH_QUERIES (20000), KNIT_BENCH_PLANS (10000),
# KNIT_BENCH_PUSHES (300), KNIT_BENCH_CHAIN (1000), KNIT_BENCH_WRK_SECONDS (10), KNIT_BENCH_CLIENTS ("1 8 32"),
# KNIT_BENCH_NO_BUILD=1. The store lives under /tmp and is deleted at the end, unless KNIT_BENCH_SCALE_DIR names a
# directory to keep it in: a second run with the same directory skips every in-process phase whose output is
# already there (the load above all), so the later phases can be repeated on the loaded store.
# Run time on the 2-vCPU machine of bench/README.md (shared): about 1 h at 10^7 (the load is about 25 min,
# the 10,000 plan registrations about 10 min); about 15 min at KNIT_BENCH_SCALE_COUNT=1000000.
source "$(dirname "$0")/lib.sh"

COUNT=${KNIT_BENCH_SCALE_COUNT:-10000000}
SHARDS=$((COUNT / 10))
QUERIES=${KNIT_BENCH_QUERIES:-20000}
PLANS=${KNIT_BENCH_PLANS:-10000}
PUSHES=${KNIT_BENCH_PUSHES:-300}
CHAIN=${KNIT_BENCH_CHAIN:-1000}
WRK_SECONDS=${KNIT_BENCH_WRK_SECONDS:-10}
CLIENTS=${KNIT_BENCH_CLIENTS:-1 8 32}

build_products knitd knitadm
build_bench_helper

ROOT=${KNIT_BENCH_SCALE_DIR:-}
if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    trap 'stop_started' EXIT
else
    ROOT=$(mktemp -d /tmp/knit-bench-scale.XXXXXX)
    trap 'stop_started; rm -rf "$ROOT"' EXIT
fi
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
value() { tr ' ' '\n' <"$2" | sed -n "s/^$1=//p"; } # key=value lines -> value of KEY in FILE
# Disk: the measured 1.2-1.5 KB per Data in LMDB, with room to spare.
need=$((COUNT * 3 / 1024)) # KiB
free=$(df -k --output=avail /tmp | tail -1)
if [ "$free" -le "$need" ]; then
    log "need about $((need / 1048576)) GiB free under /tmp, have $((free / 1048576))"
    exit 1
fi

if [ -s "$ROOT/handout" ]; then # a kept store: same home, user and TLS files, a new port
    HOME_DIR=$ROOT/home
    PORT=$(free_port)
    API=https://127.0.0.1:$PORT/api
    TOKEN=$(sed -n 's/^token: //p' "$ROOT/handout")
else
    init_instance "$ROOT"
fi
bench_store() { "$BENCH_BIN/knit-bench-store" "$1" --home "$HOME_DIR" "${@:2}"; }
# phase NAME COMMAND... : runs COMMAND into ROOT/NAME.txt unless a kept store already has it
phase() {
    local name=$1
    shift
    if [ -s "$ROOT/$name.txt" ]; then log "$name: kept from an earlier run"; return; fi
    log "$name (load average $(loadavg))"
    "$@" >"$ROOT/$name.part"
    echo "load_average=$(loadavg | tr ' ' '/')" >>"$ROOT/$name.part"
    mv "$ROOT/$name.part" "$ROOT/$name.txt"
    cat "$ROOT/$name.txt" >&2
}

# A kept store whose load was stopped resumes after its last commit (the loader commits every 5,000 Data).
start=0
if [ ! -s "$ROOT/load.txt" ] && [ -s "$HOME_DIR/db/data.mdb" ]; then
    bench_store stats >"$ROOT/resume.txt"
    start=$(value data "$ROOT/resume.txt")
    if [ "$start" -gt 0 ]; then echo "load_start=$start" >"$ROOT/load-start.txt"; fi
fi
phase load bench_store load --count "$((COUNT - start))" --start "$start" --shards "$SHARDS"
load_avg=$(value load_average "$ROOT/load.txt")
sync
bench_store stats | tee "$ROOT/stats.txt" >&2
disk_bytes=$(du -s --block-size=1 "$HOME_DIR" | cut -f1)
db_file=$(du -s --block-size=1 "$HOME_DIR/db/data.mdb" | cut -f1)

phase query bench_store query --count "$COUNT" --shards "$SHARDS" --queries "$QUERIES"
query_avg=$(value load_average "$ROOT/query.txt")
# Lineage first: the plans phase leaves waiting Runs, which the chain's walk would take for its own.
phase lineage bench_store lineage --fanout-home "$ROOT/fanout" --chain "$CHAIN" --fanout 10
phase plans bench_store nominate --plans "$PLANS" --pushes "$PUSHES"
plans_avg=$(value load_average "$ROOT/plans.txt")

# knitd serves the big store; one user pushes with up to 32 connections (its default share is half the slots),
# with a few slots to spare for a request whose client has already sent the next one.
KNIT_BENCH_KNITD_ARGS="--transfer-slots 39 --slots-per-user 39" start_instance "$ROOT"
export KNIT_BENCH_TOKEN=$TOKEN KNIT_BENCH_SHARDS=$SHARDS KNIT_BENCH_COUNT=$COUNT

to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}'; }
# wrk_line OUT -> "R req/s  p50 X ms  p99 Y ms" (+ non-2xx count)
wrk_line() {
    local non2xx
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$1")
    printf '%s/s  p50 %s ms  p99 %s ms%s' "$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$1")" \
        "$(awk '$1 == "50%" {print $2}' <<<"$1" | to_ms)" "$(awk '$1 == "99%" {print $2}' <<<"$1" | to_ms)" \
        "${non2xx:+  (non-2xx: $non2xx)}"
}
find_wrk() { KNIT_BENCH_PATH=$1 wrk -t2 -c64 -d"$2"s --latency -s "$BENCH_DIR/wrk/find.lua" "https://127.0.0.1:$PORT"; }

status=$(curl -s -o "$ROOT/pair.json" -w '%{http_code}' --cacert "$ROOT/tls/ca.crt" \
    -H "Authorization: Bearer $TOKEN" "$API/data?tag=shard%3A7&tag=batch%3A0")
[ "$status" = 200 ] && grep -q '"knitId"' "$ROOT/pair.json" || { log "two-tag query failed: $status"; exit 1; }
find_wrk api 2 >/dev/null # page cache and TLS sessions warm
http_one=$(find_wrk api "$WRK_SECONDS")
http_two=$(find_wrk pair "$WRK_SECONDS")
http_avg=$(loadavg)
log "http one tag: $(wrk_line "$http_one"); two tags: $(wrk_line "$http_two")"

# One real push of one 1 KiB file: its content directory and file, beyond the 1,024 bytes.
mkdir -p "$ROOT/one"
head -c 1024 /dev/urandom >"$ROOT/one/file.bin"
tar -C "$ROOT/one" -cf "$ROOT/one.tar" file.bin
up() { curl -s -o "$1" -w '%{http_code}' --cacert "$ROOT/tls/ca.crt" -H "Authorization: Bearer $TOKEN" \
    -H "Content-Type: application/x-tar" -X POST --data-binary @"$ROOT/one.tar" "$API/data?tag=scale%3Aone"; }
[ "$(up "$ROOT/up.json")" = 200 ] || { log "push failed: $(cat "$ROOT/up.json")"; exit 1; }
pushed=$(sed -n 's/.*"knitId" *: *"\([^"]*\)".*/\1/p' "$ROOT/up.json" | head -1)
content_disk=$(du -s --block-size=1 "$HOME_DIR/data/$pushed" | cut -f1)
content_apparent=$(du -s --apparent-size --block-size=1 "$HOME_DIR/data/$pushed" | cut -f1)

# Small concurrent uploads. (What they add to LMDB is not measured here: the same records as a bulk Data, and
# they fill pages freed by earlier transactions first, so the map's high-water mark barely moves.)
declare -A push_line
for clients in $CLIENTS; do
    # wrk's 2 s default timeout would drop slow pushes and send more while knitd still holds their slots.
    out=$(KNIT_BENCH_BODY=$ROOT/one.tar wrk -t"$((clients < 2 ? 1 : 2))" -c"$clients" -d"$WRK_SECONDS"s --latency \
        --timeout 30s -s "$BENCH_DIR/wrk/upload.lua" "https://127.0.0.1:$PORT")
    push_line[$clients]="$(wrk_line "$out")   (load average $(loadavg))"
    log "$clients clients: ${push_line[$clients]}"
done

# Where knitd's time goes during pushes: perf trace's per-syscall summary over one more run at 8 clients.
trace_summary="(perf trace not available)"
if command -v perf >/dev/null; then
    perf trace -s -p "$KNITD_PID" -o "$ROOT/trace.txt" &
    trace_pid=$!
    sleep 1
    KNIT_BENCH_BODY=$ROOT/one.tar wrk -t2 -c8 -d5s --latency -s "$BENCH_DIR/wrk/upload.lua" \
        "https://127.0.0.1:$PORT" >"$ROOT/traced-wrk.txt"
    kill -INT "$trace_pid" 2>/dev/null || true
    wait "$trace_pid" 2>/dev/null || true
    traced=$(awk '/requests in/ {print $1}' "$ROOT/traced-wrk.txt")
    # Sum over knitd's threads: calls and total ms per syscall, the sync ones first.
    trace_summary=$(awk -v n="$traced" '
        $1 ~ /^[a-z_0-9]+$/ && $2 ~ /^[0-9]+$/ && NF >= 5 { calls[$1] += $2; ms[$1] += $4 }
        END {
            for (s in calls) if (s ~ /sync/) printf "%s: %.1f calls, %.2f ms per push\n", s, calls[s] / n, ms[s] / n
        }' "$ROOT/trace.txt" | sort)
    log "traced pushes: $traced; $(tr '\n' ';' <<<"$trace_summary")"
fi

at() { value "$2" "$ROOT/$1.txt"; } # at PHASE KEY
lmdb_per_data=$(at stats lmdb_bytes_per_data)
map_size=$(at stats map_size_bytes)
free_now=$(df -B1 --output=avail "$HOME_DIR" | tail -1)
resumed=""
if [ -s "$ROOT/load-start.txt" ]; then resumed=" after the first $(value load_start "$ROOT/load-start.txt")"; fi
per() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f", a / b; else print "n/a" }'; } # per A B -> A/B
push_bytes=$(awk -v a="$content_disk" -v b="$lmdb_per_data" 'BEGIN { print a + b }')
cat <<EOF

== scale.sh: $COUNT Data in one store ($SHARDS shards: 10 Data per shard tag, 1,000 per batch tag) ==
bulk load (in-process, 5,000 Data per write transaction, one sync at the end): $(at load load_count) Data$resumed
  in $(at load load_seconds) s, $(at load load_per_s) Data/s   (load average after: $load_avg)
LMDB: $(at stats map_used_bytes) bytes in use (pages × $(at stats page_size) B) = $lmdb_per_data B per Data
disk: home $disk_bytes bytes (data.mdb $db_file) = $(per "$disk_bytes" "$COUNT") B per Data (bulk Data have no content
  directory); one real push of 1,024 bytes: content directory $content_disk bytes ($content_apparent apparent)
find in-process ($QUERIES random queries, load average after: $query_avg):
  one tag (10 Data)   p50 $(at query hit_p50_us) µs   p99 $(at query hit_p99_us) µs
  two tags (1 Data)   p50 $(at query pair_p50_us) µs   p99 $(at query pair_p99_us) µs
  absent tag          p50 $(at query miss_p50_us) µs
find through nginx + TLS + knitd (wrk -t2 -c64 -d${WRK_SECONDS}s, load average after: $http_avg):
  one tag             $(wrk_line "$http_one")
  two tags            $(wrk_line "$http_two")
lineage of a $CHAIN-deep chain (in the big store): $(at lineage chain_lineage_total_ms_p50) ms
  (graph $(at lineage chain_lineage_graph_ms_p50) ms + dot), set-up $(at lineage chain_setup_seconds) s
plans on the big store ($(at plans plans_registered), load average after: $plans_avg):
  plan apply          $(at plans register_seconds) s for all, the last 100 $(at plans last_register_ms_p50) ms each (p50)
  push (finishUpload) p50 $(at plans with_plans_push_p50_us) µs   p99 $(at plans with_plans_push_p99_us) µs
  before the plans    p50 $(at plans no_plans_push_p50_us) µs   p99 $(at plans no_plans_push_p99_us) µs
  plan find (all)     $(at plans find_all_plans_ms_p50) ms
small concurrent pushes through nginx + TLS + knitd (1 KiB plain tar each, wrk ${WRK_SECONDS}s, Data/s = req/s):
$(for clients in $CLIENTS; do printf '  %2s clients          %s\n' "$clients" "${push_line[$clients]}"; done)
  knitd's sync calls per push (perf trace, 8 clients):
$(sed 's/^/    /' <<<"$trace_summary")
limits:
  map size $map_size bytes holds about $(per "$map_size" "$lmdb_per_data") Data at $lmdb_per_data B each;
  a full map refuses the next write as storageFull (HTTP 507)
  free disk now $free_now bytes: about $(per "$free_now" "$push_bytes") more pushes of 1 KiB ($push_bytes B each)
EOF
