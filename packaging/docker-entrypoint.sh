#!/bin/sh
# The image's entrypoint: defaults from the mounted files, then exec dockwarden,
# so the daemon is PID 1 and receives `docker stop`'s SIGTERM itself.
#
#   /etc/dockwarden/inventory     the inventory (DOCKWARDEN_INVENTORY), when mounted;
#                                 without one, dockwarden supervises by labels only
#   /etc/dockwarden/policy.toml   the policy (DOCKWARDEN_POLICY), when mounted
#   /var/lib/dockwarden           the state (DOCKWARDEN_STATE_DIR), a volume
#
# Variables already set (docker run -e ...) win. Arguments are dockwarden's
# (`docker run IMAGE status`); `sh`, `python3` or an absolute path run as given.
set -eu

if [ -z "${DOCKWARDEN_INVENTORY:-}" ] && [ -e /etc/dockwarden/inventory ]; then
    export DOCKWARDEN_INVENTORY=/etc/dockwarden/inventory
fi
if [ -z "${DOCKWARDEN_POLICY:-}" ] && [ -f /etc/dockwarden/policy.toml ]; then
    export DOCKWARDEN_POLICY=/etc/dockwarden/policy.toml
fi

[ "$#" -gt 0 ] || set -- run
case "$1" in
    dockwarden) shift ;;
    sh|bash|python|python3|docker-compose|/*) exec "$@" ;;
esac
exec dockwarden "$@"
