#!/usr/bin/env bash
# Remove the demo containers (label dockwarden.demo=1), running or not.
# Usage: scripts/demo-down.sh [--quiet]
set -euo pipefail

quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1

mapfile -t ids < <(docker ps -aq --filter label=dockwarden.demo=1)
if [ "${#ids[@]}" -eq 0 ]; then
    [ "$quiet" -eq 1 ] || echo "demo-down: no demo containers" >&2
    exit 0
fi
docker rm --force "${ids[@]}" >/dev/null
[ "$quiet" -eq 1 ] || echo "demo-down: removed ${#ids[@]} demo container(s)" >&2
