#!/usr/bin/env bash
# Knit against Knitfab on the same Data: Knitfab v1.6.1's find-by-tags SQL on its own PostgreSQL schema
# (PostgreSQL 15 from Debian, a private cluster) beside Knit's GET /api/data?tag=… through nginx + TLS, on
# 10^4 and 10^5 Data (10^6 too when KNIT_BENCH_PEER_SIZES asks for it). Both sides hold Data tagged as
# query.sh tags them (shard:<i % shards>, batch:<i / 1000>) with shards = Data / 10, so one shard tag
# matches 10 Data on both, and both are asked by one client at a time for a random shard. The Knitfab
# figure is its SQL alone: its knitd then runs more queries for the details of each Data and encodes JSON,
# so the figure is a lower bound for Knitfab's answer, while Knit's figure is the whole HTTP answer.
# About 5 minutes. 10^6 is not in run-all's budget: each side fills it in about 100 s and each Knitfab query
# takes 8 to 35 s, so it adds about 17 minutes even with KNIT_BENCH_PEER_QUERIES=10.
# Environment: KNIT_BENCH_PEER_SIZES ("10000 100000"; "1000000" for 10^6), KNIT_BENCH_PEER_QUERIES (30 Knitfab
# queries measured per size, after 5 not measured), KNIT_BENCH_PEER_SECONDS (10: wrk's time for Knit),
# KNIT_BENCH_NO_BUILD=1.
source "$(dirname "$0")/lib.sh"

SIZES=${KNIT_BENCH_PEER_SIZES:-10000 100000}
SECONDS_PER_RUN=${KNIT_BENCH_PEER_SECONDS:-10}
QUERIES=${KNIT_BENCH_PEER_QUERIES:-30}
# PostgreSQL plans a prepared statement afresh for its first five executions and only then may settle on
# a generic plan, which a long-running knitd's pooled connections then use; those five are not measured.
WARMUP=5
PG_BIN=/usr/lib/postgresql/15/bin
SQL_DIR=$BENCH_DIR/knitfab

for package in postgresql wrk; do
    if ! dpkg -s "$package" >/dev/null 2>&1; then
        log "installing the Debian package $package"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >&2
    fi
done
[ -x "$PG_BIN/pgbench" ] || { log "no pgbench in $PG_BIN"; exit 1; }
id -u postgres >/dev/null 2>&1 || { log "the postgresql package did not create the postgres user"; exit 1; }

build_products knitd knitadm
build_bench_helper

ROOT=$(mktemp -d /tmp/knit-bench-peer.XXXXXX)
trap 'stop_started; rm -rf "$ROOT"' EXIT

# PostgreSQL refuses to run as root: the cluster belongs to the postgres user and listens on a unix socket
# in ROOT only (no TCP). It keeps the stock settings Knitfab deploys (its chart runs the postgres:15 image,
# JIT included) apart from two: fsync is off (only the fill writes; queries read) and autovacuum is off so
# that the "not analyzed" measurement stays that way. The main figure is taken after an explicit VACUUM
# ANALYZE, the state autovacuum brings a live database to on its own.
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
mkdir -p "$ROOT/pg" "$ROOT/pgsock" "$ROOT/pglog"
chown postgres:postgres "$ROOT/pg" "$ROOT/pgsock"
chmod 755 "$ROOT"
as_postgres "$PG_BIN/initdb" -D "$ROOT/pg/data" --auth=trust -U postgres --no-sync >"$ROOT/pg/initdb.log"
as_postgres "$PG_BIN/postgres" -D "$ROOT/pg/data" -k "$ROOT/pgsock" -c listen_addresses= -c autovacuum=off \
    -c fsync=off >"$ROOT/pg/postgres.log" 2>&1 &
STARTED_PIDS+=("$!")
for _ in $(seq 100); do
    "$PG_BIN/pg_isready" -q -h "$ROOT/pgsock" && break
    sleep 0.1
done
if ! "$PG_BIN/pg_isready" -q -h "$ROOT/pgsock"; then
    log "PostgreSQL did not start"
    cat "$ROOT/pg/postgres.log" >&2
    exit 1
fi
log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') up in $ROOT/pg (unix socket only)"

psql_db() { # DB ARGS... : psql as the superuser over the socket, stopping at the first error
    local db=$1
    shift
    psql -X -q -v ON_ERROR_STOP=1 -h "$ROOT/pgsock" -U postgres -d "$db" "$@"
}

# The find statement alone (from find.pgbench), for psql's PREPARE.
FIND_SQL=$(sed -n '/^with$/,/^order by/p' "$SQL_DIR/find.pgbench")
FIND_SHARD_7="execute find (null, '{}', '{}', null, null, null, array[['shard', '7']])"

# pgbench_find DB SHARDS NAME QUERIES [SERVER_OPTIONS] -> "p50_ms p99_ms queries" of find.pgbench, one
# client, QUERIES measured after WARMUP.
pgbench_find() {
    local db=$1 shards=$2 name=$3 queries=$4 options=${5:-}
    PGOPTIONS=$options "$PG_BIN/pgbench" -n -c 1 -t $((WARMUP + queries)) -f "$SQL_DIR/find.pgbench" -D prepared=0 \
        -D shards="$shards" -l --log-prefix="$ROOT/pglog/$name" -h "$ROOT/pgsock" -U postgres "$db" \
        >"$ROOT/pglog/$name.out" 2>&1 || { log "pgbench failed:"; cat "$ROOT/pglog/$name.out" >&2; return 1; }
    # per-transaction log lines: client, transaction number (from 1), latency in µs, ...
    awk -v skip="$WARMUP" '$2 > skip {print $3 / 1000}' "$ROOT/pglog/$name".[0-9]* | sort -g |
        awk '{a[NR] = $1} END {
            if (NR == 0) { print "n/a n/a 0"; exit }
            i50 = int(NR * 0.50 + 0.5); if (i50 < 1) i50 = 1
            i99 = int(NR * 0.99 + 0.5); if (i99 < 1) i99 = 1
            printf "%.1f %.1f %d\n", a[i50], a[i99], NR }'
}

# wrk_latency SHARDS SECONDS -> "p50_ms p99_ms requests req/s", one connection like pgbench above
wrk_latency() {
    local out
    out=$(KNIT_BENCH_PATH=api KNIT_BENCH_TOKEN=$TOKEN KNIT_BENCH_SHARDS=$1 wrk -t1 -c1 -d"$2"s --latency \
        -s "$BENCH_DIR/wrk/find.lua" "https://127.0.0.1:$PORT")
    if grep -q 'Non-2xx' <<<"$out"; then log "wrk: $(grep 'Non-2xx' <<<"$out")"; return 1; fi
    awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
        $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) } / requests in / { n = $1 }
        /Requests\/sec/ { r = $2 } END { printf "%.2f %.2f %d %s\n", p50, p99, n, r }' <<<"$out"
}

# Stops this size's knitd and nginx (by pid) and forgets them; PostgreSQL keeps running.
stop_knit() {
    local pid kept=()
    kill -TERM "$KNITD_PID" "$NGINX_PID" 2>/dev/null || true
    for pid in "$KNITD_PID" "$NGINX_PID"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        if [ "$pid" != "$KNITD_PID" ] && [ "$pid" != "$NGINX_PID" ]; then kept+=("$pid"); fi
    done
    STARTED_PIDS=("${kept[@]}")
}

results=()
for count in $SIZES; do
    shards=$((count / 10))
    db=knitfab_$count
    log "== $count Data, $shards shard tags (10 Data per shard tag); load average $(cut -d' ' -f1-3 /proc/loadavg)"

    # Knitfab: tables, fill, keys; the query before ANALYZE, after it, and at its best.
    psql_db postgres -c "create database $db"
    start=$(now)
    psql_db "$db" -f "$SQL_DIR/tables.sql"
    psql_db "$db" -v count="$count" -v shards="$shards" -f "$SQL_DIR/fill.sql"
    psql_db "$db" -f "$SQL_DIR/keys.sql"
    pg_fill=$(elapsed "$start")
    pg_hits=$(psql_db "$db" -At -c "prepare find as $FIND_SQL" -c "$FIND_SHARD_7" | wc -l)
    log "Knitfab: $count Data filled in $pg_fill s; shard:7 finds $pg_hits Data"
    [ "$pg_hits" = 10 ] || { log "expected 10 Data for one shard tag in PostgreSQL"; exit 1; }
    read -r raw50 raw99 rawn <<<"$(pgbench_find "$db" "$shards" "raw-$count" 10)"
    log "Knitfab SQL, not analyzed: p50 $raw50 ms, p99 $raw99 ms ($rawn queries)"
    start=$(now)
    psql_db "$db" -c "vacuum analyze"
    log "vacuum analyze: $(elapsed "$start") s"
    read -r pg50 pg99 pgn <<<"$(pgbench_find "$db" "$shards" "analyzed-$count" "$QUERIES")"
    log "Knitfab SQL, analyzed: p50 $pg50 ms, p99 $pg99 ms ($pgn queries)"
    # The same statement planned afresh for every call and without JIT compilation: what this SQL shape
    # costs at best, which tells the shape apart from the plan cache and the JIT.
    read -r best50 best99 bestn <<<"$(pgbench_find "$db" "$shards" "custom-$count" 10 \
        "-c plan_cache_mode=force_custom_plan -c jit=off")"
    log "Knitfab SQL, analyzed, custom plans, no JIT: p50 $best50 ms, p99 $best99 ms ($bestn queries)"
    psql_db "$db" -c "prepare find as $FIND_SQL" -c "explain (analyze) $FIND_SHARD_7" \
        >"$ROOT/plan-$count.txt"
    log "its first plan (shard:7, analyzed):"
    cat "$ROOT/plan-$count.txt" >&2
    psql_db postgres -c "drop database $db"

    # Knit: the same Data in a store, served by knitd behind nginx with TLS.
    init_instance "$ROOT/knit-$count"
    start=$(now)
    "$BENCH_BIN/knit-bench-store" load --home "$HOME_DIR" --count "$count" --shards "$shards" >/dev/null
    knit_fill=$(elapsed "$start")
    start_instance "$ROOT/knit-$count"
    knit_hits=$(curl -sf --cacert "$ROOT/knit-$count/tls/ca.crt" -H "Authorization: Bearer $TOKEN" \
        "$API/data?tag=shard%3A7" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
    log "Knit: $count Data filled in $knit_fill s; shard:7 finds $knit_hits Data"
    [ "$knit_hits" = 10 ] || { log "expected 10 Data for one shard tag from Knit"; exit 1; }
    wrk_latency "$shards" 2 >/dev/null # warm nginx's TLS session cache and the page cache
    read -r k50 k99 kn krps <<<"$(wrk_latency "$shards" "$SECONDS_PER_RUN")"
    log "Knit GET /api/data: p50 $k50 ms, p99 $k99 ms ($kn requests, $krps req/s)"
    stop_knit
    rm -rf "$ROOT/knit-$count"

    row="$count $pg50 $pg99 $pgn $raw50 $raw99 $best50 $best99 $k50 $k99 $kn"
    results+=("$row $pg_fill $knit_fill")
done

cat <<EOF

== peer-knitfab.sh: Knitfab v1.6.1's find-by-tags SQL (PostgreSQL 15, pgbench, one client) vs Knit's
   GET /api/data?tag=shard:N (nginx + TLS + knitd, wrk, one connection); one shard tag = 10 Data on both;
   $QUERIES Knitfab queries (10 for "not analyzed" and "custom, no JIT"), $SECONDS_PER_RUN s of Knit queries; times
   in ms. The Knitfab figure is its SQL alone, a lower bound for its API answer; Knit's is the whole HTTP
   answer. ==
EOF
printf '%-8s | %-22s | %-16s | %-16s | %-22s | %-6s | %s\n' Data "Knitfab p50 / p99 (n)" "not analyzed" \
    "custom, no JIT" "Knit p50 / p99 (n)" "p50 x" "fill s: Knitfab, Knit"
for row in "${results[@]}"; do
    read -r count pg50 pg99 pgn raw50 raw99 best50 best99 k50 k99 kn pg_fill knit_fill <<<"$row"
    printf '%-8s | %-22s | %-16s | %-16s | %-22s | %-6s | %s, %s\n' "$count" "$pg50 / $pg99 ($pgn)" \
        "$raw50 / $raw99" "$best50 / $best99" "$k50 / $k99 ($kn)" \
        "$(awk -v a="$pg50" -v b="$k50" 'BEGIN { printf "%.0f", a / b }')" "$pg_fill" "$knit_fill"
done
