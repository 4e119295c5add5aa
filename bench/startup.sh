#!/usr/bin/env bash
# Start-up time of the knit CLI: `knit --help` and `knit version` against /bin/true, with hyperfine
# (-N: no shell in between, warmup runs first). Target: <= 20 ms each. Medians printed.
source "$(dirname "$0")/lib.sh"

build_products knit
ROOT=$(mktemp -d /tmp/knit-bench-startup.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
RUNS=${KNIT_BENCH_STARTUP_RUNS:-200}

# A HOME without profiles, so nothing the machine's user configured is read.
HOME=$ROOT hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$ROOT/startup.json" \
    -n true /bin/true -n help "$BIN/knit --help" -n version "$BIN/knit version" >&2

python3 - "$ROOT/startup.json" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
base = results["true"]["median"] * 1000
print(f"\n== startup.sh: hyperfine -N, medians ==")
print(f"  {'command':<16} {'median':>9} {'mean ± σ':>18} {'minus /bin/true':>16}  target <= 20 ms")
for name in ("true", "help", "version"):
    r = results[name]
    label = {"true": "/bin/true", "help": "knit --help", "version": "knit version"}[name]
    median, mean, sd = r["median"] * 1000, r["mean"] * 1000, r["stddev"] * 1000
    print(f"  {label:<16} {median:7.2f} ms {mean:8.2f} ± {sd:5.2f} ms {median - base:13.2f} ms"
          + ("" if name == "true" else f"  ({100 * median / 20:.0f} % of target)"))
PY
