# Shared helpers for the bench/*.sh scripts; source it, do not run it.
# Every process started here is recorded by pid and stopped by pid on exit; nothing else is touched.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
SCRATCH=${KNIT_BENCH_SCRATCH:-$REPO/.build-bench}
BIN=$SCRATCH/release
BENCH_BIN=$BENCH_DIR/.build-bench/release
STARTED_PIDS=()

log() { printf '%s\n' "$*" >&2; }

# build PRODUCT... : release builds of the root package's products into $SCRATCH.
build_products() {
    local product
    for product in "$@"; do
        if [ "${KNIT_BENCH_NO_BUILD:-0}" = 1 ] && [ -x "$BIN/$product" ]; then continue; fi
        log "building $product (release)"
        (cd "$REPO" && swift build -c release --scratch-path "$SCRATCH" --product "$product" 2>&1 | tail -3) >&2
        [ -x "$BIN/$product" ] || { log "cannot build $product"; return 1; }
    done
}

build_bench_helper() {
    if [ "${KNIT_BENCH_NO_BUILD:-0}" = 1 ] && [ -x "$BENCH_BIN/knit-bench-store" ]; then return; fi
    log "building knit-bench-store (release)"
    (cd "$REPO" && swift build -c release --package-path bench --scratch-path bench/.build-bench 2>&1 | tail -3) >&2
    [ -x "$BENCH_BIN/knit-bench-store" ]
}

stop_started() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_instance ROOT : a Knit home under ROOT/home with TLS, user "bench" and its handout, knitd and
# nginx (rendered from nginx/knit.conf.template, plus three comparison locations: `= /static200`,
# `/static/` aliased to ROOT/static/, and `= /ceiling`, FastCGI to ROOT/ceiling.sock, where bench/query.sh
# starts its minimal C responder). Sets PORT, API, TOKEN, KNITD_PID, NGINX_PID.
# Call init_instance first when the store must be filled before knitd opens it. KNIT_BENCH_KNITD_ARGS adds knitd
# options (e.g. --slots-per-user for many concurrent uploads of one user).
init_instance() {
    local root=$1
    HOME_DIR=$root/home
    mkdir -p "$HOME_DIR/run" "$HOME_DIR/archive" "$root/nginx/tmp" "$root/log" "$root/static"
    PORT=$(free_port)
    API=https://127.0.0.1:$PORT/api
    "$REPO/installer/make-tls.sh" "$root/tls" 127.0.0.1 localhost >/dev/null
    "$BIN/knitadm" --home "$HOME_DIR" init >/dev/null
    "$BIN/knitadm" --home "$HOME_DIR" user add bench --role user --handout "$root/handout" \
        --api-root "$API" --ca "$root/tls/ca.crt" 2>/dev/null
    TOKEN=$(sed -n 's/^token: //p' "$root/handout")
}

start_instance() {
    local root=$1
    local socket=$HOME_DIR/run/knitd.sock
    "$BIN/knitd" --home "$HOME_DIR" --socket "$socket" --socket-mode 0666 --threads 48 --transfer-slots 32 \
        --log-level warning ${KNIT_BENCH_KNITD_ARGS:-} >"$root/log/knitd.log" 2>&1 &
    KNITD_PID=$!
    STARTED_PIDS+=("$KNITD_PID")

    local extra="        location = /static200 { default_type application/json; return 200 '{}'; }\n"
    extra+="        location /static/ { alias $root/static/; }\n"
    extra+="        location = /ceiling { fastcgi_pass unix:$root/ceiling.sock; }\n\n"
    sed -e "s|@USER@|root root|g" -e "s|@PIDFILE@|$root/nginx/nginx.pid|g" -e "s|@LOGDIR@|$root/log|g" \
        -e "s|@TEMPDIR@|$root/nginx/tmp|g" -e "s|@LISTEN@|127.0.0.1:$PORT|g" \
        -e "s|@SERVER_NAMES@|127.0.0.1 localhost|g" -e "s|@CERT@|$root/tls/server.crt|g" \
        -e "s|@KEY@|$root/tls/server.key|g" -e "s|@SOCKET@|$socket|g" -e "s|@WEBROOT@|$REPO/web|g" \
        -e "s|@HOME@|$HOME_DIR|g" -e "s|@UPLOAD_LIMIT@|0|g" -e "s|@REGISTRY@|off|g" -e "s|@REGISTRY_SOCKET@|$root/run/none.sock|g" \
        -e "s|^\( *\)# Static web console.|$extra\1# Static web console.|" \
        "$REPO/nginx/knit.conf.template" >"$root/nginx/nginx.conf"
    if grep -q '@[A-Z_]*@' "$root/nginx/nginx.conf"; then log "unrendered placeholder in nginx.conf"; return 1; fi
    grep -q 'location = /static200' "$root/nginx/nginx.conf" || { log "could not add bench locations"; return 1; }
    /usr/sbin/nginx -e "$root/log/nginx-error.log" -p "$root/nginx/" -c "$root/nginx/nginx.conf" \
        -g 'daemon off;' >"$root/log/nginx.out" 2>&1 &
    NGINX_PID=$!
    STARTED_PIDS+=("$NGINX_PID")

    local i
    for i in $(seq 100); do
        if curl -sf --cacert "$root/tls/ca.crt" "$API/health" >/dev/null 2>&1; then return 0; fi
        kill -0 "$KNITD_PID" 2>/dev/null || { log "knitd exited"; tail "$root/log/knitd.log" >&2; return 1; }
        kill -0 "$NGINX_PID" 2>/dev/null || { log "nginx exited"; cat "$root/log/nginx.out" >&2; return 1; }
        sleep 0.1
    done
    log "instance did not become healthy"
    return 1
}

# median N... (numbers, any order)
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# ratio A B -> A/B as a percentage with one decimal
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.1f%%", 100 * a / b }'; }

# mibs BYTES SECONDS -> MiB/s
mibs() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / 1048576 / s }'; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
