#!/bin/sh
# Builds localhost/knit-digits:1: Debian bookworm (debootstrap minbase) with python3 and
# python3-sklearn from Debian's own packages, plus this example's scripts in /opt/digits. Nothing comes
# from a container registry; the only network access is to the Debian mirror.
#
# usage: build-image.sh [--force] [TAG]     (TAG defaults to localhost/knit-digits:1)
# needs: root, debootstrap (installed with apt-get when missing), podman, a Debian mirror (DEBIAN_MIRROR, default http://deb.debian.org/debian).
# Downloaded .debs are kept in DEBOOTSTRAP_CACHE (default /var/cache/knit-digits) for rebuilds.
set -eu

force=no
tag=localhost/knit-digits:1
for arg in "$@"; do
    case "$arg" in
        --force) force=yes ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        -*) echo "build-image.sh: unknown option $arg" >&2; exit 2 ;;
        *) tag=$arg ;;
    esac
done

here=$(cd "$(dirname "$0")" && pwd)
# Use the executor's podman settings, so the image lands in the store knit-scheduler reads.
if [ -z "${CONTAINERS_CONF:-}" ] && [ -f "$here/../../containers/containers.conf" ]; then
    CONTAINERS_CONF="$here/../../containers/containers.conf"
    export CONTAINERS_CONF
fi

if [ "$force" = no ] && podman image exists "$tag"; then
    echo "$tag exists (use --force to rebuild)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "build-image.sh: debootstrap needs root" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null; then
    echo "installing debootstrap (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends debootstrap >/dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends debootstrap >/dev/null; } \
        || { echo "build-image.sh: cannot install debootstrap (apt-get install debootstrap)" >&2; exit 1; }
fi

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${DEBOOTSTRAP_CACHE:-/var/cache/knit-digits}
started=$(date +%s)
# The root file system is a few hundred MB: keep it off a small tmpfs /tmp.
work=$(mktemp -d "${TMPDIR:-/var/tmp}/knit-digits.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/rootfs
mkdir -p "$cache"

# debootstrap only lays down minbase (its own resolver picks poor alternatives); apt inside the
# root file system then installs python3-sklearn with its Depends and without Recommends.
echo "debootstrap --variant=minbase bookworm from $mirror (log: $work/build.log) ..."
if ! debootstrap --variant=minbase --cache-dir="$cache" bookworm "$root" "$mirror" >"$work/build.log" 2>&1; then
    tail -n 20 "$work/build.log" >&2
    echo "build-image.sh: debootstrap failed" >&2
    exit 1
fi
echo "debootstrap done after $(($(date +%s) - started)) s"
mkdir -p "$cache/apt"
find "$cache/apt" -name '*.deb' -exec cp {} "$root/var/cache/apt/archives/" \;
# bookworm's python3-scipy Depends on python3-pythran, a compiler scipy needs only when it is
# built; it drags in g++, boost and -dev packages (the root file system grows from 0.5 to 1.3 GB).
# An empty package of that name, held, satisfies the dependency without them.
mkdir -p "$work/stub/DEBIAN"
cat >"$work/stub/DEBIAN/control" <<'CONTROL'
Package: python3-pythran
Version: 0.0~knit.stub
Architecture: all
Maintainer: Knit examples <root@localhost>
Description: empty stand-in for the Pythran compiler
 python3-scipy declares python3-pythran, but its installed modules never import it.
CONTROL
dpkg-deb --root-owner-group --build "$work/stub" "$root/tmp/python3-pythran-stub.deb" >/dev/null
if ! { chroot "$root" dpkg -i /tmp/python3-pythran-stub.deb && chroot "$root" apt-mark hold python3-pythran &&
    rm "$root/tmp/python3-pythran-stub.deb" && chroot "$root" apt-get update &&
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-sklearn
} >>"$work/build.log" 2>&1; then
    tail -n 20 "$work/build.log" >&2
    echo "build-image.sh: apt-get install in the root file system failed" >&2
    exit 1
fi
find "$root/var/cache/apt/archives" -name '*.deb' -exec cp -n {} "$cache/apt/" \;
echo "python3-sklearn installed after $(($(date +%s) - started)) s; rootfs $(du -sh "$root" | cut -f1)"

# What a container that only runs Python never reads: package caches and lists, documentation,
# translations, logs, and the test suites shipped inside numpy/scipy/sklearn.
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian \
    "$root"/usr/share/locale/* "$root"/var/log/* "$root"/etc/resolv.conf "$root"/dev/* "$root"/proc/* "$root"/sys/* "$root"/run/*
find "$root/usr/lib/python3/dist-packages" -depth -type d -name tests -exec rm -rf {} +

mkdir -p "$root/opt/digits" "$root/in" "$root/out"
cp "$here"/scripts/*.py "$root/opt/digits/"
echo "rootfs after cleanup $(du -sh "$root" | cut -f1)"

# ENTRYPOINT/CMD mirror the Knitfab tutorial's training image, so `knit plan template` on this
# image proposes the training Plan; validation.py and prepare.py are chosen by overriding the
# entrypoint (the Plans do that).
previous=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
tar -C "$root" --numeric-owner -cf - . | podman import --quiet \
    --change 'WORKDIR /opt/digits' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
    --change 'ENTRYPOINT ["python3", "-u", "train.py"]' \
    --change 'CMD ["--dataset", "/in/dataset", "--save-to", "/out/model"]' \
    - "$tag" >/dev/null

# Proves the image can import what the scripts need, with the executor's runtime settings.
podman --runtime runc --cgroup-manager cgroupfs run --rm --network none --entrypoint '["python3", "-c"]' "$tag" \
    'import sklearn, numpy, scipy; print("scikit-learn", sklearn.__version__, "numpy", numpy.__version__, "scipy", scipy.__version__)'
# A rebuild leaves the old image untagged; drop it unless something still uses it (another tag, a
# container), in which case podman refuses and it stays.
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$tag")" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
fi
size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "built $tag: $((size / 1000000)) MB in $(($(date +%s) - started)) s"
