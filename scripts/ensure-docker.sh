#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`, installing and starting one
# if needed (Debian, as root only). Also makes sure /bin/busybox exists: the
# test image (scripts/build-test-image.sh) is built from it, because no image
# registry is reachable on our machines.
#
# Idempotent: when the engine answers and busybox is there, it exits 0 at once.
# The only network use is apt-get (Debian mirrors).
#
# Environment:
#   DOCKER_HOST             an engine elsewhere; then nothing is installed or started.
#   DOCKERD_LOG             dockerd's log file (default /var/log/dockerd.log).
#   DOCKERD_WAIT_S          how long to wait for a started dockerd (default 60).
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD_WAIT_S=${DOCKERD_WAIT_S:-60}
# docker.io brings dockerd, containerd, runc and the client; docker-compose is
# Debian's v1 (python) for compose projects; iproute2 for `ip netns` (second
# engine); btrfs-progs for the btrfs storage checks; debootstrap builds the
# Debian root filesystem of the real-daemon test images (nginx, apache2:
# scripts/build-real-images.sh), since no image registry is reachable;
# openssh-server and openssl for the fleet tests (an ssh:// engine endpoint, TLS).
ENGINE_PKGS=(docker.io busybox-static docker-compose iproute2 btrfs-progs sqlite3 debootstrap openssh-server openssl)
# The HTTP API's tests (issue 10): a real Prometheus (with promtool, to check
# examples/prometheus/rules.yml) and Alertmanager on loopback ports, and a
# headless Chromium driven by selenium through chromedriver for the dashboard
# (no browser can be downloaded here; Debian's is used).
API_TEST_PKGS=(prometheus prometheus-alertmanager chromium chromium-driver)
# The packaging tests (issue 12): systemd-analyze (package systemd) verifies
# packaging/systemd/dockwarden.service; python3-venv makes the clean venv the
# wheel is installed into. (debootstrap, above, builds the image's local base.)
PACKAGING_TEST_PKGS=(systemd python3-venv)

log() { printf 'ensure-docker: %s\n' "$*" >&2; }

engine_ok() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

is_root_debian() { [ "$(id -u)" -eq 0 ] && [ -f /etc/debian_version ]; }

# apt_install PKG...: install the packages that are not installed yet.
apt_install() {
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    # apt-get update only when the package lists do not know a package yet.
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        log "apt-get update"
        apt-get update -qq >/dev/null
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq "${missing[@]}" >/dev/null
}

cannot_help() {
    cat >&2 <<MSG
ensure-docker: $1
  dockwarden needs a Docker engine. Either
    - start one here (e.g. 'sudo systemctl start docker', or 'sudo dockerd &'), or
    - point DOCKER_HOST at one, e.g.
        export DOCKER_HOST=unix:///run/user/\$(id -u)/docker.sock   # rootless engine
        export DOCKER_HOST=ssh://user@host                          # remote engine
  and run this again. As root on Debian this script installs and starts one itself.
MSG
    exit 1
}


# What the tests need beside the engine itself (never the engine package: an
# engine that already answers may come from docker-ce, which conflicts with docker.io).
# openssh-server: the fleet tests' ssh:// engine endpoint (an sshd on a loopback port,
# tests/support/fleet.py); openssl: TLS checks by hand (the tests make their certificates
# with the cryptography package).
TEST_PKGS=(busybox-static iproute2 docker-compose sqlite3 btrfs-progs debootstrap openssh-server openssl "${API_TEST_PKGS[@]}" "${PACKAGING_TEST_PKGS[@]}")

if engine_ok; then
    if is_root_debian; then
        apt_install "${TEST_PKGS[@]}"
        exit 0
    fi
    if [ -x /bin/busybox ]; then
        exit 0
    fi
    log "the engine answers, but /bin/busybox is missing (needed for the test image):"
    log "install busybox-static (Debian/Ubuntu) or a static busybox at /bin/busybox"
    exit 1
fi

if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ] \
        && [ "${DOCKER_HOST}" != "unix:///run/docker.sock" ]; then
    cannot_help "DOCKER_HOST=${DOCKER_HOST} does not answer 'docker info'; not starting a local engine for it."
fi

if ! is_root_debian; then
    if [ "$(id -u)" -ne 0 ]; then
        cannot_help "no Docker engine answers, and installing one needs root."
    fi
    cannot_help "no Docker engine answers, and this is not Debian (no /etc/debian_version): install Docker yourself."
fi

apt_install "${ENGINE_PKGS[@]}" "${API_TEST_PKGS[@]}" "${PACKAGING_TEST_PKGS[@]}"

# Start dockerd unless one is already starting (pid file of a live process).
running_pid=""
if [ -f /var/run/docker.pid ]; then
    running_pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [ -n "$running_pid" ] && ! kill -0 "$running_pid" 2>/dev/null; then
        running_pid=""
    fi
fi
if [ -z "$running_pid" ]; then
    log "starting dockerd (log: ${DOCKERD_LOG})"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # setsid: its own session, so it outlives this shell and make; no inherited stdio.
    (setsid dockerd </dev/null >>"$DOCKERD_LOG" 2>&1 &)
else
    log "dockerd (pid ${running_pid}) is already starting; waiting for it"
fi

deadline=$((SECONDS + DOCKERD_WAIT_S))
until engine_ok; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        log "the engine did not answer within ${DOCKERD_WAIT_S} s; last lines of ${DOCKERD_LOG}:"
        tail -n 40 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    sleep 0.5
done
log "engine up: $(docker info --format 'Docker {{.ServerVersion}}, storage driver {{.Driver}}, root {{.DockerRootDir}}')"
