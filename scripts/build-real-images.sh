#!/usr/bin/env bash
# Build the two "real daemon" test images, from one Debian root filesystem:
#
#   dockwarden-test/nginx:latest   nginx -g 'daemon off;'    STOPSIGNAL SIGQUIT  (nginx's graceful stop)
#   dockwarden-test/httpd:latest   apache2 -DFOREGROUND      STOPSIGNAL SIGWINCH (the official httpd image's)
#   (both FROM dockwarden-test/debian-web:bookworm, the imported root filesystem)
#
# No image registry is reachable, so the root filesystem is made with
# `debootstrap --variant=minbase --include=nginx-light,apache2` from the Debian
# mirror this machine's apt sources already use (read from /etc/apt/sources.list
# and /etc/apt/sources.list.d/*; nothing is hard-coded), `docker import`ed, and
# given each daemon's CMD, environment and STOPSIGNAL by a short build. The
# tarball is cached under $CACHE_DIR, so a rebuild on the same machine (removed
# images, a fresh engine) takes seconds; the first build takes about two minutes.
#
# Usage: scripts/build-real-images.sh [--force]
#   Builds the images that do not exist; --force rebuilds both and the tarball.
# Needs: root (debootstrap), a running engine, the package debootstrap
#   (scripts/ensure-docker.sh installs it).
# Environment:
#   DOCKWARDEN_TEST_CACHE   where the rootfs tarball is kept (default /var/cache/dockwarden-test)
#   DEBIAN_MIRROR           use this mirror instead of the one in the apt sources
#   DEBIAN_SUITE            default bookworm
set -euo pipefail

CACHE_DIR=${DOCKWARDEN_TEST_CACHE:-/var/cache/dockwarden-test}
SUITE=${DEBIAN_SUITE:-bookworm}
INCLUDE=nginx-light,apache2
NGINX_IMAGE=dockwarden-test/nginx:latest
HTTPD_IMAGE=dockwarden-test/httpd:latest
# The imported root filesystem both images are built on.
BASE_IMAGE=dockwarden-test/debian-web:$SUITE
# The tarball's name carries the suite and the package list: changing either builds a new one.
TARBALL="$CACHE_DIR/rootfs-$SUITE-minbase-${INCLUDE//,/-}.tar"  # = rootfs_tarball (lib/debian-rootfs.sh)

log() { printf 'build-real-images: %s\n' "$*" >&2; }

force=0
for arg in "$@"; do
    case "$arg" in
        --force|-f) force=1 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) log "unknown argument: $arg (expected --force)"; exit 2 ;;
    esac
done

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

if [ "$force" -eq 0 ] && have_image "$NGINX_IMAGE" && have_image "$HTTPD_IMAGE"; then
    exit 0
fi

# The debootstrap helpers (debian_mirror, build_rootfs), shared with scripts/build-base-image.sh.
# shellcheck source=lib/debian-rootfs.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-rootfs.sh"

# apache2 runs without apache2ctl (which would sit as PID 1 and swallow the stop
# signal): the runtime directories that apache2ctl would make are made here.
# /run itself, never var/run or var/lock: those are absolute symlinks that
# would lead mkdir out of the root filesystem onto this host.
customize_web() {
    local r=$1
    mkdir -p "$r/run/apache2" "$r/run/lock/apache2"
    echo "ServerName localhost" >"$r/etc/apache2/conf-available/servername.conf"
    ln -sf ../conf-available/servername.conf "$r/etc/apache2/conf-enabled/servername.conf"
}

build_rootfs_web() {
    build_rootfs "$CACHE_DIR" "$SUITE" "$INCLUDE" customize_web >/dev/null || exit 1
}

need_base=0
if [ "$force" -eq 1 ] || ! have_image "$BASE_IMAGE"; then
    need_base=1
fi
if [ "$need_base" -eq 1 ] && { [ "$force" -eq 1 ] || [ ! -s "$TARBALL" ]; }; then
    build_rootfs_web
fi

# `docker import --change` takes no STOPSIGNAL on Engine 20.10 (only CMD, ENV, EXPOSE, ...),
# so the rootfs is imported once as a base image and each image is a two-line
# build on it (the classic builder: FROM a local image needs no registry).
if [ "$need_base" -eq 1 ]; then
    docker import --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        "$TARBALL" "$BASE_IMAGE" >/dev/null
    log "imported $BASE_IMAGE"
fi

# build_image TAG DOCKERFILE-TEXT: build from an empty context, Dockerfile on stdin.
build_image() {
    local ctx
    ctx=$(mktemp -d "${TMPDIR:-/tmp}/dockwarden-build.XXXXXX")
    # The classic builder's deprecation notice goes to stderr: shown only on failure.
    if ! printf '%s\n' "$2" | DOCKER_BUILDKIT=0 docker build -q -t "$1" -f - "$ctx" >/dev/null 2>"$ctx.err"; then
        cat "$ctx.err" >&2
        rm -rf -- "$ctx" "$ctx.err"
        log "docker build of $1 failed"
        exit 1
    fi
    rm -f -- "$ctx.err"
    rm -rf -- "$ctx"
    log "built $1"
}

if [ "$force" -eq 1 ] || ! have_image "$NGINX_IMAGE"; then
    build_image "$NGINX_IMAGE" "FROM $BASE_IMAGE
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD [\"nginx\", \"-g\", \"daemon off;\"]"
fi

if [ "$force" -eq 1 ] || ! have_image "$HTTPD_IMAGE"; then
    # The variables /etc/apache2/envvars would set (apache2 refuses to start without them).
    build_image "$HTTPD_IMAGE" "FROM $BASE_IMAGE
ENV APACHE_RUN_USER=www-data APACHE_RUN_GROUP=www-data APACHE_RUN_DIR=/run/apache2 \\
    APACHE_PID_FILE=/run/apache2/apache2.pid APACHE_LOCK_DIR=/run/lock/apache2 \\
    APACHE_LOG_DIR=/var/log/apache2 LANG=C
EXPOSE 80
STOPSIGNAL SIGWINCH
CMD [\"/usr/sbin/apache2\", \"-DFOREGROUND\"]"
fi
