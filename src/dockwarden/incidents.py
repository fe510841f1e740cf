"""Incidents: one open problem per (node, subject, drift kind), never one per pass.

Lifecycle ``open`` -> ``acknowledged`` -> ``resolved`` (runtime supervisor,
seed 001). Flap damping: a drift that comes back within ``flap_window_s`` of its
incident resolving reopens that incident quietly (``reopened``, no new message),
and a reopened incident resolves only after ``flap_window_s`` without its drift,
so a crash-looping service is one incident, not two messages per crash. A drift opens an incident when it persists: P0-P2 at once, P3 after
``[incidents] open_after_passes_p3`` consecutive full passes (default 2), P4
only when ``open_after_passes_p4`` is set. The incident resolves when its drift
is gone. An incident open longer than ``unresolved_after_s`` (default 1 h) is
itself the ``unresolved_incident`` drift. Open P0-P1 incidents are reminded
every ``reminder_interval_s`` (default 4 h).

Kept in ``dockwarden.db`` (component ``incidents``, its own migrations).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import AbstractSet as Set, Any, Sequence

from dockwarden.config import Policy
from dockwarden.model import Drift, DriftKind, Finding, Priority, parse_time, rfc3339
from dockwarden.db import FeatureDB

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE incidents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            node TEXT NOT NULL,
            subject TEXT NOT NULL,
            kind TEXT NOT NULL,
            priority TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('open','acknowledged','resolved')),
            container TEXT,
            reason TEXT NOT NULL DEFAULT '',
            details TEXT NOT NULL DEFAULT '{}',
            opened_at TEXT NOT NULL,
            acknowledged_at TEXT,
            resolved_at TEXT,
            last_notified_at TEXT
        )""",
        # At most one active (not resolved) incident per (node, subject, kind).
        "CREATE UNIQUE INDEX incidents_active ON incidents (node, subject, kind) WHERE state != 'resolved'",
        "CREATE INDEX incidents_state ON incidents (state, opened_at)",
        """CREATE TABLE drift_streaks (
            node TEXT NOT NULL,
            subject TEXT NOT NULL,
            kind TEXT NOT NULL,
            passes INTEGER NOT NULL,
            first_seen TEXT NOT NULL,
            PRIMARY KEY (node, subject, kind)
        )""",
    ),
    2: (
        # Flap damping: how often an incident reopened, and when its drift was last seen.
        "ALTER TABLE incidents ADD COLUMN flaps INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE incidents ADD COLUMN last_seen_at TEXT",
    ),
}


@dataclass(frozen=True)
class Incident:
    """One incident row."""

    id: int
    node: str
    subject: str
    kind: str
    priority: str
    state: str
    container: str | None
    reason: str
    opened_at: datetime
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    last_notified_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)
    flaps: int = 0
    last_seen_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "node": self.node, "subject": self.subject, "kind": self.kind,
            "priority": self.priority, "state": self.state, "container": self.container,
            "reason": self.reason, "opened_at": rfc3339(self.opened_at),
            "acknowledged_at": rfc3339(self.acknowledged_at), "resolved_at": rfc3339(self.resolved_at),
            "flaps": self.flaps, "details": self.details,
        }


@dataclass(frozen=True)
class Transition:
    """What happened to an incident in one update: ``opened``, ``reopened``
    (flapping: the drift came back soon after it resolved), ``resolved`` or ``reminder``."""

    kind: str
    incident: Incident
    finding: Finding | None = None


class IncidentError(ValueError):
    """An operator command names an unknown incident or one in the wrong state."""


def _priority_value(p: str) -> int:
    return int(p[1]) if len(p) == 2 and p[0] == "P" and p[1] in "01234" else 4


class IncidentBook(FeatureDB):
    """The incidents of one node in ``dockwarden.db`` (component ``incidents``).

    Args:
        db_path: the shared database file.
        node: this node's name (incidents are keyed by node).
    """

    COMPONENT = "incidents"
    MIGRATIONS = _MIGRATIONS

    def __init__(self, db_path: str | Path, node: str):
        super().__init__(db_path)
        self.node = node

    # ------------------------------------------------------------------ reading

    @staticmethod
    def _row(r: sqlite3.Row) -> Incident:
        return Incident(
            id=r["id"], node=r["node"], subject=r["subject"], kind=r["kind"], priority=r["priority"],
            state=r["state"], container=r["container"], reason=r["reason"],
            opened_at=parse_time(r["opened_at"]),  # type: ignore[arg-type]
            acknowledged_at=parse_time(r["acknowledged_at"]), resolved_at=parse_time(r["resolved_at"]),
            last_notified_at=parse_time(r["last_notified_at"]), details=json.loads(r["details"] or "{}"),
            flaps=r["flaps"], last_seen_at=parse_time(r["last_seen_at"]),
        )

    def active(self) -> dict[tuple[str, str], Incident]:
        """Open and acknowledged incidents of this node, by (subject, kind)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM incidents WHERE node = ? AND state != 'resolved' ORDER BY id", (self.node,)
            ).fetchall()
        return {(r["subject"], r["kind"]): self._row(r) for r in rows}

    def list(self, *, include_resolved: bool = False, limit: int = 200) -> list[Incident]:
        """Incidents, newest first; resolved ones only with ``include_resolved``."""
        sql = "SELECT * FROM incidents WHERE node = ? AND (? OR state != 'resolved') ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (self.node, int(include_resolved), int(limit))).fetchall()
        return [self._row(r) for r in rows]

    def get(self, incident_id: int) -> Incident | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return self._row(r) if r else None

    # ------------------------------------------------------------------ operator

    def ack(self, incident_id: int, now: datetime) -> Incident:
        """Acknowledge an open incident (stops reminders; it still resolves by itself).

        Raises:
            IncidentError: unknown id, or already acknowledged or resolved.
        """
        inc = self.get(incident_id)
        if inc is None:
            raise IncidentError(f"no incident with id {incident_id}")
        if inc.state != "open":
            raise IncidentError(f"incident {incident_id} is {inc.state}, not open")
        with self._lock:
            self._db.execute(
                "UPDATE incidents SET state = 'acknowledged', acknowledged_at = ? WHERE id = ? AND state = 'open'",
                (rfc3339(now), incident_id),
            )
        return self.get(incident_id)  # type: ignore[return-value]

    # ------------------------------------------------------------------ the pass

    def update(self, findings: Sequence[Finding], *, now: datetime, policy: Policy,
               full_pass: bool = True, hold: Set[tuple[str, str]] = frozenset()) -> list[Transition]:
        """Open, resolve and remind, given one pass's findings.

        Args:
            findings: every finding of the pass (untracked containers' are ignored).
            now: the pass's time.
            policy: ``[incidents]`` thresholds.
            full_pass: True for a full observation (resync, ``once``); persistence
                streaks of P3/P4 drifts count only full passes, so a burst of
                event-driven passes does not open a P3 incident within a second.
            hold: (subject, kind) keys whose drift is gone but not yet settled (the
                service is back but its healthcheck has not passed yet): their
                incidents stay open.
        Returns:
            The transitions, opened first, then reminders, then resolved.
        """
        cfg = policy.incidents
        current = {f.drift.key: f for f in findings if f.drift.tracked}
        opened: list[Transition] = []
        reminders: list[Transition] = []
        resolved: list[Transition] = []
        with self._lock:
            active = self.active()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                streaks = {
                    (r["subject"], r["kind"]): r["passes"]
                    for r in self._db.execute("SELECT subject, kind, passes FROM drift_streaks WHERE node = ?",
                                              (self.node,))
                }
                for key, f in current.items():
                    passes = streaks.get(key, 0) + (1 if full_pass or key not in streaks else 0)
                    if key not in streaks:
                        self._db.execute(
                            "INSERT INTO drift_streaks (node, subject, kind, passes, first_seen) VALUES (?, ?, ?, ?, ?)",
                            (self.node, key[0], key[1], passes, rfc3339(now)),
                        )
                    elif passes != streaks[key]:
                        self._db.execute(
                            "UPDATE drift_streaks SET passes = ? WHERE node = ? AND subject = ? AND kind = ?",
                            (passes, self.node, key[0], key[1]),
                        )
                    if key in active:
                        continue
                    needed = {Priority.P3: cfg.open_after_passes_p3, Priority.P4: cfg.open_after_passes_p4}.get(
                        f.priority, 1)
                    if needed == 0 or passes < needed:
                        continue
                    d = f.drift
                    recent = self._db.execute(
                        "SELECT id FROM incidents WHERE node = ? AND subject = ? AND kind = ? AND state = 'resolved' "
                        "AND resolved_at >= ? ORDER BY id DESC LIMIT 1",
                        (self.node, d.subject, d.kind.value,
                         rfc3339(now - timedelta(seconds=cfg.flap_window_s))),
                    ).fetchone()
                    if recent is not None:  # flapping: the same incident again, quietly
                        self._db.execute(
                            "UPDATE incidents SET state = 'open', resolved_at = NULL, acknowledged_at = NULL, "
                            "flaps = flaps + 1, last_seen_at = ?, reason = ? WHERE id = ?",
                            (rfc3339(now), d.reason, recent["id"]),
                        )
                        opened.append(Transition("reopened", self._row(self._db.execute(
                            "SELECT * FROM incidents WHERE id = ?", (recent["id"],)).fetchone()), f))
                        continue
                    cur = self._db.execute(
                        "INSERT INTO incidents (node, subject, kind, priority, state, container, reason, details, "
                        "opened_at, last_notified_at, last_seen_at) VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)",
                        (self.node, d.subject, d.kind.value, str(f.priority), d.container, d.reason,
                         json.dumps(d.details, default=str), rfc3339(now), rfc3339(now), rfc3339(now)),
                    )
                    opened.append(Transition("opened", self._row(self._db.execute(
                        "SELECT * FROM incidents WHERE id = ?", (cur.lastrowid,)).fetchone()), f))
                for key in set(streaks) - set(current):
                    self._db.execute("DELETE FROM drift_streaks WHERE node = ? AND subject = ? AND kind = ?",
                                     (self.node, key[0], key[1]))
                for key, inc in active.items():
                    if key in hold:
                        continue
                    if key in current:
                        self._db.execute("UPDATE incidents SET last_seen_at = ? WHERE id = ?", (rfc3339(now), inc.id))
                        if (inc.state == "open" and _priority_value(inc.priority) <= 1
                                and inc.last_notified_at is not None
                                and now - inc.last_notified_at >= timedelta(seconds=cfg.reminder_interval_s)):
                            self._db.execute("UPDATE incidents SET last_notified_at = ? WHERE id = ?",
                                             (rfc3339(now), inc.id))
                            reminders.append(Transition("reminder", inc, current[key]))
                        continue
                    if (inc.flaps > 0 and inc.last_seen_at is not None
                            and now - inc.last_seen_at < timedelta(seconds=cfg.flap_window_s)):
                        continue  # a flapping incident resolves only after a quiet window
                    self._db.execute(
                        "UPDATE incidents SET state = 'resolved', resolved_at = ? WHERE id = ?", (rfc3339(now), inc.id)
                    )
                    resolved.append(Transition("resolved", self._row(self._db.execute(
                        "SELECT * FROM incidents WHERE id = ?", (inc.id,)).fetchone())))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return opened + reminders + resolved

    def unresolved_drifts(self, *, now: datetime, policy: Policy) -> list[Drift]:
        """``unresolved_incident`` drifts for incidents open longer than the policy allows
        (not for ``unresolved_incident`` incidents themselves)."""
        out = []
        limit = timedelta(seconds=policy.incidents.unresolved_after_s)
        for (subject, kind), inc in sorted(self.active().items()):
            if kind == DriftKind.UNRESOLVED_INCIDENT.value or now - inc.opened_at < limit:
                continue
            age = (now - inc.opened_at).total_seconds()
            out.append(Drift(
                kind=DriftKind.UNRESOLVED_INCIDENT, subject=subject, container=inc.container,
                reason=f"{subject}: incident #{inc.id} ({kind}, {inc.priority}) unresolved for {age / 60:.0f} min",
                details={"incident_id": inc.id, "incident_kind": kind, "priority": inc.priority,
                         "opened_at": rfc3339(inc.opened_at), "age_s": round(age)},
            ))
        return out
