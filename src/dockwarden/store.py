"""SQLite store in the state dir: intents, events, actions, guard records,
recorded specs, open drifts and checkpoints.

One file, ``<state-dir>/dockwarden.db``, in WAL mode so the CLI can read and
record intents while the daemon runs. All SQL uses parameters; the schema is
versioned with ``PRAGMA user_version`` and migrated forward on open.
Timestamps are stored as RFC 3339 UTC strings (style.md §4).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from dockwarden.db import FeatureDB, StoreError, is_storage_error  # noqa: F401 - StoreError is part of the store's API
from dockwarden.model import (
    ActionBy,
    ActionKind,
    ActionRecord,
    CircuitState,
    DriftKind,
    Event,
    GuardRecord,
    Intent,
    IntentRecord,
    IntentSource,
    Outcome,
    PendingAction,
    parse_time,
    rfc3339,
)

SCHEMA_VERSION = 3

#: How many of the newest judged actions action_stats() reads per pass.
ACTION_STATS_WINDOW = 2000

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE intents (
            service TEXT PRIMARY KEY,
            intent TEXT NOT NULL CHECK (intent IN ('running','stopped')),
            source TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts TEXT NOT NULL,
            type TEXT NOT NULL,
            node TEXT NOT NULL,
            service TEXT,
            container TEXT,
            drift TEXT,
            priority TEXT,
            action TEXT,
            reason TEXT NOT NULL DEFAULT '',
            details TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX events_ts ON events (ts)",
        "CREATE INDEX events_service ON events (service, ts)",
        """CREATE TABLE actions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            service TEXT NOT NULL,
            container TEXT NOT NULL,
            action TEXT NOT NULL,
            drift TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            ok INTEGER,
            result TEXT,
            error TEXT,
            permanent INTEGER NOT NULL DEFAULT 0,
            verdict TEXT NOT NULL DEFAULT 'pending' CHECK (verdict IN ('pending','succeeded','failed')),
            judged_at TEXT
        )""",
        "CREATE INDEX actions_service ON actions (service, id)",
        "CREATE INDEX actions_container ON actions (container, started_at)",
        """CREATE TABLE guards (
            service TEXT PRIMARY KEY,
            attempts INTEGER NOT NULL DEFAULT 0,
            attempt_times TEXT NOT NULL DEFAULT '[]',
            last_attempt TEXT,
            next_attempt TEXT,
            circuit TEXT NOT NULL DEFAULT 'closed' CHECK (circuit IN ('closed','open')),
            circuit_opened_at TEXT,
            paused INTEGER NOT NULL DEFAULT 0,
            message TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE specs (
            service TEXT PRIMARY KEY,
            container TEXT NOT NULL,
            spec TEXT NOT NULL,
            seen_at TEXT NOT NULL
        )""",
        """CREATE TABLE drifts (
            subject TEXT NOT NULL,
            kind TEXT NOT NULL,
            container TEXT,
            priority TEXT,
            reason TEXT NOT NULL DEFAULT '',
            since TEXT NOT NULL,
            PRIMARY KEY (subject, kind)
        )""",
        """CREATE TABLE checkpoints (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        "PRAGMA user_version = 1",  # each migration ends by stamping its version
    ),
    2: (
        # The action protocol (dockwarden.actions): a client-made id written in every
        # event, the real container id, who asked, the owner's pid and a deadline;
        # verdicts 'interrupted' (never finished) and 'superseded'. SQLite cannot
        # change a CHECK constraint, so the table is rebuilt.
        """CREATE TABLE actions_v2 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            uid TEXT NOT NULL UNIQUE,
            service TEXT NOT NULL,
            container TEXT NOT NULL,
            container_id TEXT,
            action TEXT NOT NULL,
            drift TEXT,
            by TEXT NOT NULL DEFAULT 'daemon',
            pid INTEGER,
            started_at TEXT NOT NULL,
            deadline_at TEXT NOT NULL,
            finished_at TEXT,
            ok INTEGER,
            result TEXT,
            error TEXT,
            permanent INTEGER NOT NULL DEFAULT 0,
            verdict TEXT NOT NULL DEFAULT 'pending'
                CHECK (verdict IN ('pending','succeeded','failed','interrupted','superseded')),
            judged_at TEXT
        )""",
        """INSERT INTO actions_v2 (id, uid, service, container, action, drift, started_at, deadline_at,
                finished_at, ok, result, error, permanent, verdict, judged_at)
           SELECT id, 'legacy-' || id, service, container, action, drift, started_at, started_at,
                COALESCE(finished_at, started_at), ok, result, error, permanent,
                CASE WHEN finished_at IS NULL THEN 'interrupted' ELSE verdict END, judged_at
           FROM actions""",
        "DROP TABLE actions",
        "ALTER TABLE actions_v2 RENAME TO actions",
        "CREATE INDEX actions_service ON actions (service, id)",
        "CREATE INDEX actions_pending ON actions (service, id) WHERE verdict = 'pending'",
        "CREATE INDEX actions_unfinished ON actions (deadline_at) WHERE finished_at IS NULL",
        "CREATE INDEX actions_finished ON actions (service, finished_at)",
        # Stops read as the operator's that may turn out to be the engine's own
        # shutdown: kept until the evidence decides (design.md promise 1).
        """CREATE TABLE observed_stops (
            service TEXT PRIMARY KEY,
            container TEXT NOT NULL,
            container_id TEXT,
            at TEXT NOT NULL,
            event TEXT NOT NULL,
            previous_intent TEXT,
            previous_source TEXT,
            previous_reason TEXT
        )""",
        "PRAGMA user_version = 2",
    ),
    3: (
        # One database, several nodes (issue 11): every row of the core tables is
        # keyed by node. Rows from before carry node '' until a daemon of the node
        # they belong to claims them (Store._claim_legacy_rows).
        """CREATE TABLE intents_v3 (
            node TEXT NOT NULL DEFAULT '',
            service TEXT NOT NULL,
            intent TEXT NOT NULL CHECK (intent IN ('running','stopped')),
            source TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (node, service)
        )""",
        "INSERT INTO intents_v3 (node, service, intent, source, recorded_at, reason) SELECT '', service, intent, source, recorded_at, reason FROM intents",
        "DROP TABLE intents",
        "ALTER TABLE intents_v3 RENAME TO intents",
        """CREATE TABLE guards_v3 (
            node TEXT NOT NULL DEFAULT '',
            service TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            attempt_times TEXT NOT NULL DEFAULT '[]',
            last_attempt TEXT,
            next_attempt TEXT,
            circuit TEXT NOT NULL DEFAULT 'closed' CHECK (circuit IN ('closed','open')),
            circuit_opened_at TEXT,
            paused INTEGER NOT NULL DEFAULT 0,
            message TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (node, service)
        )""",
        "INSERT INTO guards_v3 (node, service, attempts, attempt_times, last_attempt, next_attempt, circuit, circuit_opened_at, paused, message) SELECT '', service, attempts, attempt_times, last_attempt, next_attempt, circuit, circuit_opened_at, paused, message FROM guards",
        "DROP TABLE guards",
        "ALTER TABLE guards_v3 RENAME TO guards",
        """CREATE TABLE specs_v3 (
            node TEXT NOT NULL DEFAULT '',
            service TEXT NOT NULL,
            container TEXT NOT NULL,
            spec TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            PRIMARY KEY (node, service)
        )""",
        "INSERT INTO specs_v3 (node, service, container, spec, seen_at) SELECT '', service, container, spec, seen_at FROM specs",
        "DROP TABLE specs",
        "ALTER TABLE specs_v3 RENAME TO specs",
        """CREATE TABLE drifts_v3 (
            node TEXT NOT NULL DEFAULT '',
            subject TEXT NOT NULL,
            kind TEXT NOT NULL,
            container TEXT,
            priority TEXT,
            reason TEXT NOT NULL DEFAULT '',
            since TEXT NOT NULL,
            PRIMARY KEY (node, subject, kind)
        )""",
        "INSERT INTO drifts_v3 (node, subject, kind, container, priority, reason, since) SELECT '', subject, kind, container, priority, reason, since FROM drifts",
        "DROP TABLE drifts",
        "ALTER TABLE drifts_v3 RENAME TO drifts",
        """CREATE TABLE observed_stops_v3 (
            node TEXT NOT NULL DEFAULT '',
            service TEXT NOT NULL,
            container TEXT NOT NULL,
            container_id TEXT,
            at TEXT NOT NULL,
            event TEXT NOT NULL,
            previous_intent TEXT,
            previous_source TEXT,
            previous_reason TEXT,
            PRIMARY KEY (node, service)
        )""",
        "INSERT INTO observed_stops_v3 (node, service, container, container_id, at, event, previous_intent, previous_source, previous_reason) SELECT '', service, container, container_id, at, event, previous_intent, previous_source, previous_reason FROM observed_stops",
        "DROP TABLE observed_stops",
        "ALTER TABLE observed_stops_v3 RENAME TO observed_stops",
        """CREATE TABLE checkpoints_v3 (
            node TEXT NOT NULL DEFAULT '',
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (node, key)
        )""",
        "INSERT INTO checkpoints_v3 (node, key, value) SELECT '', key, value FROM checkpoints",
        "DROP TABLE checkpoints",
        "ALTER TABLE checkpoints_v3 RENAME TO checkpoints",
        "ALTER TABLE actions ADD COLUMN node TEXT NOT NULL DEFAULT ''",
        "DROP INDEX actions_service",
        "DROP INDEX actions_pending",
        "DROP INDEX actions_finished",
        "CREATE INDEX actions_service ON actions (node, service, id)",
        "CREATE INDEX actions_pending ON actions (node, service, id) WHERE verdict = 'pending'",
        "CREATE INDEX actions_finished ON actions (node, service, finished_at)",
        "PRAGMA user_version = 3",
    ),
}


#: The core tables keyed by node (migration 3).
_NODE_TABLES = ("intents", "guards", "specs", "drifts", "observed_stops", "checkpoints", "actions")


class Store(FeatureDB):
    """The core SQLite store (intents, events, actions, guards, specs, drifts,
    checkpoints). Thread-safe through one lock around one connection; the core
    schema is versioned with ``PRAGMA user_version``.

    Args:
        path: the database file; its directory is created.
    Raises:
        StoreError: the file cannot be opened, or its schema is newer than this
            version of dockwarden understands.
    """

    def __init__(self, path, node: str = ""):
        #: The node this store reads and writes (issue 11: one database, several nodes).
        self.node = node
        # Overlays: what held writes (FeatureDB._w) will write, so reads see it
        # while the state dir cannot be written (issue 8: a full disk is survived).
        self._o_intents: dict[str, IntentRecord | None] = {}
        self._o_guards: dict[str, GuardRecord] = {}
        self._o_actions: dict[str, dict[str, Any]] = {}
        self._o_checkpoints: dict[str, str] = {}
        self._o_drifts: dict[tuple[str, str], dict[str, Any] | None] = {}
        super().__init__(path)
        if node:
            self._claim_legacy_rows()

    def for_node(self, node: str) -> "Store":
        """Another view of the same database file, for another node."""
        return Store(self.path, node)

    def _claim_legacy_rows(self) -> None:
        """Rows written before nodes were recorded (node '') belong to the node
        this dockwarden supervised then: the node of its newest event, or any
        node when no event names one. Claimed once, in one transaction."""
        with self.tx() as db:
            if db.execute("SELECT 1 FROM intents WHERE node = '' UNION ALL SELECT 1 FROM guards WHERE node = '' "
                          "UNION ALL SELECT 1 FROM actions WHERE node = '' UNION ALL SELECT 1 FROM specs "
                          "WHERE node = '' UNION ALL SELECT 1 FROM checkpoints WHERE node = '' LIMIT 1").fetchone() is None:
                return
            row = db.execute("SELECT node FROM events WHERE node != '' ORDER BY id DESC LIMIT 1").fetchone()
            if row is not None and row[0] != self.node:
                return
            for table in _NODE_TABLES:  # fixed names, not input
                db.execute("UPDATE " + table + " SET node = ? WHERE node = ''", (self.node,))

    def transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error); same as ``tx()``."""
        return self.tx()

    def _flush_locked(self) -> bool:
        """Write out held writes, then the latest held checkpoints; the overlays
        go once everything is written (so reads come from the file again)."""
        if not super()._flush_locked():
            return False
        try:
            for key, value in list(self._o_checkpoints.items()):
                self._db.execute("INSERT INTO checkpoints (node, key, value) VALUES (?, ?, ?) "
                                 "ON CONFLICT(node, key) DO UPDATE SET value=excluded.value", (self.node, key, value))
        except sqlite3.OperationalError as e:
            if not is_storage_error(e):
                raise
            self.write_error = str(e)
            return False
        for overlay in (self._o_intents, self._o_guards, self._o_actions, self._o_checkpoints, self._o_drifts):
            overlay.clear()
        return True

    def flush_held(self) -> bool:
        """Write out held writes (see :meth:`FeatureDB._w`). Returns True when
        nothing is held any more."""
        with self._lock:
            if not self._held and not self._o_checkpoints:
                return True
            return self._flush_locked()

    def _migrate(self) -> None:
        # Read the version inside the write transaction, so two processes opening
        # a fresh database do not both migrate it.
        while True:
            with self.tx() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreError(f"{self.path}: schema version {version} is newer than this dockwarden "
                                     f"understands ({SCHEMA_VERSION})")
                if version == SCHEMA_VERSION:
                    return
                for stmt in _MIGRATIONS[version + 1]:
                    db.execute(stmt)

    # ------------------------------------------------------------------ intents

    def intents(self) -> dict[str, IntentRecord]:
        """All recorded intents, by service name."""
        out = {}
        for r in self._q("SELECT service, intent, source, recorded_at, reason FROM intents WHERE node = ?",
                         (self.node,)):
            out[r["service"]] = IntentRecord(
                service=r["service"],
                intent=Intent(r["intent"]),
                source=IntentSource(r["source"]),
                recorded_at=parse_time(r["recorded_at"]),  # type: ignore[arg-type]
                reason=r["reason"],
            )
        for service, rec in list(self._o_intents.items()):
            if rec is None:
                out.pop(service, None)
            else:
                out[service] = rec
        return out

    def set_intent(self, service: str, intent: Intent, source: IntentSource, now: datetime, reason: str = "") -> bool:
        """Record an intent. Returns True when it changed (intent or source)."""
        with self._lock:
            cur = self.intents().get(service)
            if cur is not None and cur.intent == intent and cur.source == source:
                return False
            held = self._w(
                "INSERT INTO intents (node, service, intent, source, recorded_at, reason) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(node, service) DO UPDATE SET intent=excluded.intent, source=excluded.source, "
                "recorded_at=excluded.recorded_at, reason=excluded.reason",
                (self.node, service, intent.value, source.value, rfc3339(now), reason),
            ) is None
            if held:
                self._o_intents[service] = IntentRecord(service, intent, source, now, reason)
            return True

    def clear_intent(self, service: str) -> None:
        with self._lock:
            if self._w("DELETE FROM intents WHERE node = ? AND service = ?", (self.node, service)) is None:
                self._o_intents[service] = None

    # ------------------------------------------------------------------ events

    def insert_event(self, ev: Event) -> int | None:
        """Insert one event; None when the write is held (disk full)."""
        return self._w(
            "INSERT INTO events (ts, type, node, service, container, drift, priority, action, reason, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rfc3339(ev.ts), ev.type.value, ev.node, ev.service, ev.container, ev.drift,
                ev.priority, ev.action, ev.reason, json.dumps(ev.details, default=str),
            ),
        )

    def events(
        self, *, since: datetime | None = None, after_id: int = 0, service: str | None = None,
        types: tuple[str, ...] = (), limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Events in time order as dicts (the ``events.jsonl`` shape plus ``id``).

        Args:
            since: only events at or after this time.
            after_id: only events with a larger id (for following).
            service: only this service's events.
            types: only these event types (empty: all).
            limit: at most this many, the newest when more match.
        """
        clauses = ["id > ?"]
        params: list[Any] = [after_id]
        if since is not None:
            clauses.append("ts >= ?")
            params.append(rfc3339(since))
        if service is not None:
            clauses.append("service = ?")
            params.append(service)
        if types:
            clauses.append("type IN (" + ",".join("?" for _ in types) + ")")  # placeholders only
            params.extend(types)
        params.append(int(limit))
        sql = (
            "SELECT * FROM (SELECT * FROM events WHERE " + " AND ".join(clauses)
            + " ORDER BY id DESC LIMIT ?) ORDER BY id"
        )
        out = []
        for r in self._q(sql, tuple(params)):
            d = dict(r)
            d["details"] = json.loads(d["details"] or "{}")
            out.append(d)
        return out

    # ------------------------------------------------------------------ actions

    def begin_action(self, rec: ActionRecord) -> None:
        """Record an action before it runs, so its Docker events are known as ours
        (dockwarden.actions). Older pending actions of the service are superseded.

        Raises:
            sqlite3.Error: the write failed (the caller decides; see ``actions``).
        """
        now = rfc3339(rec.started_at)
        with self._lock:
            a = self._w("UPDATE actions SET verdict = 'superseded', judged_at = ? WHERE node = ? AND service = ? "
                        "AND verdict = 'pending'", (now, self.node, rec.service))
            for o in self._o_actions.values():
                if o["service"] == rec.service and o["verdict"] == "pending":
                    o["verdict"] = "superseded"
            b = self._w(
                "INSERT INTO actions (node, uid, service, container, container_id, action, drift, by, pid, started_at, "
                "deadline_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.node, rec.uid, rec.service, rec.container, rec.container_id, rec.action.value,
                 rec.drift.value if rec.drift else None, rec.by.value, rec.pid, now, rfc3339(rec.deadline_at)),
            )
            if a is None or b is None:
                self._o_actions[rec.uid] = {
                    "uid": rec.uid, "service": rec.service, "container": rec.container,
                    "container_id": rec.container_id, "action": rec.action.value,
                    "drift": rec.drift.value if rec.drift else None, "by": rec.by.value, "pid": rec.pid,
                    "started_at": now, "deadline_at": rfc3339(rec.deadline_at), "finished_at": None,
                    "verdict": "pending"}

    def finish_action(self, uid: str, outcome: Outcome, now: datetime) -> None:
        """Record the API call's result. A failed call is judged failed at once;
        a successful one waits for the next observation (the closed loop)."""
        with self._lock:
            held = self._w(
                "UPDATE actions SET finished_at = ?, ok = ?, result = ?, error = ?, permanent = ?, "
                "verdict = CASE WHEN ? OR verdict != 'pending' THEN verdict ELSE 'failed' END, "
                "judged_at = CASE WHEN ? OR verdict != 'pending' THEN judged_at ELSE ? END WHERE uid = ?",
                (rfc3339(now), int(outcome.ok), outcome.result, outcome.error, int(outcome.permanent),
                 int(outcome.ok), int(outcome.ok), rfc3339(now), uid),
            ) is None
            o = self._overlay_action(uid) if held else None
            if o is not None:
                o["finished_at"] = rfc3339(now)
                if not outcome.ok and o["verdict"] == "pending":
                    o["verdict"] = "failed"

    def judge_action(self, uid: str, verdict: str, now: datetime) -> None:
        """Set the verdict of a pending action (``succeeded``, ``failed``, ``interrupted``)."""
        with self._lock:
            if self._w("UPDATE actions SET verdict = ?, judged_at = ? WHERE uid = ? AND verdict = 'pending'",
                       (verdict, rfc3339(now), uid)) is None:
                o = self._overlay_action(uid)
                if o is not None and o["verdict"] == "pending":
                    o["verdict"] = verdict

    def _overlay_action(self, uid: str) -> dict[str, Any] | None:
        """The overlay copy of an action (made from the file when first needed)."""
        o = self._o_actions.get(uid)
        if o is None:
            rows = self._q("SELECT uid, service, container, container_id, action, drift, by, pid, started_at, "
                           "deadline_at, finished_at, verdict FROM actions WHERE uid = ?", (uid,))
            if not rows:
                return None
            o = self._o_actions[uid] = dict(rows[0])
        return o

    def pending_actions(self) -> dict[str, PendingAction]:
        """The newest unjudged action per service (index ``actions_pending``)."""
        out: dict[str, PendingAction] = {}
        rows = [dict(r) for r in self._q(
            "SELECT uid, service, container, container_id, action, drift, by, started_at, deadline_at, finished_at "
            "FROM actions WHERE node = ? AND verdict = 'pending' ORDER BY id", (self.node,)
        )]
        if self._o_actions:
            rows = [r for r in rows if r["uid"] not in self._o_actions]
            rows += [o for o in self._o_actions.values() if o["verdict"] == "pending"]
            rows.sort(key=lambda r: r["started_at"])
        for r in rows:
            out[r["service"]] = PendingAction(
                id=r["uid"], service=r["service"], container=r["container"], action=ActionKind(r["action"]),
                started_at=parse_time(r["started_at"]),  # type: ignore[arg-type]
                drift=DriftKind(r["drift"]) if r["drift"] else None,
                finished=r["finished_at"] is not None, deadline_at=parse_time(r["deadline_at"]),
                container_id=r["container_id"], by=ActionBy(r["by"]),
            )
        return out

    def unfinished_actions(self) -> list[dict[str, Any]]:
        """Actions whose call never returned (``finished_at`` NULL): uid, service,
        action, by, pid, started_at, deadline_at."""
        rows = [dict(r) for r in self._q(
            "SELECT uid, service, container, action, by, pid, started_at, deadline_at FROM actions "
            "WHERE node = ? AND finished_at IS NULL ORDER BY id", (self.node,))]
        if self._o_actions:
            rows = [r for r in rows if r["uid"] not in self._o_actions]
            rows += [o for o in self._o_actions.values() if o["finished_at"] is None]
        return rows

    def interrupt_action(self, uid: str, now: datetime, why: str) -> bool:
        """Close an action whose call never returned: verdict ``interrupted``.
        Returns True when it was still open."""
        with self._lock:
            o = self._o_actions.get(uid)
            if o is None:
                rows = self._q("SELECT finished_at FROM actions WHERE uid = ?", (uid,))
                if not rows or rows[0]["finished_at"] is not None:
                    return False
            elif o["finished_at"] is not None:
                return False
            held = self._w(
                "UPDATE actions SET finished_at = ?, ok = 0, error = ?, "
                "verdict = CASE WHEN verdict = 'pending' THEN 'interrupted' ELSE verdict END, "
                "judged_at = COALESCE(judged_at, ?) WHERE uid = ? AND finished_at IS NULL",
                (rfc3339(now), why, rfc3339(now), uid),
            ) is None
            o = self._overlay_action(uid) if held else None
            if o is not None:
                o["finished_at"] = rfc3339(now)
                if o["verdict"] == "pending":
                    o["verdict"] = "interrupted"
            return True

    def own_action(self, service: str, container_id: str | None, at: datetime, slack_s: float,
                   actions: tuple[ActionKind, ...]) -> str | None:
        """The uid of dockwarden's own action that explains an engine event, else None.

        An action explains an event on its service at time ``at`` when it is one
        of ``actions``, it started no later than ``at + slack_s``, and it was
        still running then: finished no earlier than ``at - slack_s``, or not
        finished and its deadline not passed. An action that recorded a
        container id explains only that container's events, unless it creates
        containers (recreate, compose_up). Bounded in time on both sides, so an
        interrupted action never explains later events (issue 8).
        """
        marks = ",".join("?" for _ in actions)  # placeholders only, values are parameters
        lo, hi = rfc3339(at - timedelta(seconds=slack_s)), rfc3339(at + timedelta(seconds=slack_s))
        rows = self._q(
            "SELECT uid, action, container_id FROM actions WHERE node = ? AND service = ? AND action IN (" + marks + ") "
            "AND started_at <= ? AND ((finished_at IS NOT NULL AND finished_at >= ?) "
            "OR (finished_at IS NULL AND deadline_at >= ?)) ORDER BY id DESC LIMIT 5",
            (self.node, service, *[a.value for a in actions], hi, lo, lo),
        )
        cands = [dict(r) for r in rows]
        for o in self._o_actions.values():
            if (o["service"] == service and o["action"] in {a.value for a in actions} and o["started_at"] <= hi
                    and ((o["finished_at"] is not None and o["finished_at"] >= lo)
                         or (o["finished_at"] is None and o["deadline_at"] >= lo))):
                cands.insert(0, o)
        for r in cands:
            if (r["container_id"] is None or container_id is None or r["container_id"] == container_id
                    or r["action"] in (ActionKind.RECREATE.value, ActionKind.COMPOSE_UP.value)):
                return r["uid"]
        return None

    def action_stats(self, window: int = ACTION_STATS_WINDOW) -> dict[str, tuple[int, str | None]]:
        """Per service: (failed actions in a row since the last success, last failure text).

        Interrupted and superseded actions count neither way. Reads only the
        newest ``window`` judged actions (this runs every pass; the
        table grows for the daemon's whole life). Failure streaks longer than the
        window count as the window's share, which is far past every guardrail.
        """
        out: dict[str, tuple[int, str | None]] = {}
        rows = self._q("SELECT service, verdict, error, permanent FROM actions "
                       "WHERE node = ? AND verdict IN ('succeeded', 'failed') ORDER BY id DESC LIMIT ?",
                       (self.node, int(window)))
        done: set[str] = set()
        for r in rows:
            s = r["service"]
            if s in done:
                continue
            n, last = out.get(s, (0, None))
            if r["verdict"] == "succeeded":
                done.add(s)
                out.setdefault(s, (0, None))
                continue
            err = r["error"] or "the service did not come back after the action"
            if r["permanent"]:
                err = "permanent: " + err
            out[s] = (n + 1, last or err)
        return out

    def tried_since(self, service: str, since: datetime, limit: int = 10) -> list[str]:
        """What dockwarden tried for a service since a time, as short sentences
        ("start at 10:32:01Z: succeeded"), oldest first, at most ``limit``."""
        rows = self._q(
            "SELECT action, started_at, verdict, error FROM actions WHERE node = ? AND service = ? AND started_at >= ? "
            "ORDER BY id DESC LIMIT ?", (self.node, service, rfc3339(since), int(limit)),
        )
        out = []
        for r in reversed(rows):
            t = (r["started_at"] or "")[11:19]
            res = r["verdict"] + (f" ({r['error']})" if r["error"] else "")
            out.append(f"{r['action']} at {t}Z: {res}")
        return out

    def last_actions(self, limit: int = 50) -> list[dict[str, Any]]:
        return [dict(r) for r in self._q("SELECT * FROM actions WHERE node = ? ORDER BY id DESC LIMIT ?",
                                         (self.node, int(limit)))]

    # ------------------------------------------------------------------ observed stops

    def put_observed_stop(self, service: str, container: str, container_id: str | None, at: datetime,
                          event: str, previous: IntentRecord | None) -> None:
        """Remember an operator stop that the engine's own shutdown could explain
        (``operator_intent``), with the intent it replaced, until evidence decides."""
        self._w(
            "INSERT INTO observed_stops (node, service, container, container_id, at, event, previous_intent, "
            "previous_source, previous_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(node, service) DO UPDATE SET "
            "container=excluded.container, container_id=excluded.container_id, at=excluded.at, event=excluded.event",
            (self.node, service, container, container_id, rfc3339(at), event,
             previous.intent.value if previous else None, previous.source.value if previous else None,
             previous.reason if previous else None),
        )

    def observed_stops(self) -> list[dict[str, Any]]:
        """The remembered stops, oldest first; ``at`` parsed, ``previous`` an
        :class:`IntentRecord` or None."""
        out = []
        for r in self._q("SELECT * FROM observed_stops WHERE node = ? ORDER BY at", (self.node,)):
            d = dict(r)
            d["at"] = parse_time(d["at"])
            d["previous"] = (IntentRecord(service=d["service"], intent=Intent(d["previous_intent"]),
                                          source=IntentSource(d["previous_source"]), recorded_at=d["at"],
                                          reason=d["previous_reason"] or "")
                             if d["previous_intent"] else None)
            out.append(d)
        return out

    def forget_observed_stop(self, service: str) -> None:
        self._w("DELETE FROM observed_stops WHERE node = ? AND service = ?", (self.node, service))

    def forget_observed_stops_before(self, before: datetime) -> int:
        """Drop remembered stops older than ``before``; returns how many."""
        with self._lock:
            n = len(self._q("SELECT 1 FROM observed_stops WHERE node = ? AND at < ?", (self.node, rfc3339(before))))
            if n:
                self._w("DELETE FROM observed_stops WHERE node = ? AND at < ?", (self.node, rfc3339(before)))
            return n

    # ------------------------------------------------------------------ guards

    @staticmethod
    def _guard_from_row(r: sqlite3.Row) -> GuardRecord:
        return GuardRecord(
            service=r["service"],
            attempts=r["attempts"],
            attempt_times=tuple(t for t in (parse_time(x) for x in json.loads(r["attempt_times"])) if t),
            last_attempt=parse_time(r["last_attempt"]),
            next_attempt=parse_time(r["next_attempt"]),
            circuit=CircuitState(r["circuit"]),
            circuit_opened_at=parse_time(r["circuit_opened_at"]),
            paused=bool(r["paused"]),
            message=r["message"],
        )

    def guards(self) -> dict[str, GuardRecord]:
        out = {r["service"]: self._guard_from_row(r)
               for r in self._q("SELECT * FROM guards WHERE node = ?", (self.node,))}
        out.update(self._o_guards)
        return out

    def guard(self, service: str) -> GuardRecord:
        if service in self._o_guards:
            return self._o_guards[service]
        rows = self._q("SELECT * FROM guards WHERE node = ? AND service = ?", (self.node, service))
        return self._guard_from_row(rows[0]) if rows else GuardRecord(service=service)

    def put_guard(self, g: GuardRecord) -> None:
        with self._lock:
            if self._put_guard(g) is None:
                self._o_guards[g.service] = g

    def _put_guard(self, g: GuardRecord) -> int | None:
        return self._w(
            "INSERT INTO guards (node, service, attempts, attempt_times, last_attempt, next_attempt, circuit, "
            "circuit_opened_at, paused, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(node, service) DO UPDATE SET attempts=excluded.attempts, attempt_times=excluded.attempt_times, "
            "last_attempt=excluded.last_attempt, next_attempt=excluded.next_attempt, circuit=excluded.circuit, "
            "circuit_opened_at=excluded.circuit_opened_at, paused=excluded.paused, message=excluded.message",
            (
                self.node, g.service, g.attempts, json.dumps([rfc3339(t) for t in g.attempt_times]), rfc3339(g.last_attempt),
                rfc3339(g.next_attempt), g.circuit.value, rfc3339(g.circuit_opened_at), int(g.paused), g.message,
            ),
        )

    # ------------------------------------------------------------------ specs

    def put_spec(self, service: str, container: str, spec: dict[str, Any], now: datetime) -> bool:
        """Record a tracked container's creation spec. Returns True when it changed."""
        blob = json.dumps(spec, sort_keys=True, default=str)
        with self._lock:
            rows = self._q("SELECT spec FROM specs WHERE node = ? AND service = ?", (self.node, service))
            if rows and rows[0]["spec"] == blob:
                return False
            self._w(
                "INSERT INTO specs (node, service, container, spec, seen_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(node, service) DO UPDATE SET container=excluded.container, spec=excluded.spec, "
                "seen_at=excluded.seen_at",
                (self.node, service, container, blob, rfc3339(now)),
            )
            return True

    def touch_spec(self, service: str, container: str, now: datetime) -> None:
        """Mark a service's recorded spec as seen ``now`` on ``container``: a new
        container (a recreate) was inspected and its spec is the one recorded, so the
        record stands for it too (``cli_status._must_inspect`` stops inspecting it).

        Raises:
            sqlite3.Error: the database failed.
        """
        with self._lock:
            self._w("UPDATE specs SET container = ?, seen_at = ? WHERE node = ? AND service = ?",
                    (container, rfc3339(now), self.node, service))

    def spec_times(self) -> dict[str, datetime]:
        """When each service's recorded spec last changed: ``{service: seen_at}`` (UTC)."""
        out = {}
        for r in self._q("SELECT service, seen_at FROM specs WHERE node = ?", (self.node,)):
            t = parse_time(r["seen_at"])
            if t is not None:
                out[r["service"]] = t
        return out

    def specs(self) -> dict[str, dict[str, Any]]:
        return {r["service"]: json.loads(r["spec"])
                for r in self._q("SELECT service, spec FROM specs WHERE node = ?", (self.node,))}

    # ------------------------------------------------------------------ open drifts

    def open_drifts(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Drifts detected and not yet resolved, by (subject, kind)."""
        out = {(r["subject"], r["kind"]): dict(r) for r in self._q("SELECT * FROM drifts WHERE node = ?", (self.node,))}
        for key, row in list(self._o_drifts.items()):
            if row is None:
                out.pop(key, None)
            else:
                out.setdefault(key, row)
        return out

    def open_drift(self, subject: str, kind: str, container: str | None, priority: str, reason: str, now: datetime) -> None:
        with self._lock:
            if self._w(
                "INSERT OR IGNORE INTO drifts (node, subject, kind, container, priority, reason, since) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (self.node, subject, kind, container, priority, reason, rfc3339(now)),
            ) is None:
                self._o_drifts[(subject, kind)] = {"subject": subject, "kind": kind, "container": container,
                                                   "priority": priority, "reason": reason, "since": rfc3339(now)}

    def resolve_drift(self, subject: str, kind: str) -> None:
        with self._lock:
            if self._w("DELETE FROM drifts WHERE node = ? AND subject = ? AND kind = ?",
                       (self.node, subject, kind)) is None:
                self._o_drifts[(subject, kind)] = None

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, key: str) -> str | None:
        if key in self._o_checkpoints:
            return self._o_checkpoints[key]
        rows = self._q("SELECT value FROM checkpoints WHERE node = ? AND key = ?", (self.node, key))
        return rows[0]["value"] if rows else None

    def set_checkpoint(self, key: str, value: str) -> None:
        """Record a checkpoint. While writes are held, only the latest value per
        key is kept (written out by :meth:`flush_held`), so a busy event stream
        cannot crowd other held writes out."""
        with self._lock:
            if self._held:
                self._o_checkpoints[key] = value
                return
            if self._w("INSERT INTO checkpoints (node, key, value) VALUES (?, ?, ?) "
                       "ON CONFLICT(node, key) DO UPDATE SET value=excluded.value", (self.node, key, value)) is None:
                self._o_checkpoints[key] = value

    def prune_events(self, older_than: datetime) -> int:
        """Delete SQLite events older than a time (events.jsonl is never touched)."""
        with self._lock:
            cur = self._db.execute("DELETE FROM events WHERE ts < ?", (rfc3339(older_than),))
            return cur.rowcount

