#!/bin/sh
# Builds the quickstart image: a static busybox and nothing else, made from local files only
# (no registry, no network), so tests and first-time users can run Knit pipelines offline.
#
# usage: build-image.sh [--force] [TAG]     (TAG defaults to localhost/knit-quickstart:1)
# needs: podman and Debian's busybox-static (/bin/busybox must be the static build).
set -eu

force=no
tag=localhost/knit-quickstart:1
for arg in "$@"; do
    case "$arg" in
        --force) force=yes ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        -*) echo "build-image.sh: unknown option $arg" >&2; exit 2 ;;
        *) tag=$arg ;;
    esac
done

# Use the same podman settings as the executor, so the image lands in the store it reads.
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${CONTAINERS_CONF:-}" ] && [ -f "$here/../../containers/containers.conf" ]; then
    CONTAINERS_CONF="$here/../../containers/containers.conf"
    export CONTAINERS_CONF
fi

if [ "$force" = no ] && podman image exists "$tag"; then
    echo "$tag exists (use --force to rebuild)"
    exit 0
fi

busybox=${BUSYBOX:-/bin/busybox}
# A dynamically linked busybox would need its libc inside the image.
if ! "$busybox" --help >/dev/null 2>&1 || ldd "$busybox" >/dev/null 2>&1; then
    echo "build-image.sh: $busybox is missing or not static (apt-get install busybox-static)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/knit-quickstart.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/rootfs
mkdir -p "$root/bin" "$root/in" "$root/out" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in sh cat echo ls wc sleep dd head tail cp mkdir true false sort; do
    ln -s busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
tar -C "$root" -cf "$work/rootfs.tar" .

podman import --quiet \
    --change 'ENTRYPOINT ["/bin/sh", "-c"]' \
    --change 'CMD ["echo hello from knit-quickstart"]' \
    --change 'ENV PATH=/bin' \
    --change 'WORKDIR /' \
    "$work/rootfs.tar" "$tag" >/dev/null
echo "built $tag"
