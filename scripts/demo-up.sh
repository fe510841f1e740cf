#!/usr/bin/env bash
# Start (or restart from scratch) the demo deployment that examples/inventory
# describes: four containers from the local test image, labelled
# dockwarden.demo=1, with NO Docker restart policy (dockwarden does the healing).
#
#   demo-db      a stand-in dependency (healthcheck: true)
#   demo-web     busybox httpd on 127.0.0.1:${DEMO_WEB_PORT:-8080}, healthcheck by wget;
#                depends on demo-db (in the inventory)
#   demo-worker  prints "working" every 10 s
#   demo-flaky   exits 1 after 20-59 s, every time it is started
#
# Idempotent: existing demo containers are removed and created again.
# Needs: scripts/ensure-docker.sh and scripts/build-test-image.sh first.
#
# The containers' shells trap SIGTERM, so `docker stop` returns at once
# instead of waiting 10 s (a shell as PID 1 ignores signals it has no handler for).
set -euo pipefail

IMAGE=${DOCKWARDEN_TEST_IMAGE:-dockwarden-test/busybox:latest}
WEB_PORT=${DEMO_WEB_PORT:-8080}
LABEL=dockwarden.demo=1

here=$(cd "$(dirname "$0")" && pwd)

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "demo-up: image $IMAGE not found; run scripts/build-test-image.sh (or: make engine)" >&2
    exit 1
fi

"$here/demo-down.sh" --quiet

common=(--detach --label "$LABEL" --restart no)

docker run "${common[@]}" --name demo-db \
    --health-cmd 'true' \
    --health-interval 5s --health-timeout 2s --health-retries 3 \
    "$IMAGE" \
    sh -c 'trap "exit 0" TERM INT; while :; do sleep 5 & wait $!; done' >/dev/null

docker run "${common[@]}" --name demo-web \
    --publish "127.0.0.1:${WEB_PORT}:80" \
    --health-cmd 'wget -q -O /dev/null http://127.0.0.1/ || exit 1' \
    --health-interval 5s --health-timeout 2s --health-retries 3 \
    "$IMAGE" \
    sh -c 'mkdir -p /www
echo "<!doctype html><title>dockwarden demo</title><h1>demo-web is up</h1><p>Served by busybox httpd, watched by dockwarden.</p>" > /www/index.html
httpd -f -p 80 -h /www & pid=$!
trap "kill \$pid; exit 0" TERM INT
wait $pid' >/dev/null

docker run "${common[@]}" --name demo-worker \
    "$IMAGE" \
    sh -c 'trap "exit 0" TERM INT; while :; do echo working; sleep 10 & wait $!; done' >/dev/null

docker run "${common[@]}" --name demo-flaky \
    "$IMAGE" \
    sh -c 'trap "exit 0" TERM INT; echo up; sleep $((20 + RANDOM % 40)) & wait $!; echo crashing; exit 1' >/dev/null

echo "demo-up: started demo-db, demo-web (http://127.0.0.1:${WEB_PORT}/), demo-worker, demo-flaky" >&2
docker ps --filter "label=$LABEL" --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}'
