#!/usr/bin/env bash
# Knit on Kubernetes: how long after `knit data push` does the dependent Run's pod run, against a bare Job
# created on the same cluster; the same for 20 Runs at once; and how many API requests the scheduler sends per
# Run (Knitfab's scheduler polls the API server; Knit's watches, so it should send a handful per Run and next to
# nothing while idle).
#
# The cluster is the test cluster of scripts/k8s-cluster (real Kubernetes 1.20.2 built from Debian's source,
# single node, containerd). The scheduler runs as the ServiceAccount of deploy/kubernetes/, with hostPath
# volumes over the instance's data directory. The plan's image is the busybox the cluster preloads, pulled
# IfNotPresent by both Knit's Jobs and the bare ones, so no image pull is counted on either side.
#
# "Running" is the moment a watch on the API server (this script's own, same for both sides) first shows the
# pod's container `running`, on the client clock. The kubelet reports a started container at its next status
# relist (about once a second), so both figures move in steps of about a second; Knit's own share is therefore
# also shown on its own: from the push to the API server receiving the Run's Job (the audit log's timestamp;
# same machine, same clock), after which a Knit Job and a bare one take the same path. Requests are counted by
# the API server itself (its audit log, by the scheduler's user), not by the scheduler.
#
# Environment: KNIT_BENCH_PUSHES (20), KNIT_BENCH_NO_BUILD=1. Needs root. Holds the machine's test-cluster lock.
# Target: push -> pod Running <= 100 ms beyond a bare Job create -> Running (p50).
source "$(dirname "$0")/lib.sh"

PUSHES=${KNIT_BENCH_PUSHES:-20}
build_products knitd knitadm knit knit-scheduler

ROOT=$(mktemp -d /tmp/knit-bench-k8s.XXXXXX)
CLUSTER=$ROOT/cluster
LABEL=knit-bench
NS=knit
cleanup() {
    stop_started
    "$REPO/scripts/k8s-cluster" down "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$ROOT"
}
trap cleanup EXIT

# One cluster per machine (fixed bridge and ports): wait for any test suite holding it.
exec 9>/run/lock/knit-k8s-cluster.lock
flock 9
ADMIN=$("$REPO/scripts/k8s-cluster" up "$CLUSTER")
KUBECTL=("$(cat "$CLUSTER/bin-path")/kubectl" --kubeconfig "$ADMIN")
"${KUBECTL[@]}" apply -f "$REPO/deploy/kubernetes/" >/dev/null
SA_CONFIG=$("$REPO/scripts/k8s-cluster" sa-kubeconfig "$CLUSTER" "$NS" knit-scheduler)
SCHEDULER_USER=system:serviceaccount:$NS:knit-scheduler
IMAGE=knit.local/busybox:1.35

init_instance "$ROOT"
start_instance "$ROOT"
"$BIN/knit-scheduler" --home "$HOME_DIR" --executor kubernetes --kubeconfig "$SA_CONFIG" --namespace "$NS" \
    --instance "$LABEL" --image-pull-policy IfNotPresent --log-level warning >"$ROOT/log/scheduler.log" 2>&1 &
STARTED_PIDS+=("$!")

# The watch: one line "<client ms> <pod name>" per pod, the first time its container is seen running.
python3 - "$CLUSTER" "$NS" >"$ROOT/running.txt" 2>"$ROOT/log/watch.log" <<'PY' &
import http.client, json, ssl, sys, time
cluster, ns = sys.argv[1], sys.argv[2]
context = ssl.create_default_context(cafile=cluster + "/pki/ca.crt")
context.load_cert_chain(cluster + "/pki/admin.crt", cluster + "/pki/admin.key")
seen = set()
version = ""
while True:
    connection = http.client.HTTPSConnection("127.0.0.1", 16443, context=context)
    query = f"/api/v1/namespaces/{ns}/pods?watch=true&timeoutSeconds=600"
    if version:
        query += "&resourceVersion=" + version
    connection.request("GET", query)
    response = connection.getresponse()
    for line in response:
        event = json.loads(line)
        pod = event["object"]
        version = pod.get("metadata", {}).get("resourceVersion", version)
        name = pod.get("metadata", {}).get("name", "")
        statuses = pod.get("status", {}).get("containerStatuses") or []
        if name not in seen and any("running" in s.get("state", {}) for s in statuses):
            seen.add(name)
            print(int(time.time() * 1000), name, flush=True)
PY
STARTED_PIDS+=("$!")

export HOME=$ROOT/client
mkdir -p "$HOME/project" "$ROOT/payload"
cd "$HOME/project"
"$BIN/knit" init "$ROOT/handout" >/dev/null
echo "one two three" >"$ROOT/payload/words.txt"
for kind in one many; do
    cat >"$ROOT/plan-$kind.yaml" <<YAML
image: "$IMAGE"
args: ["sh", "-c", "sleep 3; wc -w /in/data/* > /out/count/words"]
inputs:
  - path: "/in/data"
    tags: ["bench:$kind"]
outputs:
  - path: "/out/count"
    tags: ["bench:count-$kind"]
resources: {cpu: "50m", memory: "16Mi"}
YAML
    "$BIN/knit" plan apply "$ROOT/plan-$kind.yaml" >/dev/null
done

ms() { date +%s%3N; }
running_count() { wc -l <"$ROOT/running.txt"; }
# wait_running N : until N pods have been seen running (at most 120 s); prints nothing.
wait_running() {
    local i
    for i in $(seq 1 12000); do
        [ "$(running_count)" -ge "$1" ] && return 0
        sleep 0.01
    done
    log "only $(running_count) of $1 pods seen running; scheduler log:"
    tail -20 "$ROOT/log/scheduler.log" >&2
    return 1
}
api() { curl -s --cacert "$ROOT/tls/ca.crt" -H "Authorization: Bearer $TOKEN" "$API/$1"; }
# wait_done KNITID : until the Run that read the Data is done and none of its objects is left (at most 60 s).
wait_done() {
    local i
    for i in $(seq 1 600); do
        if api "runs?knitIdInput=$1" | grep -q '"status": *"done"' &&
            [ -z "$("${KUBECTL[@]}" -n "$NS" get jobs,pods,pvc -l "knit.executor=$LABEL" -o name)" ]; then
            return 0
        fi
        sleep 0.1
    done
    log "the Run of $1 did not end cleanly within 60 s"
    return 1
}
audit_count() { python3 - "$CLUSTER/log/audit.log" "$SCHEDULER_USER" <<'PY'
import json, sys
print(sum(1 for line in open(sys.argv[1]) if json.loads(line)["user"]["username"] == sys.argv[2]))
PY
}

# A bare Job: the same image, command and resources, no volumes, nothing else.
job_body() {
    printf '{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"%s","labels":{"bench":"bare"}},' "$1"
    printf '"spec":{"backoffLimit":0,"template":{"metadata":{"labels":{"bench":"bare"}},"spec":{'
    printf '"restartPolicy":"Never","containers":[{"name":"main","image":"%s","imagePullPolicy":"IfNotPresent",' "$IMAGE"
    printf '"command":["sh","-c","sleep 3"],"resources":{"requests":{"cpu":"50m","memory":"16Mi"},'
    printf '"limits":{"cpu":"50m","memory":"16Mi"}}}]}}}}'
}
create_job() {
    curl -sf --cacert "$CLUSTER/pki/ca.crt" --cert "$CLUSTER/pki/admin.crt" --key "$CLUSTER/pki/admin.key" \
        -H 'Content-Type: application/json' -d "$(job_body "$1")" \
        "https://127.0.0.1:16443/apis/batch/v1/namespaces/$NS/jobs" >/dev/null
}

# --- one at a time: a warm-up push first, then PUSHES, then as many bare Jobs.
: >"$ROOT/knit.txt"
: >"$ROOT/bare.txt"
: >"$ROOT/push-starts.txt"
requests_before=$(audit_count) # the warm-up Run is counted too: PUSHES + 1 Runs
for i in $(seq 0 "$PUSHES"); do
    before=$(running_count)
    t0=$(ms)
    echo "$t0" >>"$ROOT/push-starts.txt"
    id=$("$BIN/knit" data push -t bench:one -t seq:"$i" "$ROOT/payload" | sed -n 's/.*"knitId": "\(.*\)".*/\1/p')
    wait_running $((before + 1))
    [ "$i" -eq 0 ] && continue
    echo "$(($(tail -1 "$ROOT/running.txt" | cut -d' ' -f1) - t0))" >>"$ROOT/knit.txt"
    # The next push starts once this Run is done and its objects are gone, on an idle scheduler and node, as
    # the bare Job does: what is measured is one push's path, not the end of the Run before it.
    wait_done "$id"
done
sleep 5
requests_sequential=$(($(audit_count) - requests_before))
for i in $(seq 1 "$PUSHES"); do
    before=$(running_count)
    t0=$(ms)
    create_job "bench-bare-$i"
    wait_running $((before + 1))
    echo "$(($(tail -1 "$ROOT/running.txt" | cut -d' ' -f1) - t0))" >>"$ROOT/bare.txt"
    sleep 3.5
done
"${KUBECTL[@]}" -n "$NS" delete jobs -l bench=bare --wait=true >/dev/null

# --- idle: what the scheduler asks while nothing happens.
idle_before=$(audit_count)
sleep 30
requests_idle=$(($(audit_count) - idle_before))

# --- 20 at once: 20 pushes in parallel vs 20 bare Jobs created in parallel.
before=$(running_count)
t0=$(ms)
for i in $(seq 1 20); do "$BIN/knit" data push -t bench:many -t seq:"$i" "$ROOT/payload" >/dev/null & done
wait_running $((before + 20))
knit_burst=$(($(tail -1 "$ROOT/running.txt" | cut -d' ' -f1) - t0))
sleep 8
before=$(running_count)
t0=$(ms)
for i in $(seq 1 20); do create_job "bench-burst-$i" & done
wait_running $((before + 20))
bare_burst=$(($(tail -1 "$ROOT/running.txt" | cut -d' ' -f1) - t0))

python3 - "$ROOT/knit.txt" "$ROOT/bare.txt" "$((PUSHES + 1))" "$requests_sequential" "$requests_idle" \
    "$knit_burst" "$bare_burst" "$ROOT/push-starts.txt" "$CLUSTER/log/audit.log" "$SCHEDULER_USER" <<'PY'
import json, sys
from datetime import datetime
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, -(-len(values) * p // 100) - 1))]
knit = [int(x) for x in open(sys.argv[1])]
bare = [int(x) for x in open(sys.argv[2])]
runs, sequential, idle, knit_burst, bare_burst = map(int, sys.argv[3:8])
print(f"\n== kubernetes.sh: push -> dependent Run's pod running ({len(knit)} pushes, one at a time) ==")
print(f"  knit push -> pod running   p50 {pct(knit, 50):6d} ms   p95 {pct(knit, 95):6d} ms")
print(f"  bare Job -> pod running    p50 {pct(bare, 50):6d} ms   p95 {pct(bare, 95):6d} ms")
print(f"  beyond the bare Job, p50: {pct(knit, 50) - pct(bare, 50)} ms (target <= 100 ms; steps of ~1 s, see above)")
# The k-th Job the scheduler created belongs to the k-th push (one at a time; the warm-up is the first of both).
starts = [int(x) for x in open(sys.argv[8])]
creates = sorted(
    datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp() * 1000
    for e in map(json.loads, open(sys.argv[9]))
    if e["user"]["username"] == sys.argv[10] and e["verb"] == "create" and e["stage"] == "ResponseComplete"
    and e["objectRef"].get("resource") == "jobs"
)
own = [round(created - started) for started, created in zip(starts[1:], creates[1:len(starts)])]
print(f"  knit push -> Job received by the API server   p50 {pct(own, 50):6d} ms   p95 {pct(own, 95):6d} ms "
      "(Knit's own share: CLI, upload, Run, PVs/PVCs bound, Job)")
print(f"  20 at once: knit {knit_burst} ms until all 20 pods run; bare Jobs {bare_burst} ms")
print(f"  API requests by the scheduler: {sequential / runs:.1f} per Run (start to cleanup); "
      f"{idle} in 30 s idle")
PY
