#!/usr/bin/env bash
# Cost of one push when 10,000 plans are registered: `finishUpload` (the write transaction that
# publishes the Data, nominates it and creates its Run) against the same with no plan at all, in-process
# on real LMDB files. Every plan asks for `type:dataset` (shared by all) and `project:p<i>` (its own),
# and every push carries both, so exactly one Run is created per push. Target: <= 1 ms per push.
# Registering the plans is timed too (each registration checks the new plan against all others).
# Environment: KNIT_BENCH_PLANS (10000), KNIT_BENCH_PUSHES (300), KNIT_BENCH_NO_BUILD=1.
# About 10 minutes with 10,000 plans on 2 cores (the registrations dominate).
source "$(dirname "$0")/lib.sh"

build_bench_helper
ROOT=$(mktemp -d /tmp/knit-bench-plans.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
PLANS=${KNIT_BENCH_PLANS:-10000}
"$BENCH_BIN/knit-bench-store" nominate --home "$ROOT/plans" --baseline-home "$ROOT/none" \
    --plans "$PLANS" --pushes "${KNIT_BENCH_PUSHES:-300}" | tee "$ROOT/out.txt" >&2
value() { tr ' ' '\n' <"$ROOT/out.txt" | sed -n "s/^$1=//p"; }
echo
echo "== plans.sh: one push (finishUpload) with $PLANS plans registered =="
echo "  no plans          p50 $(value no_plans_push_p50_us) µs   p95 $(value no_plans_push_p95_us) µs"
echo "  $PLANS plans      p50 $(value with_plans_push_p50_us) µs   p95 $(value with_plans_push_p95_us) µs   (1 Run created per push)"
echo "  ratio p50: $(value push_cost_ratio)   target <= 1000 µs"
echo "  registering $PLANS plans: $(value register_seconds) s, the last 100: $(value last_register_ms_p50) ms each (p50)"
echo "  knit plan find (all $PLANS, with upstreams and downstreams): $(value find_all_plans_ms_p50) ms (p50 of 3)"
