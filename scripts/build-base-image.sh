#!/usr/bin/env bash
# Build a local base image from a Debian root filesystem, for `make image` on a
# machine where no image registry is reachable (python:3.12-slim cannot be
# pulled). Prints the image's tag on stdout.
#
#   python    dockwarden-local/python3:bookworm   python3, python3-venv, docker-compose (v1),
#             ca-certificates: the base of packaging/Dockerfile (BASE=...)
#   haproxy   dockwarden-local/haproxy:bookworm   haproxy: the base of the socket proxy
#             (packaging/socket-proxy/Dockerfile)
#
# The root filesystem is made with `debootstrap --variant=minbase` from the
# Debian mirror this machine's apt sources use (scripts/lib/debian-rootfs.sh,
# shared with scripts/build-real-images.sh), kept as a tarball under $CACHE_DIR
# and imported with `docker import`: the first build takes a minute or two, a
# rebuild seconds.
#
# Usage: scripts/build-base-image.sh python|haproxy [--force]
#   Builds the image when it does not exist; --force rebuilds it and its tarball.
# Needs: root (debootstrap), a running engine, debootstrap (scripts/ensure-docker.sh).
# Environment:
#   DOCKWARDEN_TEST_CACHE   where tarballs are kept (default /var/cache/dockwarden-test)
#   DEBIAN_MIRROR           use this mirror instead of the one in the apt sources
#   DEBIAN_SUITE            default bookworm
set -euo pipefail

CACHE_DIR=${DOCKWARDEN_TEST_CACHE:-/var/cache/dockwarden-test}
SUITE=${DEBIAN_SUITE:-bookworm}

log() { printf 'build-base-image: %s\n' "$*" >&2; }

# shellcheck source=lib/debian-rootfs.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-rootfs.sh"

flavour=""
force=0
for arg in "$@"; do
    case "$arg" in
        python|haproxy) flavour=$arg ;;
        --force|-f) force=1 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) log "unknown argument: $arg (expected python|haproxy [--force])"; exit 2 ;;
    esac
done
case "$flavour" in
    # python3-venv: `python3 -m venv` with pip (ensurepip); docker-compose: Debian's v1
    # for compose actions (it needs no docker CLI; the docker.io package that carries the
    # CLI brings the whole engine, and bookworm has no docker-cli package).
    python) include=python3,python3-venv,docker-compose,ca-certificates; image=dockwarden-local/python3:$SUITE ;;
    haproxy) include=haproxy; image=dockwarden-local/haproxy:$SUITE ;;
    *) log "which base? python or haproxy"; exit 2 ;;
esac

if [ "$force" -eq 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
    printf '%s\n' "$image"
    exit 0
fi

# Smaller image: translations (33 MB here) are not needed to run a daemon.
customize_base() {
    find "$1/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf -- {} +
}

tarball=$(rootfs_tarball "$CACHE_DIR" "$SUITE" "$include")
if [ "$force" -eq 1 ] || [ ! -s "$tarball" ]; then
    tarball=$(build_rootfs "$CACHE_DIR" "$SUITE" "$include" customize_base)
fi
docker import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --message "debootstrap $SUITE minbase + $include" \
    "$tarball" "$image" >/dev/null
log "imported $image ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec) from $tarball)"
printf '%s\n' "$image"
