"""The daemon looks after the pool: a background worker (``dockwarden.worker``).

Every ``[pool].health_interval_s`` (default 30 s, the daemon's resync) it
checks the health of every pool container, replaces failed, vanished and
unhealthy ones that are not busy, and spawns up to ``min``; every
``cleanup_interval_s`` (default 60 s) it destroys containers idle longer than
``idle_timeout``. Pool events (``pool_*``) go to ``events.jsonl`` through the
worker context. It reads the policy each tick, so a reload applies at once;
with ``[pool].image`` emptied it does nothing.
"""

from __future__ import annotations

import logging
import time

from dockwarden.config import ConfigError, Settings, load_policy
from dockwarden.pool.errors import PoolEngineError, PoolError
from dockwarden.pool.manager import Pool
from dockwarden.worker import PeriodicWorker

log = logging.getLogger(__name__)

#: Longest pause of ensure-min after repeated spawn failures, seconds.
MAX_SPAWN_BACKOFF_S = 600.0


class PoolWorker(PeriodicWorker):
    """Health, replacement, min and idle cleanup of the pool, on timers."""

    name = "pool"

    def __init__(self) -> None:
        super().__init__()
        self.pool: Pool | None = None
        self._next_cleanup = 0.0
        self._spawn_failures = 0
        self._next_spawn = 0.0

    def interval_s(self) -> float:
        return self.ctx.policy().pool.health_interval_s if self.ctx else 30.0

    def tick(self) -> None:
        assert self.ctx is not None
        s = self.ctx.policy().pool
        if not s.image:
            return
        if self.pool is None:
            self.pool = Pool(self.ctx.state_dir, s, node=self.ctx.node, emit=self.ctx.emit,
                             docker_host=self.ctx.settings.docker_host)
        pool = self.pool
        pool.settings = s
        try:
            pool.health()
            pool.replace_dead()
            self._ensure_min(pool)
            if time.monotonic() >= self._next_cleanup:
                self._next_cleanup = time.monotonic() + s.cleanup_interval_s
                done = pool.cleanup()
                if done:
                    log.info("pool: idle cleanup destroyed %s", ", ".join(c.name for c in done))
        except PoolEngineError as e:
            log.warning("pool: %s; trying again in %g s", e, s.health_interval_s)
            pool.drop_engine()

    def _ensure_min(self, pool: Pool) -> None:
        """Spawn up to min; after failures wait interval * 2**(n-1), at most 600 s."""
        now = time.monotonic()
        if now < self._next_spawn:
            return
        try:
            pool.ensure_min()
            self._spawn_failures = 0
        except PoolEngineError:
            raise
        except PoolError as e:
            self._spawn_failures += 1
            delay = min(pool.settings.health_interval_s * 2 ** (self._spawn_failures - 1), MAX_SPAWN_BACKOFF_S)
            self._next_spawn = now + delay
            log.error("pool: cannot keep min %d: %s; next attempt in %g s", pool.settings.min, e, delay)

    def stop(self) -> None:
        super().stop()
        if self.pool is not None:
            self.pool.close()
            self.pool = None


def pool_workers(settings: Settings) -> list[PoolWorker]:
    """The pool worker when the policy configures a pool image, else none.

    An invalid policy gives none here: the daemon reports the error itself.
    """
    try:
        policy = load_policy(settings.policy_path)
    except ConfigError:
        return []
    return [PoolWorker()] if policy.pool.image else []
