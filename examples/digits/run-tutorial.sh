#!/usr/bin/env bash
# Runs the digits walk-through (README.md) non-interactively against the current knit profile:
# build the image, write and push the datasets, apply the training Plan, wait for its Run, push the
# test dataset, apply the validation Plan, wait, pull metrics.json and check the accuracy; then print
# the lineage of the metrics when `knit data lineage` exists.
#
# usage: run-tutorial.sh [--timeout SECONDS] [--min-accuracy X] [--keep]
#   --timeout       per Run, default 600 (first Runs on a busy 2-core machine take ~10 s)
#   --min-accuracy  default 0.9; the script exits 1 when the model scores lower
#   --keep          keep the scratch directory (datasets, pulled model, metrics, log)
# env: KNIT (default: knit on PATH); knit's own --profile/--env rules pick the server, so run this
#      where `knit data find` works. CONTAINERS_CONF as for build-image.sh.
# exit: 0 when the metrics show accuracy > min-accuracy; 1 on any failure (the reason on stderr).
set -euo pipefail

timeout=600
min_accuracy=0.9
keep=no
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) timeout=$2; shift 2 ;;
        --min-accuracy) min_accuracy=$2; shift 2 ;;
        --keep) keep=yes; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run-tutorial.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

here=$(cd "$(dirname "$0")" && pwd)
# The path of the binary, resolved now: the knit() wrapper below would otherwise call itself.
knit_bin=$(type -P "${KNIT:-knit}" || true)
image=localhost/knit-digits:1
if [ -z "${CONTAINERS_CONF:-}" ] && [ -f "$here/../../containers/containers.conf" ]; then
    export CONTAINERS_CONF="$here/../../containers/containers.conf"
fi
[ -n "$knit_bin" ] || { echo "run-tutorial.sh: ${KNIT:-knit} not found on PATH (set KNIT)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "run-tutorial.sh: python3 is needed to read knit's JSON" >&2; exit 1; }

# knit finds its profile from the current directory, so the script never changes it and passes
# absolute paths instead.
work=$(mktemp -d "${TMPDIR:-/tmp}/knit-digits-tutorial.XXXXXX")
finish() {
    local rc=$?
    if [ "$rc" -ne 0 ] || [ "$keep" = yes ]; then
        echo "run-tutorial.sh: scratch directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
}
trap finish EXIT

started=$(date +%s)
step() { printf '\n== [%3ds] %s\n' "$(($(date +%s) - started))" "$*"; }
fail() { echo "run-tutorial.sh: $*" >&2; exit 1; }
knit() { "$knit_bin" "$@"; }
# json EXPR: evaluates a Python expression over the JSON document on stdin (bound to `d`).
json() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# wait_run PLAN_ID INPUT_KNIT_ID…: waits until the Run of PLAN_ID whose inputs include every given
# Data is done (prints its runId) or failed/timed out (exits).
wait_run() {
    local plan=$1; shift
    local wanted
    wanted=$(printf '"%s",' "$@")
    local deadline=$(($(date +%s) + timeout)) last="" runs state
    while :; do
        runs=$(knit run find -p "$plan" -i "$1") || fail "knit run find -p $plan failed"
        state=$(printf '%s' "$runs" | json "next(((r['runId'], r['status']) for r in d
            if {$wanted} <= {i['knitId'] for i in r['inputs']}), ('', 'none'))")
        state=${state//[()\',]/}
        if [ "$state" != "$last" ]; then
            echo "   run ${state% *}: ${state##* }" >&2
            last=$state
        fi
        case "${state##* }" in
            done) echo "${state% *}"; return 0 ;;
            failed|invalidated)
                knit run show "${state% *}" >&2 || true
                knit run show --log "${state% *}" >&2 || true
                fail "Run ${state% *} of plan $plan ended ${state##* }" ;;
        esac
        [ "$(date +%s)" -lt "$deadline" ] || fail "no finished Run of plan $plan within ${timeout}s (last: $state)"
        sleep 2
    done
}

# apply PLAN_FILE: prints the planId of the new Plan, or of the equivalent one registered before
# (a second run of this script), which `knit plan apply` names in its 409 error.
apply() {
    local out err rc=0
    out=$(knit plan apply "$1" 2>"$work/apply.err") || rc=$?
    err=$(cat "$work/apply.err")
    if [ "$rc" -eq 0 ]; then
        printf '%s' "$out" | json "d['planId']"
        return
    fi
    local existing
    existing=$(printf '%s' "$err" | grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' | head -n1 || true)
    if [ -n "$existing" ] && printf '%s' "$err" | grep -qi 'equivalent\|conflict\|409'; then
        echo "   an equivalent Plan exists: $existing" >&2
        echo "$existing"
        return
    fi
    fail "knit plan apply $1: $err"
}

step "build the image ($image)"
"$here/build-image.sh"

step "write the digits datasets (prepare.py in the image)"
mkdir -p "$work/data"
podman run --rm --network none -v "$work/data:/out/data" --entrypoint '["python3", "-u", "prepare.py"]' \
    "$image" --out /out/data

step "push the training dataset"
train_data=$(knit data push -t format:csv -t mode:training -t type:dataset -t project:first-knitfab \
    -n "$work/data/digits-train" | json "d['knitId']")
echo "   training dataset: $train_data"

step "apply train.plan.yaml"
train_plan=$(apply "$here/train.plan.yaml")
echo "   train plan: $train_plan"

step "wait for the training Run"
train_run=$(wait_run "$train_plan" "$train_data")
knit run show --log "$train_run"
model=$(knit run show "$train_run" | json "next(o['knitId'] for o in d['outputs'] if o['path'] == '/out/model')")
echo "   model: $model"
knit data pull -x "$model" "$work/model" >/dev/null 2>&1 || fail "knit data pull $model failed"
[ -s "$work/model/$model/model.pkl" ] || fail "the model Data $model has no model.pkl"

step "push the test dataset"
test_data=$(knit data push -t format:csv -t mode:test -t type:dataset -t project:first-knitfab \
    -n "$work/data/digits-test" | json "d['knitId']")
echo "   test dataset: $test_data"

step "apply validate.plan.yaml"
validate_plan=$(apply "$here/validate.plan.yaml")
echo "   validate plan: $validate_plan"

step "wait for the validation Run (this model on this test dataset)"
validate_run=$(wait_run "$validate_plan" "$model" "$test_data")
knit run show --log "$validate_run" | tail -n 4
metrics=$(knit run show "$validate_run" | json "next(o['knitId'] for o in d['outputs'] if o['path'] == '/out/metrics')")
knit data pull -x "$metrics" "$work/metrics" >/dev/null 2>&1 || fail "knit data pull $metrics failed"
metrics_file=$work/metrics/$metrics/metrics.json
[ -s "$metrics_file" ] || fail "the metrics Data $metrics has no metrics.json"
accuracy=$(json "d['accuracy']" <"$metrics_file")
echo "   metrics: $metrics, accuracy $accuracy"

step "lineage of the metrics"
# `knit data lineage` is newer than the rest; an older knit answers "data --help" without it.
if knit data --help 2>/dev/null | grep -qw lineage; then
    knit data lineage -n all "$metrics" | tee "$work/lineage.dot"
    if command -v dot >/dev/null; then
        dot -T png -o "$work/lineage.png" "$work/lineage.dot" && echo "   picture: $work/lineage.png (use --keep to keep it)"
    fi
else
    echo "   (this knit has no 'data lineage' yet; the chain is: $train_data -> run $train_run -> $model"
    echo "    -> run $validate_run (with $test_data) -> $metrics)"
fi

python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)' "$accuracy" "$min_accuracy" \
    || fail "accuracy $accuracy is not above $min_accuracy"
step "OK: accuracy $accuracy > $min_accuracy"
