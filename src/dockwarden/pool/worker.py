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

#: Longest pause of replacement and ensure-min after repeated failures, seconds.
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
        self._replaced_last: set[str] = set()

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
            self._keep_size(pool)
            if time.monotonic() >= self._next_cleanup:
                self._next_cleanup = time.monotonic() + s.cleanup_interval_s
                done = pool.cleanup()
                if done:
                    log.info("pool: idle cleanup destroyed %s", ", ".join(c.name for c in done))
        except PoolEngineError as e:
            log.warning("pool: %s; trying again in %g s", e, s.health_interval_s)
            pool.drop_engine()

    def _keep_size(self, pool: Pool) -> None:
        """Replace dead containers and spawn up to min. When that fails, or a
        replacement is dead again at the next check (a crash loop: an image whose
        command exits), wait interval * 2**(n-1) seconds, at most 600 s, before
        the next try, so a broken image does not churn containers every pass."""
        if time.monotonic() < self._next_spawn:
            return
        try:
            replaced = {old.name for old, _ in pool.replace_dead()}
            pool.ensure_min()
        except PoolEngineError:
            raise
        except PoolError as e:
            self._back_off(pool, f"cannot keep min {pool.settings.min}: {e}")
            return
        again = replaced & self._replaced_last
        self._replaced_last = replaced
        if again:
            self._back_off(pool, f"{', '.join(sorted(again))} died again after being replaced")
        else:
            self._spawn_failures = 0

    def _back_off(self, pool: Pool, why: str) -> None:
        self._spawn_failures += 1
        delay = min(pool.settings.health_interval_s * 2 ** (self._spawn_failures - 1), MAX_SPAWN_BACKOFF_S)
        self._next_spawn = time.monotonic() + delay
        log.error("pool: %s; next replacement or spawn in %g s", why, delay)

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
