#!/usr/bin/env bash
# Build dockwarden's container image: dockwarden:latest and dockwarden:<version>
# from packaging/Dockerfile (`make image`).
#
# 1. The base: $BASE (default python:3.12-slim) when the engine has it or can
#    pull it; else, where no registry is reachable, the local base
#    dockwarden-local/python3:bookworm (scripts/build-base-image.sh: debootstrap
#    from this machine's Debian mirror, `docker import`).
# 2. The wheelhouse, on the host: binary wheels of dockwarden's dependencies (and
#    setuptools + wheel) for the base's Python version and platform, with
#    `pip download` (PyPI, or whatever this machine's pip is configured to use),
#    under build/wheelhouse/py<X.Y>-<arch>/. Downloaded again only when
#    pyproject.toml changes; the image build itself needs no network.
# 3. `docker build` (the classic builder: no buildx here) with BASE and WHEELHOUSE.
#
# The image carries the label dockwarden.source=<hash of what it is built from>
# (scripts/build-image.sh --source-hash prints the current one), so a test can
# tell a current image from a stale one.
#
# Usage: scripts/build-image.sh [--force]    (--force: download the wheelhouse again)
#        scripts/build-image.sh --proxy      the socket proxy, dockwarden-socket-proxy:latest
#                                            (packaging/socket-proxy; base debian:bookworm-slim,
#                                            or the local dockwarden-local/haproxy:bookworm)
#        scripts/build-image.sh --source-hash [--proxy]
# Environment:
#   BASE        the base image (default python:3.12-slim, with the local fallback)
#   IMAGE       the repository name (default dockwarden)
#   PYTHON      the host's python with pip, for the downloads (default python3)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
IMAGE=${IMAGE:-dockwarden}
PYTHON=${PYTHON:-python3}
WANT_BASE=${BASE:-python:3.12-slim}
force=0
proxy=0
print_hash=0
for arg in "$@"; do
    case "$arg" in
        --force|-f) force=1 ;;
        --proxy) proxy=1 ;;
        --source-hash) print_hash=1 ;;
        -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
        *) echo "build-image: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

log() { printf 'build-image: %s\n' "$*" >&2; }

# source_hash PATH...: sha256 of the names and contents of the files an image is built from.
source_hash() {
    find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 \
        | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
}
if [ "$proxy" -eq 1 ]; then
    hash=$(source_hash packaging/socket-proxy)
else
    hash=$(source_hash pyproject.toml README.md src packaging examples/policy.toml examples/inventory)
fi
if [ "$print_hash" -eq 1 ]; then
    printf '%s\n' "$hash"
    exit 0
fi

# --- the socket proxy: HAProxy from Debian on the base, the config copied in.
if [ "$proxy" -eq 1 ]; then
    want=${BASE:-debian:bookworm-slim}
    if docker image inspect "$want" >/dev/null 2>&1 || docker pull -q "$want" >/dev/null 2>&1; then
        base=$want
    else
        log "cannot pull $want (no registry reachable?): using a local Debian base instead"
        base=$(bash scripts/build-base-image.sh haproxy)
    fi
    DOCKER_BUILDKIT=0 docker build -q -f packaging/socket-proxy/Dockerfile --build-arg BASE="$base" \
        --label dockwarden.source="$hash" -t "${IMAGE}-socket-proxy:latest" . >/dev/null
    docker image prune -f --filter label=dockwarden.source >/dev/null  # the previous build, now dangling
    log "built ${IMAGE}-socket-proxy:latest (base $base): $(docker image inspect -f '{{.Size}}' "${IMAGE}-socket-proxy:latest" | numfmt --to=iec)"
    exit 0
fi

# --- 1. the base
if docker image inspect "$WANT_BASE" >/dev/null 2>&1; then
    base=$WANT_BASE
elif docker pull -q "$WANT_BASE" >/dev/null 2>&1; then
    base=$WANT_BASE
else
    log "cannot pull $WANT_BASE (no registry reachable?): using a local Debian base instead"
    base=$(bash scripts/build-base-image.sh python)
fi
log "base $base"

# The base's Python (X.Y), glibc (major.minor) and machine, for the wheels' tags.
read -r pyver glibc arch < <(docker run --rm --entrypoint python3 "$base" -c \
    'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.libc_ver()[1], platform.machine())')
version=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')

# --- 2. the wheelhouse
wheelhouse="build/wheelhouse/py${pyver}-${arch}"
stamp="$wheelhouse/.pyproject.sha256"
want_stamp="$(sha256sum pyproject.toml | cut -d' ' -f1) $base"
if [ "$force" -eq 1 ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want_stamp" ]; then
    log "wheelhouse $wheelhouse: downloading wheels for Python $pyver, glibc $glibc, $arch"
    rm -rf -- "$wheelhouse"
    mkdir -p "$wheelhouse"
    # Every manylinux tag this glibc can run (PEP 600: manylinux_2_<m>), and the legacy aliases.
    platforms=()
    for ((m = ${glibc#*.}; m >= 17; m--)); do platforms+=(--platform "manylinux_2_${m}_${arch}"); done
    platforms+=(--platform "manylinux2014_${arch}" --platform "manylinux2010_${arch}" --platform "manylinux1_${arch}")
    # dockwarden's own requirements, read from its metadata (a wheel built here, not shipped).
    tmp=$(mktemp -d)
    trap 'rm -rf -- "$tmp"' EXIT
    "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$tmp" . >"$tmp/wheel.log" 2>&1 \
        || { cat "$tmp/wheel.log" >&2; exit 1; }
    "$PYTHON" - "$tmp"/dockwarden-*.whl >"$tmp/requirements.txt" <<'PY'
import sys, zipfile
from email.parser import Parser

with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    msg = Parser().parsestr(z.read(meta).decode())
for req in msg.get_all("Requires-Dist") or []:
    if "extra ==" not in req:  # the test extra stays out of the image
        print(req)
PY
    echo 'setuptools>=68' >>"$tmp/requirements.txt"
    echo 'wheel' >>"$tmp/requirements.txt"
    if ! "$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
            --python-version "$pyver" --implementation cp --abi "cp${pyver/./}" --abi abi3 --abi none \
            "${platforms[@]}" --dest "$wheelhouse" -r "$tmp/requirements.txt" >"$tmp/pip.log" 2>&1; then
        cat "$tmp/pip.log" >&2
        log "pip download failed (every dependency must have a binary wheel for Python $pyver, $arch)"
        exit 1
    fi
    printf '%s\n' "$want_stamp" >"$stamp"
fi
log "wheelhouse $wheelhouse: $(find "$wheelhouse" -name '*.whl' | wc -l) wheels, $(du -sh "$wheelhouse" | cut -f1)"

# --- 3. the image
log "docker build $IMAGE:latest $IMAGE:$version"
DOCKER_BUILDKIT=0 docker build -f packaging/Dockerfile \
    --build-arg BASE="$base" --build-arg WHEELHOUSE="$wheelhouse" --build-arg VERSION="$version" \
    --label dockwarden.source="$hash" -t "$IMAGE:latest" -t "$IMAGE:$version" . >&2
# What earlier builds left behind: their builder stages and the images these tags
# pointed to (dangling now). Only images with our labels; nothing else is pruned.
docker image prune -f --filter label=dockwarden.build-stage=builder >/dev/null
docker image prune -f --filter label=dockwarden.source >/dev/null
log "built $IMAGE:latest and $IMAGE:$version: $(docker image inspect -f '{{.Size}}' "$IMAGE:latest" | numfmt --to=iec) (base $base: $(docker image inspect -f '{{.Size}}' "$base" | numfmt --to=iec))"
