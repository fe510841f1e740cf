"""The pool's tables in ``<state-dir>/dockwarden.db``: schema, migrations, queries.

Two tables, with the original's columns (aidevops PR 2184, seed 004) plus what
its defects needed: ``container_pool`` (one row per container ever spawned;
destroyed ones stay as ``stopped`` for the record) and
``container_dispatch_log`` (one row per dispatch, with its completion, outcome
and exit code). Component ``pool`` in ``schema_migrations`` (store.apply_migrations).

Rules kept here, in SQL, in one place:

- *busy* = has a dispatch without ``completed_at``; a busy container is never
  selected, destroyed without force, or cleaned up.
- select and the dispatch record happen in one ``BEGIN IMMEDIATE`` transaction,
  so concurrent selects (threads or processes) never get the same container.
- *live* = every status but ``stopped``; names are unique among live rows.
  *counted* (against max, toward min) = live but not ``failed`` (no container).

All SQL is static text with ``?``/``:name`` parameters; times are RFC 3339 UTC
strings with milliseconds (``model.rfc3339``), so they compare as text.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import Any

from dockwarden.model import rfc3339
from dockwarden.pool.errors import PoolNotFound, PoolRefused
from dockwarden.pool.schema import NOT_BUSY, ROW_SELECT, MIGRATIONS, Dispatch, PoolContainer
from dockwarden.db import FeatureDB


class PoolDB(FeatureDB):
    """The pool tables over one connection, guarded by a lock (safe to share
    between threads; each process opens its own). Connection, lock, ``tx()``
    and migrations come from :class:`~dockwarden.store.FeatureDB`.

    Args:
        path: ``<state-dir>/dockwarden.db`` (created with its directory).
    Raises:
        sqlite3.Error, store.StoreError: the file cannot be opened or migrated.
    """

    COMPONENT = "pool"
    MIGRATIONS = MIGRATIONS


    # ------------------------------------------------------------------ reading

    def containers(self, status: str | None = None, *, include_stopped: bool = False) -> list[PoolContainer]:
        """Rows by name; stopped (destroyed) ones only when asked or filtered for."""
        rows = self._q(ROW_SELECT + " WHERE (:status IS NULL AND (:all OR p.status <> 'stopped')) OR p.status = :status"
                       " ORDER BY p.name, p.id", {"status": status, "all": int(include_stopped)})
        return [PoolContainer.from_row(r) for r in rows]

    def get(self, ref: str) -> PoolContainer:
        """A live container by name, pool id (digits) or docker id prefix (>= 4 hex digits).

        Raises:
            PoolNotFound: none matches, or a docker id prefix matches several.
        """
        rows = self._q(ROW_SELECT + " WHERE p.status <> 'stopped' AND p.name = ?", (ref,))
        if not rows and ref.isdigit():
            rows = self._q(ROW_SELECT + " WHERE p.status <> 'stopped' AND p.id = ?", (int(ref),))
        if not rows and len(ref) >= 4 and all(c in "0123456789abcdef" for c in ref.lower()):
            rows = self._q(ROW_SELECT + " WHERE p.status <> 'stopped' AND p.docker_id LIKE ? || '%'", (ref.lower(),))
        if len(rows) != 1:
            live = [c.name for c in self.containers()]
            what = "is ambiguous" if rows else "is not in the pool"
            raise PoolNotFound(f"pool container {ref!r} {what}; pool containers: {', '.join(live) or '(none)'}")
        return PoolContainer.from_row(rows[0])

    def by_id(self, cid: int) -> PoolContainer:
        return PoolContainer.from_row(self._q(ROW_SELECT + " WHERE p.id = ?", (cid,))[0])

    def dispatch(self, dispatch_id: int) -> Dispatch:
        rows = self._q("SELECT d.*, p.name FROM container_dispatch_log AS d JOIN container_pool AS p "
                       "ON p.id = d.container_id WHERE d.id = ?", (dispatch_id,))
        if not rows:
            raise PoolNotFound(f"dispatch {dispatch_id} does not exist")
        return Dispatch.from_row(rows[0])

    def stats(self, now: datetime) -> dict[str, Any]:
        """Every figure of ``pool status`` in one query (the original ran six)."""
        row = self._q(
            """SELECT
                 COALESCE(SUM(p.status IN ('starting','healthy','unhealthy','rate_limited','stopping')), 0) AS live,
                 COALESCE(SUM(p.status = 'starting'), 0) AS starting,
                 COALESCE(SUM(p.status = 'healthy'), 0) AS healthy,
                 COALESCE(SUM(p.status = 'unhealthy'), 0) AS unhealthy,
                 COALESCE(SUM(p.status = 'rate_limited'), 0) AS rate_limited,
                 COALESCE(SUM(p.status = 'stopping'), 0) AS stopping,
                 COALESCE(SUM(p.status = 'failed'), 0) AS failed,
                 COALESCE(SUM(p.status = 'stopped'), 0) AS destroyed,
                 COALESCE(SUM(p.status <> 'stopped' AND NOT """ + NOT_BUSY + """), 0) AS busy,
                 COALESCE(SUM(p.status IN ('healthy','rate_limited')
                              AND (p.rate_limit_until IS NULL OR p.rate_limit_until <= :now)
                              AND """ + NOT_BUSY + """), 0) AS available,
                 (SELECT COUNT(*) FROM container_dispatch_log) AS dispatches,
                 (SELECT COUNT(*) FROM container_dispatch_log WHERE completed_at IS NULL) AS open_dispatches,
                 (SELECT COUNT(*) FROM container_dispatch_log WHERE outcome = 'ok') AS outcome_ok,
                 (SELECT COUNT(*) FROM container_dispatch_log WHERE outcome = 'failed') AS outcome_failed,
                 (SELECT COUNT(*) FROM container_dispatch_log WHERE outcome = 'rate_limited') AS outcome_rate_limited,
                 (SELECT MAX(dispatched_at) FROM container_dispatch_log) AS last_dispatch_at
               FROM container_pool AS p""",
            {"now": rfc3339(now)},
        )[0]
        return dict(row)

    # ------------------------------------------------------------------ spawn / destroy

    def reserve(self, *, name: str | None, prefix: str, image: str, host: str, max_n: int,
                taken: set[str], now: datetime) -> PoolContainer:
        """Reserve a slot (a ``starting`` row) before the container is created, so
        concurrent spawns cannot pass max together.

        Args:
            name: the name asked for, or None for ``<prefix>-<n>`` (smallest free n,
                skipping ``taken``: names the engine already uses).
        Raises:
            PoolRefused: max live containers already, or the name is in the pool.
        """
        with self.tx() as db:
            n = db.execute("SELECT COUNT(*) FROM container_pool WHERE status IN "
                           "('starting','healthy','unhealthy','rate_limited','stopping')").fetchone()[0]
            if n >= max_n:
                raise PoolRefused(f"pool is full: {n} of max {max_n} containers; destroy one or raise max")
            live = {r[0] for r in db.execute("SELECT name FROM container_pool WHERE status <> 'stopped'")}
            if name is None:
                i = 1
                while f"{prefix}-{i}" in live or f"{prefix}-{i}" in taken:
                    i += 1
                name = f"{prefix}-{i}"
            elif name in live:
                raise PoolRefused(f"name {name!r} is already in the pool")
            ts = rfc3339(now)
            cur = db.execute("INSERT INTO container_pool (name, image, status, host, created_at, updated_at) "
                             "VALUES (?, ?, 'starting', ?, ?, ?)", (name, image, host, ts, ts))
            cid = cur.lastrowid
        return self.by_id(cid)  # type: ignore[arg-type]

    def set_docker_id(self, cid: int, docker_id: str, now: datetime) -> None:
        with self.tx() as db:
            db.execute("UPDATE container_pool SET docker_id = ?, updated_at = ? WHERE id = ?",
                       (docker_id, rfc3339(now), cid))

    def spawn_failed(self, cid: int, error: str, now: datetime) -> None:
        """The container could not be created or started: the slot is released."""
        with self.tx() as db:
            db.execute("UPDATE container_pool SET status = 'stopped', error = ?, updated_at = ? WHERE id = ?",
                       (error, rfc3339(now), cid))

    def begin_destroy(self, cid: int, *, force: bool, reason: str, now: datetime) -> list[int]:
        """Mark a container ``stopping`` (select skips it from now on).

        Returns:
            The ids of the open dispatches closed as ``failed`` (only with force).
        Raises:
            PoolRefused: it is busy and ``force`` is False, or it is already being destroyed.
        """
        ts = rfc3339(now)
        with self.tx() as db:
            row = db.execute(ROW_SELECT + " WHERE p.id = ?", (cid,)).fetchone()
            if row["status"] in ("stopping", "stopped"):
                raise PoolRefused(f"{row['name']}: already {row['status']}")
            open_ids = [r[0] for r in db.execute("SELECT id FROM container_dispatch_log WHERE container_id = ? "
                                                 "AND completed_at IS NULL ORDER BY id", (cid,))]
            if open_ids and not force:
                raise PoolRefused(f"{row['name']}: busy with dispatch {open_ids[0]}; complete it first or use --force")
            db.execute("UPDATE container_dispatch_log SET completed_at = ?, outcome = 'failed', error = ? "
                       "WHERE container_id = ? AND completed_at IS NULL", (ts, reason, cid))
            db.execute("UPDATE container_pool SET status = 'stopping', updated_at = ? WHERE id = ?", (ts, cid))
        return open_ids

    def finish_destroy(self, cid: int, now: datetime, error: str | None = None) -> None:
        with self.tx() as db:
            db.execute("UPDATE container_pool SET status = 'stopped', error = COALESCE(?, error), updated_at = ? "
                       "WHERE id = ?", (error, rfc3339(now), cid))

    def destroy_failed(self, cid: int, error: str, now: datetime) -> None:
        """The engine did not remove a ``stopping`` container: mark it ``unhealthy``
        (never selected) so that destroy, cleanup or the daemon can try again."""
        with self.tx() as db:
            db.execute("UPDATE container_pool SET status = 'unhealthy', error = ?, updated_at = ?, "
                       "unhealthy_since = COALESCE(unhealthy_since, ?) WHERE id = ?",
                       (error, rfc3339(now), rfc3339(now), cid))

    # ------------------------------------------------------------------ dispatch

    def select_and_record(self, *, host: str | None, task_id: str | None, command: str | None,
                          now: datetime) -> tuple[PoolContainer, Dispatch] | None:
        """Pick a container and record the dispatch to it, in one transaction.

        Picks a container that is healthy (or rate-limited with its cooldown
        over), not busy, on ``host`` when given: the least recently dispatched
        first (never dispatched before all), ties by name then id.

        Returns:
            (container after the update, the new open dispatch), or None when none is available.
        """
        ts = rfc3339(now)
        with self.tx() as db:
            row = db.execute(
                "SELECT p.id FROM container_pool AS p "
                "WHERE p.status IN ('healthy', 'rate_limited') "
                "AND (p.rate_limit_until IS NULL OR p.rate_limit_until <= :now) "
                "AND (:host IS NULL OR p.host = :host) AND " + NOT_BUSY + " "
                "ORDER BY p.last_dispatch_at, p.name, p.id LIMIT 1",
                {"now": ts, "host": host},
            ).fetchone()
            if row is None:
                return None
            cid = row[0]
            cur = db.execute("INSERT INTO container_dispatch_log (container_id, task_id, command, dispatched_at) "
                             "VALUES (?, ?, ?, ?)", (cid, task_id, command, ts))
            did = cur.lastrowid
            db.execute("UPDATE container_pool SET last_dispatch_at = ?, dispatch_count = dispatch_count + 1, "
                       "status = 'healthy', rate_limit_until = NULL, updated_at = ? WHERE id = ?", (ts, ts, cid))
        return self.by_id(cid), self.dispatch(did)  # type: ignore[arg-type]

    def complete(self, dispatch_id: int, *, outcome: str, exit_code: int | None, error: str | None,
                 cooldown_s: int, now: datetime) -> Dispatch:
        """Record a dispatch's end; ``rate_limited`` starts the container's cooldown.

        Raises:
            PoolNotFound: no such dispatch.
            PoolRefused: it is already completed (nothing is changed).
        """
        ts = rfc3339(now)
        with self.tx() as db:
            row = db.execute("SELECT container_id, completed_at, outcome FROM container_dispatch_log WHERE id = ?",
                             (dispatch_id,)).fetchone()
            if row is None:
                raise PoolNotFound(f"dispatch {dispatch_id} does not exist")
            if row["completed_at"] is not None:
                raise PoolRefused(f"dispatch {dispatch_id} was already completed at {row['completed_at']} "
                                  f"(outcome {row['outcome']})")
            db.execute("UPDATE container_dispatch_log SET completed_at = ?, outcome = ?, exit_code = ?, error = ? "
                       "WHERE id = ?", (ts, outcome, exit_code, error, dispatch_id))
            if outcome == "rate_limited":
                self._rate_limit(db, row["container_id"], seconds=cooldown_s, now=now)
        return self.dispatch(dispatch_id)

    # ------------------------------------------------------------------ rate limits and health

    @staticmethod
    def _rate_limit(db: sqlite3.Connection, cid: int, *, seconds: int, now: datetime) -> None:
        until_s = rfc3339(now + timedelta(seconds=seconds))
        db.execute("UPDATE container_pool SET rate_limit_until = ?, rate_limit_count = rate_limit_count + 1, "
                   "status = CASE WHEN status IN ('healthy','rate_limited','starting') THEN 'rate_limited' "
                   "ELSE status END, updated_at = ? WHERE id = ?", (until_s, rfc3339(now), cid))

    def set_rate_limit(self, cid: int, seconds: int, now: datetime) -> PoolContainer:
        with self.tx() as db:
            self._rate_limit(db, cid, seconds=seconds, now=now)
        return self.by_id(cid)

    def clear_rate_limit(self, cid: int, now: datetime) -> PoolContainer:
        with self.tx() as db:
            db.execute("UPDATE container_pool SET rate_limit_until = NULL, status = CASE WHEN status = "
                       "'rate_limited' THEN 'healthy' ELSE status END, updated_at = ? WHERE id = ?",
                       (rfc3339(now), cid))
        return self.by_id(cid)

    def record_health(self, cid: int, *, healthy: bool | None, error: str | None, docker_id: str | None,
                      vanished: bool, now: datetime) -> tuple[str, str]:
        """Write one health result. ``healthy`` None means "still starting".

        A healthy container under an unexpired rate limit stays ``rate_limited``;
        an expired one returns to ``healthy``. Rows being destroyed are left alone.

        Returns:
            (status before, status after).
        """
        ts = rfc3339(now)
        with self.tx() as db:
            row = db.execute("SELECT status, rate_limit_until FROM container_pool WHERE id = ?", (cid,)).fetchone()
            old = row["status"]
            if old in ("stopping", "stopped"):
                return old, old
            limited = row["rate_limit_until"] is not None and row["rate_limit_until"] > ts
            if vanished:
                new = "failed"
            elif healthy is None:
                new = old if old in ("starting", "unhealthy") else "starting"
            elif healthy:
                new = "rate_limited" if limited else "healthy"
            else:
                new = "unhealthy"
            clear = new == "healthy" and row["rate_limit_until"] is not None
            db.execute("UPDATE container_pool SET status = ?, error = ?, last_health_check = ?, updated_at = ?, "
                       "docker_id = COALESCE(?, docker_id), rate_limit_until = CASE WHEN ? THEN NULL "
                       "ELSE rate_limit_until END, unhealthy_since = CASE WHEN ? IN ('unhealthy', 'failed') "
                       "THEN COALESCE(unhealthy_since, ?) ELSE NULL END WHERE id = ?",
                       (new, error, ts, ts, docker_id, int(clear), new, ts, cid))
        return old, new

    def close_open_dispatches(self, cid: int, error: str, now: datetime) -> list[int]:
        """Close a dead container's open dispatches as ``failed`` (they cannot finish)."""
        with self.tx() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM container_dispatch_log WHERE container_id = ? "
                                            "AND completed_at IS NULL", (cid,))]
            db.execute("UPDATE container_dispatch_log SET completed_at = ?, outcome = 'failed', error = ? "
                       "WHERE container_id = ? AND completed_at IS NULL", (rfc3339(now), error, cid))
        return ids

    # ------------------------------------------------------------------ cleanup

    def idle(self, *, idle_timeout_s: int, keep: int, now: datetime, mark: bool) -> list[PoolContainer]:
        """Containers idle longer than the timeout, oldest activity first, at most
        (counted - keep) of them: not busy, not dispatched and not created within
        the timeout. With ``mark`` they become ``stopping`` in the same transaction
        (so a concurrent select cannot pick them).
        """
        cutoff = rfc3339(now - timedelta(seconds=idle_timeout_s))
        with self.tx() as db:
            # Containers already being destroyed do not count toward what is kept.
            counted = db.execute("SELECT COUNT(*) FROM container_pool WHERE status IN "
                                 "('starting','healthy','unhealthy','rate_limited')").fetchone()[0]
            room = max(0, counted - keep)
            rows = db.execute(
                ROW_SELECT + " WHERE p.status IN ('healthy','unhealthy','rate_limited') AND p.created_at < :cutoff "
                "AND (p.last_dispatch_at IS NULL OR p.last_dispatch_at < :cutoff) AND " + NOT_BUSY + " "
                "ORDER BY COALESCE(p.last_dispatch_at, p.created_at), p.name, p.id LIMIT :room",
                {"cutoff": cutoff, "room": room},
            ).fetchall()
            if mark:
                for r in rows:
                    db.execute("UPDATE container_pool SET status = 'stopping', updated_at = ? WHERE id = ?",
                               (rfc3339(now), r["id"]))
        return [PoolContainer.from_row(r) for r in rows]
