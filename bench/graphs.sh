#!/usr/bin/env bash
# Lineage graphs: a 1,000-deep chain (upstream of its last Data) and a 10,000-Run fan-out (downstream of
# the shared Data), each the store's one read transaction plus the dot rendering, next to one in-process
# `data find` for scale. Target: <= 100 ms for the chain.
# Environment: KNIT_BENCH_CHAIN (1000), KNIT_BENCH_FANOUT (10000), KNIT_BENCH_NO_BUILD=1.
source "$(dirname "$0")/lib.sh"

build_bench_helper
ROOT=$(mktemp -d /tmp/knit-bench-graphs.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
"$BENCH_BIN/knit-bench-store" lineage --home "$ROOT/chain" --fanout-home "$ROOT/fanout" \
    --chain "${KNIT_BENCH_CHAIN:-1000}" --fanout "${KNIT_BENCH_FANOUT:-10000}" | tee "$ROOT/out.txt" >&2
echo
echo "== graphs.sh: lineage to dot =="
sed 's/^/  /' "$ROOT/out.txt"
