#!/usr/bin/env bash
# make-tls.sh OUTDIR NAME...
# Creates a private CA (ca.key, ca.crt; 10 years) and a server certificate (server.key,
# server.crt; 825 days, the longest lifetime Apple clients accept) signed by it, with every NAME
# as a subjectAltName (IP addresses as IP:, anything else as DNS:). Existing files are kept, so
# re-running never invalidates certificates that clients already trust.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 OUTDIR NAME..." >&2
    exit 2
fi
out=$1
shift
mkdir -p "$out"
chmod 0755 "$out"
umask 077

if [ ! -s "$out/ca.key" ] || [ ! -s "$out/ca.crt" ]; then
    openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days 3650 \
        -keyout "$out/ca.key" -out "$out/ca.crt" \
        -subj "/CN=Knit CA $(hostname)" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    chmod 0644 "$out/ca.crt"
fi

if [ ! -s "$out/server.key" ] || [ ! -s "$out/server.crt" ]; then
    san=""
    seen=" "
    for name in "$@"; do
        [ -n "$name" ] || continue
        case "$seen" in *" $name "*) continue ;; esac
        seen="$seen$name "
        # IPv4 or IPv6 literal -> IP:, everything else -> DNS:
        if [[ $name =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || [[ $name == *:* ]]; then
            san="${san:+$san,}IP:$name"
        else
            san="${san:+$san,}DNS:$name"
        fi
    done
    first=$1
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cat >"$tmp/ext.cnf" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EXT
    openssl req -new -newkey rsa:2048 -sha256 -nodes \
        -keyout "$tmp/server.key" -out "$tmp/server.csr" -subj "/CN=$first" 2>/dev/null
    openssl x509 -req -sha256 -days 825 -in "$tmp/server.csr" \
        -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial -CAserial "$tmp/ca.srl" \
        -extfile "$tmp/ext.cnf" -out "$tmp/server.crt" 2>/dev/null
    mv "$tmp/server.key" "$out/server.key"
    mv "$tmp/server.crt" "$out/server.crt"
    chmod 0644 "$out/server.crt"
fi
