"""The container pool: ``Pool``, the Python API behind ``dockwarden pool ...``
and the daemon's pool worker.

A pool is a set of identical worker containers (``[pool]`` in the policy) and
the record of what was dispatched to them. The rules (busy, select order,
idle, max) live in SQL in :mod:`dockwarden.pool.db`; Docker calls in
:mod:`dockwarden.pool.engine`. Compared with the original (aidevops PR 2184,
seed 004; ``shared/field-notes.md``) this pool never selects a busy container,
validates the cooldown, really runs the dispatched command in the selected
container, records every completion, finds containers by name as well as id,
never destroys a freshly created container as idle, and hands secrets over as
read-only files.

Events (``pool_*`` types) go to the ``emit`` callable: an ``EventLog.send`` in
the CLI, ``WorkerContext.emit`` in the daemon.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from dockwarden.config_pool import NAME_RE, PoolSettings, parse_mount
from dockwarden.model import Event, EventType, rfc3339, utcnow
from dockwarden.pool import secrets as pool_secrets
from dockwarden.pool.db import PoolDB
from dockwarden.pool.schema import OUTCOMES, STATUSES, Dispatch, PoolContainer
from dockwarden.pool.engine import MANAGED_LABEL, POOL_LABEL, PoolEngine, SpawnSpec
from dockwarden.pool.errors import PoolEngineError, PoolError, PoolInputError, PoolRefused
from dockwarden.pool.health import HealthResult, check_pool

log = logging.getLogger(__name__)

def parse_seconds(value: Any, field: str = "seconds") -> int:
    """A positive whole number of seconds from an int or a string.

    Raises:
        PoolInputError: ``seconds: expected a positive integer, got 'abc'``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PoolInputError(f"{field}: expected a positive integer, got {value!r}")
    text = str(value).strip()
    if not text.isdigit() or int(text) <= 0:
        raise PoolInputError(f"{field}: expected a positive integer, got {value!r}")
    return int(text)


class Pool:
    """The container pool of one state dir.

    Args:
        state_dir: holds ``dockwarden.db`` and the secret files.
        settings: the ``[pool]`` table (can be replaced between calls).
        node: this host's node name; recorded as each container's ``host``.
        emit: records an event; None records nothing.
        docker_host: engine URL (``DOCKER_HOST``); None for the default.
        engine: an engine to use instead of connecting on first need.
        clock: "now" (UTC); tests move it.
    Raises:
        sqlite3.Error, StoreError: the database cannot be opened or migrated.
    """

    def __init__(self, state_dir: Path, settings: PoolSettings, *, node: str,
                 emit: Callable[[Event], bool] | None = None, docker_host: str | None = None,
                 engine: PoolEngine | None = None, clock: Callable[[], datetime] = utcnow):
        self.state_dir = Path(state_dir)
        self.settings = settings
        self.node = node
        self.emit = emit
        self.docker_host = docker_host
        self._engine = engine
        self.clock = clock
        self.db = PoolDB(self.state_dir / "dockwarden.db")
        #: Names the last full health check found exited, dead or vanished.
        self.last_dead: set[str] = set()

    @property
    def engine(self) -> PoolEngine:
        """The engine, connected on first use (select/complete/list never need it)."""
        if self._engine is None:
            self._engine = PoolEngine(self.docker_host)
        return self._engine

    def drop_engine(self) -> None:
        """Forget the engine connection (after it was lost); the next call reconnects."""
        if self._engine is not None:
            try:
                self._engine.close()
            except Exception as e:  # closing a dead connection may fail; it is dropped anyway
                log.debug("pool: closing the old engine connection: %s", e)
        self._engine = None

    def close(self) -> None:
        self.db.close()
        self.drop_engine()

    def _event(self, type_: EventType, container: str | None, reason: str, **details: Any) -> None:
        if self.emit is not None:
            self.emit(Event(type=type_, ts=self.clock(), node=self.node, container=container, reason=reason,
                            details={"pool": self.settings.prefix, **details}))

    # ------------------------------------------------------------------ spawn / destroy

    def spawn(self, name: str | None = None, settings: PoolSettings | None = None) -> PoolContainer:
        """Create and start one container, then check its health once.

        Args:
            name: its name; None for ``<prefix>-<n>`` with the smallest free n.
            settings: overrides of ``self.settings`` (the CLI's flags).
        Returns:
            The container's row: ``healthy``, ``starting`` (a probe did not pass
            yet) or ``unhealthy`` (it stopped at once).
        Raises:
            PoolInputError: no image, a bad name, a secret that cannot be read,
                or an image missing on the engine.
            PoolRefused: max reached, or the name is taken.
            PoolEngineError: the engine failed.
        """
        s = settings or self.settings
        if not s.image:
            raise PoolInputError("image: the pool has no image; set [pool].image in the policy or pass --image")
        if name is not None and not NAME_RE.match(name):
            raise PoolInputError(f"name: expected letters, digits, '_', '.' or '-' (not first), got {name!r}")
        values = pool_secrets.resolve(s.secrets)
        taken = self.engine.names_in_use(s.prefix) if name is None else set()
        row = self.db.reserve(name=name, prefix=s.prefix, image=s.image, host=self.node, max_n=s.max,
                              taken=taken, now=self.clock())
        try:
            mounts = [parse_mount(m) for m in s.mounts] + pool_secrets.write(self.state_dir, row.name, values)
            labels = {**s.labels, POOL_LABEL: s.prefix, MANAGED_LABEL: "true"}
            docker_id = self.engine.create_and_start(SpawnSpec(
                name=row.name, image=s.image, command=list(s.command), labels=labels, env=dict(s.env),
                mounts=mounts, cpus=s.cpus, memory=s.memory))
        except Exception as e:  # whatever failed, the reserved slot is released
            self.db.spawn_failed(row.id, str(e), self.clock())
            pool_secrets.remove(self.state_dir, row.name)
            self._event(EventType.POOL_SPAWN_FAILED, row.name, f"{row.name}: spawn failed: {e}", image=s.image)
            raise
        self.db.set_docker_id(row.id, docker_id, self.clock())
        if self.db.by_id(row.id).status in ("stopping", "stopped"):  # destroyed while it was being created
            self.engine.remove(row.name)
            pool_secrets.remove(self.state_dir, row.name)
            raise PoolRefused(f"{row.name}: destroyed while it was being spawned")
        self._event(EventType.POOL_SPAWNED, row.name, f"{row.name}: spawned from {s.image}",
                    docker_id=docker_id, image=s.image)
        try:
            self.health(only=[row.name])
        except PoolEngineError as e:  # created and started; the next health check will tell
            log.warning("%s: spawned, but its first health check failed: %s", row.name, e)
        return self.db.by_id(row.id)

    def destroy(self, ref: str, *, force: bool = False, reason: str = "by the operator") -> PoolContainer:
        """Remove a container and record it (row kept as ``stopped``).

        Args:
            ref: name, pool id or docker id prefix.
            force: also when busy; its open dispatches are closed as ``failed``.
        Raises:
            PoolNotFound: no such pool container.
            PoolRefused: it is busy and not forced.
            PoolEngineError: the engine failed (the row becomes ``unhealthy``, to retry).
        """
        c = self.db.get(ref)
        closed = self.db.begin_destroy(c.id, force=force, reason=f"container destroyed ({reason})", now=self.clock())
        self._remove(c, reason, forced=force, closed_dispatches=closed)
        return self.db.by_id(c.id)

    def _remove(self, c: PoolContainer, reason: str, **details: Any) -> None:
        """Remove a row already marked ``stopping`` from the engine and finish it."""
        try:
            existed = self.engine.remove(c.name)
        except PoolError as e:
            self.db.destroy_failed(c.id, f"destroy failed: {e}", self.clock())
            raise
        pool_secrets.remove(self.state_dir, c.name)
        self.db.finish_destroy(c.id, self.clock())
        self._event(EventType.POOL_DESTROYED, c.name, f"{c.name}: destroyed ({reason})",
                    docker_id=c.docker_id, existed=existed, **details)

    # ------------------------------------------------------------------ reading

    def list(self, status: str | None = None) -> list[PoolContainer]:
        """Live containers by name; ``status`` filters (``stopped`` lists destroyed ones).

        Raises:
            PoolInputError: an unknown status.
        """
        if status is not None and status not in STATUSES:
            raise PoolInputError(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
        return self.db.containers(status)

    def status(self) -> dict[str, Any]:
        """The pool's figures (one query) with its limits."""
        s = self.settings
        return {"prefix": s.prefix, "image": s.image, "min": s.min, "max": s.max,
                "idle_timeout": s.idle_timeout, "rate_limit_cooldown": s.rate_limit_cooldown,
                **self.db.stats(self.clock())}

    # ------------------------------------------------------------------ health

    def health(self, only: list[str] | None = None) -> list[HealthResult]:
        """Check every live container (or ``only`` these names); see :func:`dockwarden.pool.health.check_pool`.

        Raises:
            PoolEngineError: the engine cannot be listed (nothing is changed).
        """
        return check_pool(self, only)

    # ------------------------------------------------------------------ dispatch

    def select(self, *, host: str | None = None, task_id: str | None = None,
               command: list[str] | None = None) -> tuple[PoolContainer, Dispatch] | None:
        """Select a container and record the dispatch (one transaction, no engine call).

        Returns:
            (container, open dispatch), or None when no container is available.
        """
        return self.db.select_and_record(host=host, task_id=task_id, now=self.clock(),
                                         command=json.dumps(command) if command is not None else None)

    def complete(self, dispatch_id: int | str, outcome: str, *, exit_code: int | None = None,
                 error: str | None = None) -> Dispatch:
        """Record a dispatch's completion; ``rate_limited`` starts the container's
        cooldown (``rate_limit_cooldown`` seconds).

        Raises:
            PoolInputError: a bad id or outcome. PoolNotFound: no such dispatch.
            PoolRefused: already completed.
        """
        did = parse_seconds(dispatch_id, "dispatch_id")
        out = str(outcome).strip().lower()
        if out not in OUTCOMES:
            raise PoolInputError(f"outcome: expected one of OK, failed, rate_limited, got {outcome!r}")
        d = self.db.complete(did, outcome=out, exit_code=exit_code, error=error,
                             cooldown_s=self.settings.rate_limit_cooldown, now=self.clock())
        if out == "rate_limited":
            c = self.db.by_id(d.container_id)
            self._event(EventType.POOL_RATE_LIMITED, c.name, f"{c.name}: rate limited by dispatch {did}, skipped "
                        f"until {c.rate_limit_until:%H:%M:%S} UTC", dispatch_id=did,
                        rate_limit_until=rfc3339(c.rate_limit_until), seconds=self.settings.rate_limit_cooldown)
        return d

    def unavailable_reason(self) -> str:
        st = self.db.stats(self.clock())
        return (f"no container available: {st['live']} live ({st['busy']} busy, {st['rate_limited']} rate-limited, "
                f"{st['unhealthy']} unhealthy, {st['starting']} starting)")

    def dispatch(self, argv: list[str], *, task_id: str | None = None, host: str | None = None,
                 on_stdout: Callable[[bytes], None], on_stderr: Callable[[bytes], None],
                 rate_limited_exit: int | None = None) -> Dispatch:
        """Select a container, run ``argv`` in it (``docker exec``), stream its
        output, and record the completion with the exit code.

        Outcome: ``ok`` on exit 0, ``rate_limited`` on ``rate_limited_exit``,
        else ``failed``.

        Raises:
            PoolInputError: an empty command. PoolRefused: no container available.
            PoolEngineError: the exec failed (the dispatch is recorded as failed).
        """
        if not argv:
            raise PoolInputError("command: expected a command after --, got nothing")
        picked = self.select(host=host, task_id=task_id, command=argv)
        if picked is None:
            raise PoolRefused(self.unavailable_reason())
        c, d = picked
        try:
            code = self.engine.exec_stream(c.name, argv, on_stdout, on_stderr)
        except PoolEngineError as e:
            self.complete(d.id, "failed", error=str(e))
            raise
        except BaseException:
            self.complete(d.id, "failed", error="interrupted before the command finished")
            raise
        outcome = "ok" if code == 0 else "rate_limited" if code == rate_limited_exit else "failed"
        return self.complete(d.id, outcome, exit_code=code)

    # ------------------------------------------------------------------ rate limits

    def rate_limit(self, ref: str, action: str, seconds: Any = None) -> PoolContainer:
        """``set`` (``seconds``, default the cooldown) or ``clear`` a container's rate limit.

        Raises:
            PoolInputError: a bad action or seconds (checked before anything else).
            PoolNotFound: no such pool container.
        """
        if action not in ("set", "clear"):
            raise PoolInputError(f"action: expected set or clear, got {action!r}")
        if action == "clear" and seconds is not None:
            raise PoolInputError(f"seconds: clear takes no seconds, got {seconds!r}")
        secs = self.settings.rate_limit_cooldown if seconds is None else parse_seconds(seconds)
        c = self.db.get(ref)
        if action == "clear":
            c2 = self.db.clear_rate_limit(c.id, self.clock())
            self._event(EventType.POOL_RATE_LIMIT_CLEARED, c.name, f"{c.name}: rate limit cleared by the operator")
            return c2
        c2 = self.db.set_rate_limit(c.id, secs, self.clock())
        self._event(EventType.POOL_RATE_LIMITED, c.name, f"{c.name}: rate limited for {secs} s by the operator",
                    seconds=secs, rate_limit_until=rfc3339(c2.rate_limit_until))
        return c2

    # ------------------------------------------------------------------ sizing

    def cleanup(self, *, dry_run: bool = False) -> list[PoolContainer]:
        """Destroy containers idle longer than ``idle_timeout`` (no open dispatch,
        neither dispatched nor created within it), keeping at least ``min``.

        Returns:
            The containers destroyed (or, with ``dry_run``, that would be).
        """
        s = self.settings
        idle = self.db.idle(idle_timeout_s=s.idle_timeout, keep=s.min, now=self.clock(), mark=not dry_run)
        if dry_run:
            return idle
        done = []
        for c in idle:
            try:
                self._remove(c, f"idle longer than {s.idle_timeout} s", idle_timeout=s.idle_timeout)
                done.append(c)
            except PoolError as e:
                log.error("%s: idle cleanup could not remove it: %s", c.name, e)
        return done

    def counted(self) -> int:
        return int(self.db.stats(self.clock())["live"])

    def ensure_min(self, settings: PoolSettings | None = None) -> list[PoolContainer]:
        """Spawn containers until ``min`` are live. Returns the new ones.

        Raises:
            PoolError: a spawn failed (those spawned before it stay).
        """
        s = settings or self.settings
        return [self.spawn(settings=s) for _ in range(max(0, s.min - self.counted()))]

    def replace_dead(self) -> list[tuple[PoolContainer, PoolContainer | None]]:
        """Destroy dead containers that are not busy and spawn one in each one's
        place (the daemon calls this after :meth:`health`).

        Dead: ``failed`` (vanished), ``unhealthy`` with its engine state exited or
        dead at the last health check, or ``unhealthy`` for 3 health intervals
        while running (its probes failing; kubelet's liveness failureThreshold 3).

        Returns:
            (old, new) pairs; new is None when the spawn failed.
        """
        now = self.clock()
        patience = timedelta(seconds=3 * self.settings.health_interval_s)

        def dead(c: PoolContainer) -> bool:
            if c.status == "failed":
                return True
            return c.status == "unhealthy" and (c.name in self.last_dead or (
                c.unhealthy_since is not None and now - c.unhealthy_since >= patience))

        pairs = []
        for c in self.db.containers():
            if c.busy or not dead(c):
                continue
            try:
                self.db.begin_destroy(c.id, force=False, reason="replaced", now=self.clock())
                self._remove(c, f"replaced: {c.error or c.status}")
            except PoolError as e:
                log.error("%s: cannot replace it: %s", c.name, e)
                continue
            new = None
            try:
                new = self.spawn()
            except PoolError as e:
                log.error("%s: replacement failed: %s", c.name, e)
            self._event(EventType.POOL_REPLACED, c.name,
                        f"{c.name}: {c.status} ({c.error}); replaced by {new.name if new else 'nothing (spawn failed)'}",
                        old_docker_id=c.docker_id, new=new.name if new else None,
                        new_docker_id=new.docker_id if new else None)
            pairs.append((c, new))
        return pairs
