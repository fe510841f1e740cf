#!/usr/bin/env bash
# Build the local test image dockwarden-test/busybox:latest: a root filesystem
# holding only the static busybox binary (sh, sleep, httpd, wget, ...) and its
# applet links, imported with `docker import` (no registry is needed).
#
# Usage: scripts/build-test-image.sh [--force]
#   Builds the image when it does not exist; --force rebuilds it anyway.
# Needs: a running engine (scripts/ensure-docker.sh) and /bin/busybox.
set -euo pipefail

IMAGE=${DOCKWARDEN_TEST_IMAGE:-dockwarden-test/busybox:latest}
BUSYBOX=${BUSYBOX:-/bin/busybox}

force=0
for arg in "$@"; do
    case "$arg" in
        --force|-f) force=1 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "build-test-image: unknown argument: $arg (expected --force)" >&2; exit 2 ;;
    esac
done

if [ "$force" -eq 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi

if [ ! -x "$BUSYBOX" ]; then
    echo "build-test-image: $BUSYBOX not found; run scripts/ensure-docker.sh (installs busybox-static)" >&2
    exit 1
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/dockwarden-rootfs.XXXXXX")
trap 'rm -rf -- "$root"' EXIT

mkdir -p "$root/bin" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done

tar -C "$root" -c . | docker import -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
echo "build-test-image: built $IMAGE" >&2
