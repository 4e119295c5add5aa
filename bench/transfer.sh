#!/usr/bin/env bash
# Moving 1 GiB of incompressible files (8 x 128 MiB) through nginx (TLS) + knitd, against the disk and
# nginx alone, each pair measured alternately, KNIT_BENCH_RUNS (3) times, medians printed:
#   knit data push DIR         vs  dd bs=1M conv=fdatasync of the same files       (target >= 80 %)
#   knit data pull -x ID + sync vs cp -r of the same tree + sync                   (target >= 80 %)
#   curl POST /api/data per wire format (Content-Type) vs dd
#   curl GET /api/data/ID per wire format (Accept)      vs nginx serving a tar of the tree from /static/
#   100,000 files of 1 KiB (KNIT_BENCH_SMALL_FILES): knit data push / pull -x + sync vs tar -cf - | tar -xf - + sync
# The CLI runs with its default format (the server's first: tar+zstd) and with --format tar; the max RSS of push and
# pull -x (GNU time) is printed for both, at 1 GiB and, once after the runs, at KNIT_BENCH_RSS_GIB (4) GiB side by side:
# bounded memory shows as figures that do not grow with the size (0 skips the large transfers, about 2 minutes).
# The large tree is KNIT_BENCH_RSS_GIB hard-linked copies of the 1 GiB tree (no extra disk for the input; zstd level 1
# looks back 512 KiB, so the repeats 1 GiB apart stay incompressible).
# tar+gzip costs the server ~20x more CPU per byte, so it moves KNIT_BENCH_GZIP_FILES (2) of the files.
# Inputs are made once and kept in KNIT_BENCH_DATA (/tmp/knit-bench-data).
source "$(dirname "$0")/lib.sh"

RUNS=${KNIT_BENCH_RUNS:-3}
DATA=${KNIT_BENCH_DATA:-/tmp/knit-bench-data}
FILES=8
FILE_MIB=128
GZIP_FILES=${KNIT_BENCH_GZIP_FILES:-2}
SMALL_FILES=${KNIT_BENCH_SMALL_FILES:-100000}
RSS_GIB=${KNIT_BENCH_RSS_GIB:-4}
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
# SMALL_FILES files of 1 KiB of random bytes, 1,000 to a directory; made once per count.
make_small() {
    SMALL="$DATA/small-$SMALL_FILES"
    if [ -s "$SMALL.ready" ]; then return; fi
    log "creating $SMALL_FILES files of 1 KiB in $SMALL (once)"
    rm -rf "$SMALL"
    python3 - "$SMALL" "$SMALL_FILES" <<'PY'
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    d = os.path.join(root, "d%03d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(os.urandom(1024))
PY
    echo ok >"$SMALL.ready"
}
make_small
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

# GNU time writes the max RSS (KiB) of the knit process to $ROOT/rss.<label>.
# push_cli DIR [knit options...]
push_cli() {
    local dir=$1
    shift
    (cd "$ROOT/project" && HOME=$ROOT/client /usr/bin/time -f %M -o "$ROOT/rss.push" \
        "$BIN/knit" data push -t bench:transfer "$@" "$dir") >"$ROOT/push.json" 2>"$ROOT/push.err"
}
cp_tree() { cp -r "$DATA/tree" "$ROOT/out/cp" && sync; }
# pull_cli ID [knit options...]
pull_cli() {
    local id=$1
    shift
    (cd "$ROOT/project" && HOME=$ROOT/client /usr/bin/time -f %M -o "$ROOT/rss.pull" \
        "$BIN/knit" data pull -x "$@" "$id" "$ROOT/out/pull") >/dev/null 2>"$ROOT/pull.err" && sync
}
tar_pipe() { mkdir -p "$ROOT/out/tar" && tar -C "$SMALL" -cf - . | tar -C "$ROOT/out/tar" -xf - && sync; }

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
    timed push push_cli "$DATA/tree" || { log "knit data push failed: $(cat "$ROOT/push.err")"; exit 1; }
    record rss_push "$(cat "$ROOT/rss.push")"
    id=$(knit_id "$ROOT/push.json")
    [ -n "$id" ] || { log "no knitId in push output: $(head -c 300 "$ROOT/push.json")"; exit 1; }
    timed cp cp_tree
    rm -rf "$ROOT/out/cp"
    timed pull pull_cli "$id" || { log "knit data pull -x failed: $(cat "$ROOT/pull.err")"; exit 1; }
    record rss_pull "$(cat "$ROOT/rss.pull")"
    cmp -s "$DATA/tree/f0.bin" "$ROOT/out/pull/$id/f0.bin" || { log "pulled content differs"; exit 1; }
    rm -rf "$ROOT/out/pull"
    # Plain tar both ways, beside the default: on loopback it copies instead of compressing.
    timed push_plain push_cli "$DATA/tree" --format tar ||
        { log "push (plain tar) failed: $(cat "$ROOT/push.err")"; exit 1; }
    record rss_push_plain "$(cat "$ROOT/rss.push")"
    plain_id=$(knit_id "$ROOT/push.json")
    timed pull_plain pull_cli "$plain_id" --format tar ||
        { log "pull (plain tar) failed: $(cat "$ROOT/pull.err")"; exit 1; }
    record rss_pull_plain "$(cat "$ROOT/rss.pull")"
    rm -rf "$ROOT/out/pull" "$HOME_DIR/data/$plain_id"

    # Nothing is deleted between the small-file steps, and the baseline and the push take turns going first:
    # on ext4 without a journal (this machine's) every new inode skips the group's inodes deleted in the last
    # minute or more (the kernel's recently_deleted()), each skip a buffer lookup, so a step right after
    # `rm -rf` of 100,000 files creates its own 100,000 several times slower than one before it.
    if [ $((run % 2)) = 1 ]; then timed small_tar tar_pipe; fi
    timed small_push push_cli "$SMALL" || { log "knit data push (small) failed: $(cat "$ROOT/push.err")"; exit 1; }
    small_id=$(knit_id "$ROOT/push.json")
    if [ $((run % 2)) = 0 ]; then timed small_tar tar_pipe; fi
    timed small_pull pull_cli "$small_id" ||
        { log "knit data pull -x (small) failed: $(cat "$ROOT/pull.err")"; exit 1; }
    diff -r "$SMALL" "$ROOT/out/pull/$small_id" >/dev/null || { log "pulled small files differ"; exit 1; }
    rm -rf "$ROOT/out/pull" "$ROOT/out/tar" "$HOME_DIR/data/$small_id"

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

# The CLI's memory at RSS_GIB GiB, once per format: push and pull -x as above, content checked, then deleted.
big_rss() {
    local big=$DATA/tree-${RSS_GIB}g copy f big_id
    if [ ! -s "$big.ready" ]; then
        rm -rf "$big"
        for copy in $(seq "$RSS_GIB"); do
            mkdir -p "$big/c$copy"
            for f in "$DATA/tree"/*; do ln "$f" "$big/c$copy/"; done
        done
        echo ok >"$big.ready"
    fi
    log "max RSS at $RSS_GIB GiB"
    for fmt in default tar; do
        local opt=()
        [ "$fmt" = default ] || opt=(--format "$fmt")
        timed "big_push_$fmt" push_cli "$big" "${opt[@]}" || { log "$RSS_GIB GiB push failed: $(cat "$ROOT/push.err")"; exit 1; }
        record "rss_big_push_$fmt" "$(cat "$ROOT/rss.push")"
        big_id=$(knit_id "$ROOT/push.json")
        timed "big_pull_$fmt" pull_cli "$big_id" "${opt[@]}" ||
            { log "$RSS_GIB GiB pull -x failed: $(cat "$ROOT/pull.err")"; exit 1; }
        record "rss_big_pull_$fmt" "$(cat "$ROOT/rss.pull")"
        cmp -s "$DATA/tree/f0.bin" "$ROOT/out/pull/$big_id/c$RSS_GIB/f0.bin" ||
            { log "pulled content differs ($RSS_GIB GiB)"; exit 1; }
        rm -rf "$ROOT/out/pull" "$HOME_DIR/data/$big_id"
    done
}
if [ "$RSS_GIB" -gt 0 ]; then big_rss; fi

rate() { mibs "$2" "$(median ${secs[$1]})"; }
line() { # LABEL DESCRIPTION BYTES BASELINE_RATE
    local r
    r=$(rate "$1" "$3")
    printf '  %-44s %6s MiB/s  %7s   (s: %s)\n' "$2" "$r" "$(ratio "$r" "$4")" "${secs[$1]% }"
}
dd_rate=$(rate dd "$TREE_BYTES")
cp_rate=$(rate cp "$TREE_BYTES")
files_line() { # LABEL DESCRIPTION -> files/s and ratio to tar | tar
    local t base
    t=$(median ${secs[$1]})
    base=$(median ${secs[small_tar]})
    printf '  %-44s %6.0f files/s  %7s   (s: %s)\n' "$2" \
        "$(awk -v n="$SMALL_FILES" -v s="$t" 'BEGIN { print n / s }')" \
        "$(ratio "$base" "$t")" "${secs[$1]% }"
}
mib_of_kib() { awk -v k="$(median $1)" 'BEGIN { printf "%.0f", k / 1024 }'; }
rss_lines() { # max RSS of the CLI at 1 GiB (median) and at RSS_GIB GiB (one run), and the rate of the large one
    local big="" label
    [ "$RSS_GIB" -gt 0 ] && big=" | $RSS_GIB GiB (MiB/s)"
    printf 'max RSS of the CLI, MiB: 1 GiB%s\n' "$big"
    for label in push:push:default pull:pull:default push_plain:push:tar pull_plain:pull:tar; do
        IFS=: read -r small dir fmt <<<"$label"
        big=""
        if [ "$RSS_GIB" -gt 0 ]; then
            big=" | $(mib_of_kib "${secs[rss_big_${dir}_$fmt]}") ($(rate "big_${dir}_$fmt" $((TREE_BYTES * RSS_GIB))))"
        fi
        printf '  %-44s %6s%s\n' "knit data $dir$([ "$dir" = pull ] && echo " -x") ($fmt)" \
            "$(mib_of_kib "${secs[rss_$small]}")" "$big"
    done
}
static_rate=$(rate static "$TREE_BYTES")
cat <<EOF

== transfer.sh: $((TREE_BYTES >> 20)) MiB in $FILES files (gzip rows: $((GZ_BYTES >> 20)) MiB), TLS via nginx, medians of $RUNS runs ==
                                                 rate        ratio to baseline
uploads (baseline: dd bs=1M conv=fdatasync, $dd_rate MiB/s)
$(line push "knit data push (default: tar+zstd)" "$TREE_BYTES" "$dd_rate")    target >= 80 %
$(line push_plain "knit data push --format tar" "$TREE_BYTES" "$dd_rate")
$(line up_tar "curl POST application/x-tar" "$TREE_BYTES" "$dd_rate")
$(line up_zstd "curl POST application/tar+zstd" "$TREE_BYTES" "$dd_rate")
$(line up_gzip "curl POST application/tar+gzip" "$GZ_BYTES" "$dd_rate")
downloads with extraction (baseline: cp -r + sync, $cp_rate MiB/s)
$(line pull "knit data pull -x + sync (default: tar+zstd)" "$TREE_BYTES" "$cp_rate")    target >= 80 %
$(line pull_plain "knit data pull -x --format tar + sync" "$TREE_BYTES" "$cp_rate")
$(rss_lines)
$SMALL_FILES files of 1 KiB (baseline: tar -cf - | tar -xf - + sync, $(median ${secs[small_tar]}) s)
$(files_line small_push "knit data push")    target >= 80 %
$(files_line small_pull "knit data pull -x + sync")    target >= 80 %
downloads to /dev/null (baseline: nginx static tree.tar, $static_rate MiB/s)
$(line down_tar "curl GET Accept: application/x-tar" "$TREE_BYTES" "$static_rate")
$(line down_zstd "curl GET Accept: application/tar+zstd" "$TREE_BYTES" "$static_rate")
$(line down_gzip "curl GET Accept: application/tar+gzip" "$GZ_BYTES" "$static_rate")
EOF
