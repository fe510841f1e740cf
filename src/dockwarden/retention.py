"""Retention: keep every table and file of the state dir within ``[retention]``.

One function per table family, each taking the database (any
:class:`~dockwarden.db.FeatureDB` of ``dockwarden.db``: all tables share the file)
and an injected ``now`` (no clock is read here), returning how many rows it
deleted:

- :func:`prune_events`: the SQLite ``events`` table, by age and by row cap;
- :func:`prune_actions`: judged, finished actions, by age and by row cap (pending
  or unfinished actions are never deleted: the closed loop still has to judge them);
- :func:`prune_incidents`: resolved incidents, by age of resolution;
- :func:`prune_outbox`: delivered or dropped notifications, by age;
- :func:`prune_untracked`: specs, guard records and intents of services that are
  no longer tracked, by their own timestamps.

Storage samples are bounded by the storage worker (``[storage] retention_s``,
``storage/samples.py``) and ``events.jsonl`` by rotation as it is written
(``sinks/events.py``); :func:`apply_retention` also rotates an over-size events
file with the policy's limits. :class:`RetentionWorker` runs it all in the daemon
every ``[retention] interval_s``.

Deletes run in batches of :data:`BATCH_ROWS` rows, one short write transaction
each, so a first clean-up of a large table never holds the write lock for long
while the reconcile loop records. All SQL takes parameters. Timestamps are the
store's RFC 3339 UTC strings, which sort as text.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import AbstractSet, Callable

from dockwarden.config import ConfigError
from dockwarden.config_retention import RetentionPolicy
from dockwarden.db import FeatureDB
from dockwarden.inventory import load_inventory, merge_labelled
from dockwarden.model import DesiredState, WorldState, rfc3339
from dockwarden.sinks.events import EVENTS_FILE, rotate_if_over
from dockwarden.store import Store
from dockwarden.worker import PeriodicWorker, now_utc

log = logging.getLogger(__name__)

#: Rows deleted per write transaction.
BATCH_ROWS = 5000
#: Seconds after the daemon starts before the first retention run.
FIRST_RUN_DELAY_S = 60.0


def _cutoff(now: datetime, max_age_s: float) -> str:
    return rfc3339(now - timedelta(seconds=max_age_s))  # type: ignore[return-value]


def _has_table(db: FeatureDB, table: str) -> bool:
    with db.tx() as conn:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() \
            is not None


def _delete_batched(db: FeatureDB, sql: str, params: tuple) -> int:
    """Run ``sql`` (a DELETE whose last parameter is the batch size) until a batch
    deletes fewer than :data:`BATCH_ROWS` rows. Returns the rows deleted."""
    total = 0
    while True:
        with db.tx() as conn:
            n = conn.execute(sql, (*params, BATCH_ROWS)).rowcount
        total += max(n, 0)
        if n < BATCH_ROWS:
            return total


def _boundary(db: FeatureDB, sql: str, keep_rows: int) -> int | None:
    """The id of the newest row beyond a cap of ``keep_rows`` (``sql`` selects ids
    newest first with ``LIMIT 1 OFFSET ?``), or None when the cap is not exceeded."""
    with db.tx() as conn:
        row = conn.execute(sql, (int(keep_rows),)).fetchone()
    return None if row is None else int(row[0])


def prune_events(db: FeatureDB, *, now: datetime, max_age_s: float, max_rows: int) -> int:
    """Delete SQLite events older than ``max_age_s`` and the oldest beyond ``max_rows``.

    Args:
        db: any store of ``dockwarden.db`` (the core store holds ``events``).
        now: aware UTC time of the run.
        max_age_s: events with ``ts`` older than ``now - max_age_s`` go, seconds.
        max_rows: at most this many events stay (oldest by id go first).
    Returns:
        int: rows deleted.
    Raises:
        sqlite3.Error: the database failed (rows deleted in earlier batches stay deleted).
    """
    n = _delete_batched(db, "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts < ? LIMIT ?)",
                        (_cutoff(now, max_age_s),))
    edge = _boundary(db, "SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?", max_rows)
    if edge is not None:
        n += _delete_batched(db, "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id <= ? LIMIT ?)",
                             (edge,))
    return n


def prune_actions(db: FeatureDB, *, now: datetime, max_age_s: float, max_rows: int) -> int:
    """Delete judged, finished actions that started before ``now - max_age_s``, and
    the oldest judged ones beyond ``max_rows``.

    An action whose verdict is ``pending`` or whose ``finished_at`` is NULL is never
    deleted (it is still running, or the next observation has yet to judge it), and
    does not count against the cap.

    Args:
        db: any store of ``dockwarden.db`` (the core store holds ``actions``).
        now: aware UTC time of the run.
        max_age_s: age limit by ``started_at``, seconds.
        max_rows: judged, finished actions kept at most.
    Returns:
        int: rows deleted.
    Raises:
        sqlite3.Error: the database failed.
    """
    n = _delete_batched(
        db, "DELETE FROM actions WHERE id IN (SELECT id FROM actions WHERE started_at < ? "
            "AND verdict != 'pending' AND finished_at IS NOT NULL LIMIT ?)",
        (_cutoff(now, max_age_s),))
    edge = _boundary(db, "SELECT id FROM actions WHERE verdict != 'pending' AND finished_at IS NOT NULL "
                         "ORDER BY id DESC LIMIT 1 OFFSET ?", max_rows)
    if edge is not None:
        n += _delete_batched(
            db, "DELETE FROM actions WHERE id IN (SELECT id FROM actions WHERE id <= ? "
                "AND verdict != 'pending' AND finished_at IS NOT NULL LIMIT ?)",
            (edge,))
    return n


def prune_incidents(db: FeatureDB, *, now: datetime, max_age_s: float) -> int:
    """Delete incidents resolved before ``now - max_age_s``; open and acknowledged
    ones are never deleted. A table not created yet (no IncidentBook opened) is 0.

    Args:
        db: any store of ``dockwarden.db``.
        now: aware UTC time of the run.
        max_age_s: age limit by ``resolved_at``, seconds.
    Returns:
        int: rows deleted.
    Raises:
        sqlite3.Error: the database failed.
    """
    if not _has_table(db, "incidents"):
        return 0
    return _delete_batched(
        db, "DELETE FROM incidents WHERE id IN (SELECT id FROM incidents WHERE state = 'resolved' "
            "AND resolved_at IS NOT NULL AND resolved_at < ? LIMIT ?)",
        (_cutoff(now, max_age_s),))


def prune_outbox(db: FeatureDB, *, now: datetime, max_age_s: float) -> int:
    """Delete notification queue rows finished before ``now - max_age_s``:
    ``delivered`` (by ``delivered_at``) and ``dropped`` (given up or channel removed;
    by ``next_attempt_at``, the last attempt planned). ``pending`` rows are the
    queue and are never deleted. A table not created yet is 0.

    Args:
        db: any store of ``dockwarden.db``.
        now: aware UTC time of the run.
        max_age_s: age limit, seconds.
    Returns:
        int: rows deleted.
    Raises:
        sqlite3.Error: the database failed.
    """
    if not _has_table(db, "outbox"):
        return 0
    return _delete_batched(
        db, "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state IN ('delivered', 'dropped') "
            "AND COALESCE(delivered_at, next_attempt_at) < ? LIMIT ?)",
        (_cutoff(now, max_age_s),))


@dataclass(frozen=True)
class UntrackedCounts:
    """Rows :func:`prune_untracked` deleted, per table."""

    specs: int = 0
    guards: int = 0
    intents: int = 0

    @property
    def total(self) -> int:
        return self.specs + self.guards + self.intents


def prune_untracked(db: FeatureDB, *, now: datetime, max_age_s: float, keep: AbstractSet[str]) -> UntrackedCounts:
    """Delete specs, guard records and intents of services not in ``keep`` whose own
    timestamps are all older than ``now - max_age_s``.

    - specs: by ``seen_at`` (when the spec was last recorded);
    - intents: by ``recorded_at``, so an intent ``stopped`` of a container the
      operator removed survives the whole period ("gone means gone");
    - guards: by ``last_attempt``, ``next_attempt`` and ``circuit_opened_at`` (each
      NULL or old); a paused guard is the operator's and is never deleted.

    Candidates are read first and each delete re-checks its condition, so a row
    recorded again meanwhile stays.

    Args:
        db: the core store of one node (its ``node`` selects the rows).
        now: aware UTC time of the run.
        max_age_s: age limit, seconds.
        keep: services whose rows are never deleted: everything tracked (inventory,
            labels) and every container name the engine reports. The caller must
            only pass a set read from a successful observation.
    Returns:
        UntrackedCounts: rows deleted per table.
    Raises:
        sqlite3.Error: the database failed.
    """
    cut = _cutoff(now, max_age_s)
    node = getattr(db, "node", "")  # one node's rows: `keep` is that node's services
    with db.tx() as conn:
        specs = [r[0] for r in conn.execute("SELECT service FROM specs WHERE node = ? AND seen_at < ?", (node, cut))
                 if r[0] not in keep]
        intents = [r[0] for r in conn.execute("SELECT service FROM intents WHERE node = ? AND recorded_at < ?",
                                              (node, cut)) if r[0] not in keep]
        guards = [r[0] for r in conn.execute(
            "SELECT service FROM guards WHERE node = ? AND paused = 0 AND (last_attempt IS NULL OR last_attempt < ?) "
            "AND (next_attempt IS NULL OR next_attempt < ?) "
            "AND (circuit_opened_at IS NULL OR circuit_opened_at < ?)", (node, cut, cut, cut)) if r[0] not in keep]
    n_specs = n_intents = n_guards = 0
    for start in range(0, max(len(specs), len(intents), len(guards)), BATCH_ROWS):
        with db.tx() as conn:
            for s in specs[start:start + BATCH_ROWS]:
                n_specs += conn.execute("DELETE FROM specs WHERE node = ? AND service = ? AND seen_at < ?",
                                        (node, s, cut)).rowcount
            for s in intents[start:start + BATCH_ROWS]:
                n_intents += conn.execute("DELETE FROM intents WHERE node = ? AND service = ? AND recorded_at < ?",
                                          (node, s, cut)).rowcount
            for s in guards[start:start + BATCH_ROWS]:
                n_guards += conn.execute(
                    "DELETE FROM guards WHERE node = ? AND service = ? AND paused = 0 "
                    "AND (last_attempt IS NULL OR last_attempt < ?) AND (next_attempt IS NULL OR next_attempt < ?) "
                    "AND (circuit_opened_at IS NULL OR circuit_opened_at < ?)", (node, s, cut, cut, cut)).rowcount
    return UntrackedCounts(specs=n_specs, guards=n_guards, intents=n_intents)


@dataclass(frozen=True)
class RetentionCounts:
    """What one :func:`apply_retention` run deleted (rows per table), whether it
    rotated ``events.jsonl``, and the families that failed (their error text)."""

    events: int = 0
    actions: int = 0
    incidents: int = 0
    outbox: int = 0
    untracked: UntrackedCounts | None = None
    events_file_rotated: bool = False
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return (self.events + self.actions + self.incidents + self.outbox
                + (self.untracked.total if self.untracked else 0))

    def line(self) -> str:
        """One sentence for the log: what was deleted."""
        u = self.untracked or UntrackedCounts()
        parts = [f"{n} {what}" for n, what in (
            (self.events, "events"), (self.actions, "actions"), (self.incidents, "resolved incidents"),
            (self.outbox, "finished notifications"), (u.specs, "specs"), (u.guards, "guard records"),
            (u.intents, "intents")) if n]
        if self.events_file_rotated:
            parts.append("rotated events.jsonl")
        return ", ".join(parts) or "nothing"


def apply_retention(db: FeatureDB, policy: RetentionPolicy, *, now: datetime, keep: AbstractSet[str] | None,
                    events_path: Path | None = None) -> RetentionCounts:
    """Apply every bound of ``[retention]`` once. Never raises: a family that fails
    (e.g. the database stays locked past its busy timeout) is logged and named in
    ``errors``, and the others still run.

    Args:
        db: any store of ``dockwarden.db``.
        policy: the ``[retention]`` table.
        now: aware UTC time of the run.
        keep: services whose specs, guards and intents must stay (see
            :func:`prune_untracked`); None skips that family (no trustworthy
            observation of what is tracked).
        events_path: ``events.jsonl``, rotated when it is already larger than
            ``events_jsonl_max_bytes`` (rotated files beyond the count are deleted);
            None: the file is left alone.
    Returns:
        RetentionCounts: rows deleted per table.
    """
    errors: dict[str, str] = {}
    out: dict[str, object] = {}
    jobs: list[tuple[str, Callable[[], object]]] = [
        ("events", lambda: prune_events(db, now=now, max_age_s=policy.events_max_age_s,
                                        max_rows=policy.events_max_rows)),
        ("actions", lambda: prune_actions(db, now=now, max_age_s=policy.actions_max_age_s,
                                          max_rows=policy.actions_max_rows)),
        ("incidents", lambda: prune_incidents(db, now=now, max_age_s=policy.incidents_max_age_s)),
        ("outbox", lambda: prune_outbox(db, now=now, max_age_s=policy.outbox_max_age_s)),
    ]
    if keep is not None:
        jobs.append(("untracked", lambda: prune_untracked(db, now=now, max_age_s=policy.untracked_max_age_s,
                                                          keep=keep)))
    if events_path is not None:
        jobs.append(("events_file_rotated", lambda: rotate_if_over(
            events_path, max_bytes=policy.events_jsonl_max_bytes, rotated_files=policy.events_jsonl_rotated_files)))
    for name, job in jobs:
        try:
            out[name] = job()
        except (sqlite3.Error, OSError) as e:  # one family failing must not stop the others
            errors[name] = str(e)
            log.error("retention: %s failed, trying again next run: %s", name, e)
    return RetentionCounts(errors=errors, **out)  # type: ignore[arg-type]


def tracked_names(desired: DesiredState, world: WorldState) -> set[str]:
    """Services whose rows retention must keep: the desired state with labelled
    containers merged in, plus every container name the engine reports (a stopped
    or unlabelled container still exists, so its rows are not stale)."""
    merged, _ = merge_labelled(desired, world.containers)
    return set(merged.services) | {c.name for c in world.containers}


class RetentionWorker(PeriodicWorker):
    """Applies ``[retention]`` in the daemon every ``interval_s`` (default 3600 s),
    the first run :data:`FIRST_RUN_DELAY_S` after start. Logs one info line when it
    deleted something; records no events (an hourly event would itself be growth).

    Specs, guards and intents of untracked services are pruned only when the last
    observation reached the engine and the inventory loads: without them "tracked"
    is unknown, and guessing could delete the intent of a stopped container.

    Args:
        clock: aware UTC now (injectable for tests).
        first_delay_s: seconds before the first run.
    """

    name = "retention"

    def __init__(self, *, clock: Callable[[], datetime] = now_utc, first_delay_s: float = FIRST_RUN_DELAY_S):
        super().__init__()
        self.clock = clock
        self.first_delay_s = first_delay_s
        self.store: Store | None = None
        self.last: RetentionCounts | None = None
        self._desired: DesiredState | None = None

    def interval_s(self) -> float:
        return self.ctx.policy().retention.interval_s if self.ctx else 3600.0

    def start(self, ctx) -> None:  # type: ignore[override]
        self.store = Store(ctx.state_dir / "dockwarden.db", ctx.node)
        super().start(ctx)

    def stop(self) -> None:
        super().stop()
        if self.store is not None:
            try:
                self.store.close()
            except Exception as e:  # closing at shutdown must not raise
                log.debug("retention: close failed: %s", e)

    def _loop(self) -> None:
        if self._stop.wait(self.first_delay_s):
            return
        super()._loop()

    def keep(self) -> set[str] | None:
        """The services to keep rows of, or None when that is unknown (no pass
        yet, engine unreachable, inventory unreadable and no last good one)."""
        ctx = self.ctx
        assert ctx is not None
        world = ctx.world()
        if world is None or not world.engine_ok:
            return None
        try:
            self._desired = load_inventory(ctx.settings.inventory, ctx.settings.node)
        except ConfigError as e:  # keep the last good one
            log.warning("retention: inventory unreadable%s: %s",
                        ", using the last good one" if self._desired else "; untracked rows are kept", e)
        if self._desired is None:
            return None
        return tracked_names(self._desired, world)

    def tick(self) -> None:
        ctx = self.ctx
        assert ctx is not None and self.store is not None
        policy = ctx.policy().retention
        counts = apply_retention(self.store, policy, now=self.clock(), keep=self.keep(),
                                 events_path=ctx.state_dir / EVENTS_FILE)
        self.last = counts
        if counts.total_rows or counts.events_file_rotated:
            log.info("retention: deleted %s", counts.line())
