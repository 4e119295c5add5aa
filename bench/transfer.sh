#!/usr/bin/env bash
# Moving 1 GiB of incompressible files (8 x 128 MiB) through nginx (TLS) + knitd, against the disk and
# nginx alone, each pair measured alternately, KNIT_BENCH_RUNS (3) times, medians printed:
#   knit data push DIR         vs  dd bs=1M conv=fdatasync of the same files       (target >= 80 %)
#   knit data pull -x ID + sync vs cp -r of the same tree + sync                   (target >= 80 %)
#   curl POST /api/data per wire format (Content-Type) vs dd
#   curl GET /api/data/ID per wire format (Accept)      vs nginx serving a tar of the tree from /static/
# The knit CLI has no option to force a format; it takes the best the server lists in /api/health.
# tar+gzip costs the server ~20x more CPU per byte, so it moves KNIT_BENCH_GZIP_FILES (2) of the files.
# Inputs are made once and kept in KNIT_BENCH_DATA (/tmp/knit-bench-data).
source "$(dirname "$0")/lib.sh"

RUNS=${KNIT_BENCH_RUNS:-3}
DATA=${KNIT_BENCH_DATA:-/tmp/knit-bench-data}
FILES=8
FILE_MIB=128
GZIP_FILES=${KNIT_BENCH_GZIP_FILES:-2}
CURL_MAX=120

build_products knitd knitadm knit

# Inputs, made once: tree/ (FILES x FILE_MIB MiB from /dev/urandom), archives of it, gz subset.
make_inputs() {
    if [ -s "$DATA/ready" ]; then return; fi
    log "creating $((FILES * FILE_MIB)) MiB of random files in $DATA (once)"
    rm -rf "$DATA"
    mkdir -p "$DATA/tree" "$DATA/gztree"
    local i
    for i in $(seq 0 $((FILES - 1))); do
        head -c $((FILE_MIB << 20)) /dev/urandom >"$DATA/tree/f$i.bin"
    done
    for i in $(seq 0 $((GZIP_FILES - 1))); do cp "$DATA/tree/f$i.bin" "$DATA/gztree/"; done
    tar -C "$DATA/tree" -cf "$DATA/tree.tar" .
    zstd -q -1 -T0 --check "$DATA/tree.tar" -o "$DATA/tree.tar.zst"
    tar -C "$DATA/gztree" -cf - . | gzip -1 >"$DATA/gztree.tar.gz"
    echo ok >"$DATA/ready"
}
make_inputs
TREE_BYTES=$(du -sb --apparent-size "$DATA/tree" | awk '{print $1}')
GZ_BYTES=$(du -sb --apparent-size "$DATA/gztree" | awk '{print $1}')

ROOT=$(mktemp -d /tmp/knit-bench-transfer.XXXXXX)
trap 'stop_started; rm -rf "$ROOT"' EXIT
init_instance "$ROOT"
start_instance "$ROOT"
ln -s "$DATA/tree.tar" "$ROOT/static/tree.tar"

# The CLI, as a user would set it up: its own HOME and a project directory.
mkdir -p "$ROOT/client" "$ROOT/project" "$ROOT/out"
knit() { (cd "$ROOT/project" && HOME=$ROOT/client "$BIN/knit" "$@"); }
knit init "$ROOT/handout" >/dev/null 2>&1 || { log "knit init failed"; knit init "$ROOT/handout"; exit 1; }
log "server formats: $(curl -s --cacert "$ROOT/tls/ca.crt" "$API/health")"

cat "$DATA/tree"/* "$DATA/tree.tar" "$DATA/tree.tar.zst" "$DATA/gztree.tar.gz" >/dev/null # page cache

declare -A secs # label -> "s1 s2 s3"
record() { secs[$1]+="$2 "; }

# timed LABEL CMD... : runs CMD after a sync (dirty pages of the previous step are not billed to it).
timed() {
    local label=$1 start
    shift
    sync
    start=$(now)
    "$@" || return $?
    record "$label" "$(elapsed "$start")"
}

dd_files() {
    mkdir -p "$ROOT/out/dd"
    local f
    for f in "$DATA/tree"/*; do
        dd if="$f" of="$ROOT/out/dd/${f##*/}" bs=1M conv=fdatasync status=none
    done
}

push_cli() { knit data push -t bench:transfer "$DATA/tree" >"$ROOT/push.json" 2>"$ROOT/push.err"; }
cp_tree() { cp -r "$DATA/tree" "$ROOT/out/cp" && sync; }
pull_cli() { knit data pull -x "$1" "$ROOT/out/pull" >/dev/null 2>"$ROOT/pull.err" && sync; }

# curl_up TYPE FILE -> prints knitId; fails on non-200
curl_up() {
    local code
    code=$(curl -sS --max-time $CURL_MAX --cacert "$ROOT/tls/ca.crt" -H "Authorization: Bearer $TOKEN" \
        -H "Content-Type: $1" -X POST -T "$2" -o "$ROOT/up.json" -w '%{http_code}' "$API/data?tag=bench%3Acurl")
    [ "$code" = 200 ] || { log "upload $1: HTTP $code $(cat "$ROOT/up.json")"; return 1; }
}
# curl_down ACCEPT ID
curl_down() {
    local code
    code=$(curl -sS --max-time $CURL_MAX --cacert "$ROOT/tls/ca.crt" -H "Authorization: Bearer $TOKEN" \
        -H "Accept: $1" -o /dev/null -w '%{http_code}' "$API/data/$2")
    [ "$code" = 200 ] || { log "download $1: HTTP $code"; return 1; }
}
static_down() {
    curl -sS --max-time $CURL_MAX --cacert "$ROOT/tls/ca.crt" -o /dev/null "https://127.0.0.1:$PORT/static/tree.tar"
}
knit_id() { sed -n 's/.*"knitId" *: *"\([^"]*\)".*/\1/p' "$1" | head -1; }

for run in $(seq "$RUNS"); do
    log "run $run/$RUNS"
    timed dd dd_files
    rm -rf "$ROOT/out/dd"
    timed push push_cli || { log "knit data push failed: $(cat "$ROOT/push.err")"; exit 1; }
    id=$(knit_id "$ROOT/push.json")
    [ -n "$id" ] || { log "no knitId in push output: $(head -c 300 "$ROOT/push.json")"; exit 1; }
    timed cp cp_tree
    rm -rf "$ROOT/out/cp"
    timed pull pull_cli "$id" || { log "knit data pull -x failed: $(cat "$ROOT/pull.err")"; exit 1; }
    cmp -s "$DATA/tree/f0.bin" "$ROOT/out/pull/$id/f0.bin" || { log "pulled content differs"; exit 1; }
    rm -rf "$ROOT/out/pull"

    timed up_tar curl_up application/x-tar "$DATA/tree.tar"
    tar_id=$(knit_id "$ROOT/up.json")
    timed up_zstd curl_up application/tar+zstd "$DATA/tree.tar.zst"
    timed up_gzip curl_up application/tar+gzip "$DATA/gztree.tar.gz"
    gz_id=$(knit_id "$ROOT/up.json")
    timed static static_down
    timed down_tar curl_down application/x-tar "$tar_id"
    timed down_zstd curl_down application/tar+zstd "$tar_id"
    timed down_gzip curl_down application/tar+gzip "$gz_id"
    # Uploaded Data stay until the instance is removed; keep the disk from filling across runs.
    rm -rf "$HOME_DIR/data/$id" "$HOME_DIR/data/$tar_id"
done

rate() { mibs "$2" "$(median ${secs[$1]})"; }
line() { # LABEL DESCRIPTION BYTES BASELINE_RATE
    local r
    r=$(rate "$1" "$3")
    printf '  %-44s %6s MiB/s  %7s   (s: %s)\n' "$2" "$r" "$(ratio "$r" "$4")" "${secs[$1]% }"
}
dd_rate=$(rate dd "$TREE_BYTES")
cp_rate=$(rate cp "$TREE_BYTES")
static_rate=$(rate static "$TREE_BYTES")
cat <<EOF

== transfer.sh: $((TREE_BYTES >> 20)) MiB in $FILES files (gzip rows: $((GZ_BYTES >> 20)) MiB), TLS via nginx, medians of $RUNS runs ==
                                                 rate        ratio to baseline
uploads (baseline: dd bs=1M conv=fdatasync, $dd_rate MiB/s)
$(line push "knit data push (CLI's choice, tar+zstd)" "$TREE_BYTES" "$dd_rate")    target >= 80 %
$(line up_tar "curl POST application/x-tar" "$TREE_BYTES" "$dd_rate")
$(line up_zstd "curl POST application/tar+zstd" "$TREE_BYTES" "$dd_rate")
$(line up_gzip "curl POST application/tar+gzip" "$GZ_BYTES" "$dd_rate")
downloads with extraction (baseline: cp -r + sync, $cp_rate MiB/s)
$(line pull "knit data pull -x + sync (tar+zstd)" "$TREE_BYTES" "$cp_rate")    target >= 80 %
downloads to /dev/null (baseline: nginx static tree.tar, $static_rate MiB/s)
$(line down_tar "curl GET Accept: application/x-tar" "$TREE_BYTES" "$static_rate")
$(line down_zstd "curl GET Accept: application/tar+zstd" "$TREE_BYTES" "$static_rate")
$(line down_gzip "curl GET Accept: application/tar+gzip" "$GZ_BYTES" "$static_rate")
EOF
