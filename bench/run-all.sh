#!/usr/bin/env bash
# Builds once (release, scratch .build-bench), then runs every benchmark in turn and keeps each
# script's full output in bench/out/ (git-ignored). About 35 minutes on 2 cores (kubernetes.sh needs root;
# peer-knitfab.sh runs PostgreSQL as the postgres user and measures 10^4 and 10^5 Data, 10^6 only on request),
# plus scale.sh last: its 10^7 Data take about an hour more and 15 GB under /tmp (KNIT_BENCH_SCALE_COUNT=1000000
# for about 15 minutes and 1.5 GB).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

build_products knitd knitadm knit knit-scheduler
build_bench_helper
mkdir -p "$BENCH_DIR/out"
export KNIT_BENCH_NO_BUILD=1
for bench in startup query transfer pipeline plans graphs peer-knitfab kubernetes scale; do
    log "== $bench.sh"
    "$BENCH_DIR/$bench.sh" 2>"$BENCH_DIR/out/$bench.log" | tee "$BENCH_DIR/out/$bench.txt"
done
