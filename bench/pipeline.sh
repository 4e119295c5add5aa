#!/usr/bin/env bash
# Push → dependent Run `running`: how long after `knit data push` starts does the container of the
# Run it triggers run? Knitfab polls for new work every few seconds; Knit creates the Run in the
# push's own transaction and rings the scheduler's socket, so the figure should be the container start
# plus tens of milliseconds. Measured side by side with the container start alone (`podman run
# --detach` with the scheduler's flags) in the same run.
#
# Per push: t0 = client clock before `knit data push`; the Run's `updatedAt` when it is first seen
# `running` is the server's clock (same machine) at the moment the container was confirmed started, so
# t(running) - t0 does not depend on the polling interval. The plan's container sleeps 2 s so it is
# still running when polled.
# Environment: KNIT_BENCH_PUSHES (20), KNIT_BENCH_NO_BUILD=1. Needs podman (root) and builds the
# quickstart busybox image if missing. Target: p50 <= 50 ms + container start.
source "$(dirname "$0")/lib.sh"

PUSHES=${KNIT_BENCH_PUSHES:-20}
build_products knitd knitadm knit knit-scheduler
"$REPO/examples/quickstart/build-image.sh" >/dev/null

ROOT=$(mktemp -d /tmp/knit-bench-pipeline.XXXXXX)
LABEL=knit-bench-$$
PODMAN=(env CONTAINERS_CONF="$REPO/containers/containers.conf" podman)
cleanup() {
    stop_started
    "${PODMAN[@]}" ps -aq --filter "label=knit.executor=$LABEL" | xargs -r "${PODMAN[@]}" rm -f >/dev/null 2>&1
    rm -rf "$ROOT"
}
trap cleanup EXIT

init_instance "$ROOT"
start_instance "$ROOT"
CONTAINERS_CONF=$REPO/containers/containers.conf "$BIN/knit-scheduler" --home "$HOME_DIR" \
    --containers-conf "$REPO/containers/containers.conf" --instance "$LABEL" --log-level warning \
    >"$ROOT/log/scheduler.log" 2>&1 &
STARTED_PIDS+=("$!")

export HOME=$ROOT/client
mkdir -p "$HOME/project" "$ROOT/payload"
cd "$HOME/project"
"$BIN/knit" init "$ROOT/handout" >/dev/null
echo "one two three" >"$ROOT/payload/words.txt"
cat >"$ROOT/plan.yaml" <<'YAML'
image: "localhost/knit-quickstart:1"
args: ["sleep 2; wc -w /in/data/* > /out/count/words"]
inputs:
  - path: "/in/data"
    tags: ["bench:latency"]
outputs:
  - path: "/out/count"
    tags: ["bench:count"]
resources: {cpu: "100m", memory: "32Mi"}
YAML
"$BIN/knit" plan apply "$ROOT/plan.yaml" >/dev/null

ms() { date +%s%3N; }
api() { curl -s --cacert "$ROOT/tls/ca.crt" -H "Authorization: Bearer $TOKEN" "$API/$1"; }

# One warm-up push so the first container start (image layers mounted) is not counted.
: >"$ROOT/samples.txt"
for i in $(seq 0 "$PUSHES"); do
    t0=$(ms)
    id=$("$BIN/knit" data push -t bench:latency -t seq:"$i" "$ROOT/payload" | sed -n 's/.*"knitId": "\(.*\)".*/\1/p')
    t_pushed=$(ms)
    run=""
    for _ in $(seq 1 1500); do
        run=$(api "runs?knitIdInput=$id")
        grep -q '"status": *"\(running\|completing\|done\|failed\)"' <<<"$run" && break
        sleep 0.01
    done
    grep -q '"status": *"running"' <<<"$run" || { log "push $i: run not seen running: $run"; exit 1; }
    [ "$i" -eq 0 ] && continue
    printf '%s %s %s\n' "$t0" "$t_pushed" "$(sed -n 's/.*"updatedAt": *"\([^"]*\)".*/\1/p' <<<"$run" | tail -1)" >>"$ROOT/samples.txt"
done

# The container start alone, with the flags and mounts the scheduler uses (as many containers alive
# at once as in the pushes above: each sleeps 2 s and is removed in the background).
: >"$ROOT/starts.txt"
removals=()
for i in $(seq 1 "$PUSHES"); do
    t0=$(ms)
    mkdir -p "$ROOT/baseline-out/$i"
    cid=$("${PODMAN[@]}" run --detach --name "knit-bench-$$-$i" --label "knit.executor=$LABEL" --pull=never \
        --network none --log-driver none --volume "$ROOT/payload:/in/data:ro" \
        --volume "$ROOT/baseline-out/$i:/out/count:rw" --cpus 0.1 --memory 32m --memory-swap 32m \
        localhost/knit-quickstart:1 "sleep 2")
    echo $(($(ms) - t0)) >>"$ROOT/starts.txt"
    "${PODMAN[@]}" rm -f "$cid" >/dev/null 2>&1 &
    removals+=("$!")
done
# Only the removals: a bare `wait` would also wait for knitd, nginx and the scheduler.
wait "${removals[@]}"

python3 - "$ROOT/samples.txt" "$ROOT/starts.txt" <<'PY'
import sys
from datetime import datetime
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, -(-len(values) * p // 100) - 1))]
total, push = [], []
for line in open(sys.argv[1]):
    t0, pushed, running = line.split()
    at = datetime.fromisoformat(running).timestamp() * 1000
    total.append(at - int(t0)); push.append(int(pushed) - int(t0))
starts = [int(x) for x in open(sys.argv[2])]
print(f"\n== pipeline.sh: push -> dependent Run running ({len(total)} pushes) ==")
print(f"  push -> running   p50 {pct(total, 50):6.0f} ms   p95 {pct(total, 95):6.0f} ms")
print(f"  knit data push    p50 {pct(push, 50):6.0f} ms   p95 {pct(push, 95):6.0f} ms   (the CLI call alone)")
print(f"  podman run -d     p50 {pct(starts, 50):6.0f} ms   p95 {pct(starts, 95):6.0f} ms   (container start alone)")
over = pct(total, 50) - pct(starts, 50)
print(f"  overhead beyond the container start, p50: {over:.0f} ms (target <= 50 ms; Knitfab polls every ~5 s)")
PY
