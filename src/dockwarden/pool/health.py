"""Health of pool containers: engine state, Docker's own healthcheck, then the
optional ``health_command`` (``docker exec``) and HTTP probe of ``[pool]``.

The original checked the engine state and expired rate limits; this adds the
probes, closes the open dispatches of a container that died (they cannot
finish, and left open they would block cleanup for ever, one of the original's
defects), and emits events on changes only.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockwarden.model import EventType
from dockwarden.pool.engine import EngineContainer
from dockwarden.pool.schema import PoolContainer

if TYPE_CHECKING:  # the manager imports this module
    from dockwarden.pool.manager import Pool

log = logging.getLogger(__name__)

#: Engine states in which a container's open dispatches cannot finish any more.
DEAD_STATES = frozenset({"exited", "dead", "created"})
#: A reserved row without a container is a spawn in progress (in this or another
#: process) for this long, seconds; after that the spawn died and the row counts as vanished.
SPAWN_GRACE_S = 120.0


def _being_created(c: PoolContainer, now) -> bool:
    return c.status == "starting" and c.docker_id is None and (now - c.created_at).total_seconds() < SPAWN_GRACE_S


@dataclass(frozen=True)
class HealthResult:
    """One container's check: status before and after, the engine's state
    (None: vanished) and why."""

    name: str
    before: str
    status: str
    engine_state: str | None
    reason: str


def check_pool(pool: "Pool", only: list[str] | None = None) -> list[HealthResult]:
    """Check every live container of the pool (or ``only`` these names).

    Vanished containers become ``failed``; stopped ones ``unhealthy``, and their
    open dispatches are closed as ``failed``. Expired rate limits return to
    ``healthy``. Emits ``pool_unhealthy`` / ``pool_healthy`` on changes only.
    Probes run concurrently (16 at most), each within ``health_timeout_s``.

    Raises:
        PoolEngineError: the engine cannot be listed (nothing is changed).
    """
    now = pool.clock()
    rows = [c for c in pool.db.containers() if c.status != "stopping" and (only is None or c.name in only)
            and not _being_created(c, now)]
    if not rows:
        return []
    seen = pool.engine.list()
    if only is None:
        pool.last_dead = {c.name for c in rows if c.name not in seen or seen[c.name].state in DEAD_STATES}
    with ThreadPoolExecutor(max_workers=min(16, len(rows))) as ex:
        checks = list(ex.map(lambda c: check_one(pool, c, seen.get(c.name)), rows))
    results = []
    for c, (healthy, reason, ec) in zip(rows, checks):
        now = pool.clock()
        vanished = ec is None
        if vanished or ec.state in DEAD_STATES:
            closed = pool.db.close_open_dispatches(c.id, f"container {reason}", now)
            if closed:
                log.warning("%s: %s; closed its open dispatches %s as failed", c.name, reason, closed)
        before, after = pool.db.record_health(c.id, healthy=healthy, error=None if healthy else reason,
                                              docker_id=ec.id if ec else None, vanished=vanished, now=now)
        results.append(HealthResult(c.name, before, after, ec.state if ec else None, reason))
        if after in ("unhealthy", "failed") and before not in ("unhealthy", "failed"):
            pool._event(EventType.POOL_UNHEALTHY, c.name, f"{c.name}: {after}: {reason}",
                        before=before, engine_state=ec.state if ec else None)
        elif after == "healthy" and before in ("unhealthy", "failed", "rate_limited"):
            why = "rate limit over" if before == "rate_limited" else reason
            pool._event(EventType.POOL_HEALTHY, c.name, f"{c.name}: healthy again ({why})", before=before)
    return results


def check_one(pool: "Pool", c: PoolContainer,
              ec: EngineContainer | None) -> tuple[bool | None, str, EngineContainer | None]:
    """One container's verdict: (healthy, reason, engine view); healthy None = still starting.

    A probe failing on a container still ``starting`` and younger than one
    ``health_interval_s`` leaves it starting (a slow start is not a failure).
    """
    s = pool.settings
    if ec is None:
        return False, "vanished (removed outside dockwarden)", None
    if ec.state != "running":
        code = f", exit code {ec.exit_code}" if ec.exit_code is not None else ""
        return False, f"{ec.state}{code}", ec
    if ec.health == "unhealthy":
        return False, "Docker healthcheck: unhealthy", ec
    if ec.health == "starting":
        return None, "Docker healthcheck: starting", ec
    grace = c.status == "starting" and (pool.clock() - c.created_at).total_seconds() < s.health_interval_s
    reasons = ["running"]
    if s.health_command:
        ok, why = pool.engine.probe_command(c.name, list(s.health_command), s.health_timeout_s)
        if not ok:
            return (None if grace else False), why, ec
        reasons.append(why)
    if s.health_http_port:
        ok, why = pool.engine.probe_http(ec.ip, s.health_http_port, s.health_http_path, s.health_timeout_s)
        if not ok:
            return (None if grace else False), why, ec
        reasons.append(why)
    return True, "; ".join(reasons), ec
