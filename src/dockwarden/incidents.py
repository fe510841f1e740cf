"""Incidents: one open problem per (node, incident key), never one per pass.

The incident key is ``(subject, kind)`` of the drift, except that disk pressure
is keyed on its filesystem (``host:disk:<mount point>``), so the host's disk
drift and the storage worker's report of the same full disk are one incident
(``reconcile/incident_rules.py``, ``incident_key``); the ``subject`` column holds
the key's subject.

Lifecycle ``open`` -> ``acknowledged`` -> ``resolved`` (runtime supervisor,
seed 001). A drift opens an incident when it persists: P0-P2 at once, P3 after
``[incidents] open_after_passes_p3`` consecutive full passes (default 2), P4
only when ``open_after_passes_p4`` is set. The incident resolves when its drift
is gone. Flap damping: a drift that comes back within ``flap_window_s`` of its
incident resolving reopens that incident quietly (``reopened``, no new message),
and a reopened incident resolves only after ``flap_window_s`` without its drift,
so a crash-looping service is one incident, not two messages per crash. An
incident open longer than ``unresolved_after_s`` (default 1 h) is itself the
``unresolved_incident`` drift. Open P0-P1 incidents are reminded every
``reminder_interval_s`` (default 4 h).

Escalation (issue 8): an incident's priority follows its drift. Worse than the
worst it was announced at (``peak_priority``): ``escalated``, a message like an
opening (a disk going from warn, P3, to critical, P1, is announced even if the
P3 opening was not sent anywhere); the acknowledgement, if any, is cleared and
reminders count from the escalation, at the new priority. Better: lowered
quietly (no message), so reminders follow the lower priority, while the peak is
kept, so a disk hovering around the critical level is announced once, not at
every crossing (back up to an announced level: raised quietly, and reminded at
the usual cadence). The rules and their order are in
``reconcile/incident_rules.py``; this module reads and records.

Kept in ``dockwarden.db`` (component ``incidents``, its own migrations).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import AbstractSet as Set, Any, Mapping, Sequence

from dockwarden.config import Policy
from dockwarden.db import FeatureDB
from dockwarden.model import Drift, DriftKind, Finding, parse_time, rfc3339
from dockwarden.reconcile.incident_rules import IncidentStep, plan_incidents

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
    3: (
        # Escalation: the worst priority announced for an incident (NULL: its priority).
        "ALTER TABLE incidents ADD COLUMN peak_priority TEXT",
        # Flap damping reads the incidents resolved within the window every pass.
        "CREATE INDEX incidents_recently_resolved ON incidents (node, resolved_at) WHERE state = 'resolved'",
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
    peak_priority: str | None = None  # the worst priority announced ("P0".."P4"); None: ``priority``

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "node": self.node, "subject": self.subject, "kind": self.kind,
            "priority": self.priority, "state": self.state, "container": self.container,
            "reason": self.reason, "opened_at": rfc3339(self.opened_at),
            "acknowledged_at": rfc3339(self.acknowledged_at), "resolved_at": rfc3339(self.resolved_at),
            "flaps": self.flaps, "peak_priority": self.peak_priority or self.priority, "details": self.details,
        }


@dataclass(frozen=True)
class Transition:
    """What happened to an incident in one update: ``opened``, ``reopened``
    (flapping: the drift came back soon after it resolved), ``escalated`` (its
    priority got worse than ever announced; ``previous_priority`` is the one it
    had, ``incident.priority`` the new one), ``reminder`` or ``resolved``.
    ``incident`` is the row after the change."""

    kind: str
    incident: Incident
    finding: Finding | None = None
    previous_priority: str | None = None


class IncidentError(ValueError):
    """An operator command names an unknown incident or one in the wrong state."""


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
            flaps=r["flaps"], last_seen_at=parse_time(r["last_seen_at"]), peak_priority=r["peak_priority"],
        )

    def active(self) -> dict[tuple[str, str], Incident]:
        """Open and acknowledged incidents of this node, by incident key (subject, kind), in id order."""
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
        """Open, escalate, remind and resolve, given one pass's findings.

        The decisions are :func:`~dockwarden.reconcile.incident_rules.plan_incidents`'s
        (pure); this method reads what they need and records them, in one write
        transaction.

        Args:
            findings: every finding of the pass (untracked containers' are ignored).
            now: the pass's time.
            policy: ``[incidents]`` thresholds.
            full_pass: True for a full observation (resync, ``once``); persistence
                streaks of P3/P4 drifts count only full passes, so a burst of
                event-driven passes does not open a P3 incident within a second.
            hold: incident keys (subject, kind) whose drift is gone but not yet
                settled (the service is back but its healthcheck has not passed
                yet): their incidents stay open. For service drifts the incident
                key is the drift's key.
        Returns:
            The transitions: opened and reopened first, then escalated, then
            reminders, then resolved. Quiet changes (a de-escalation, a raise back
            to a priority already announced) are recorded but return no transition.
        Raises:
            sqlite3.Error: the database failed (nothing of this pass is recorded).
        """
        out: list[Transition] = []
        with self._lock:
            active = self.active()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                streaks = {
                    (r["subject"], r["kind"]): r["passes"]
                    for r in self._db.execute("SELECT subject, kind, passes FROM drift_streaks WHERE node = ?",
                                              (self.node,))
                }
                recent = {
                    (r["subject"], r["kind"]): self._row(r)
                    for r in self._db.execute(
                        "SELECT * FROM incidents WHERE node = ? AND state = 'resolved' AND resolved_at >= ? "
                        "ORDER BY id",
                        (self.node, rfc3339(now - timedelta(seconds=policy.incidents.flap_window_s))))
                }  # the latest per key wins (id order)
                plan = plan_incidents(findings, active=active, streaks=streaks, recent=recent, now=now,
                                      policy=policy, full_pass=full_pass, hold=hold)
                self._record_streaks(streaks, plan.streaks, now)
                for inc_id in plan.seen:
                    self._db.execute("UPDATE incidents SET last_seen_at = ? WHERE id = ?", (rfc3339(now), inc_id))
                previous = {inc.id: inc.priority for inc in [*active.values(), *recent.values()]}
                for step in plan.steps:
                    t = self._record_step(step, now, previous)
                    if t is not None:
                        out.append(t)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return out

    def _record_streaks(self, before: dict[tuple[str, str], int], after: Mapping[tuple[str, str], int],
                        now: datetime) -> None:
        """Write the streaks that changed, insert new ones, delete the gone ones
        (inside :meth:`update`'s transaction)."""
        for key, passes in after.items():
            if key not in before:
                self._db.execute(
                    "INSERT INTO drift_streaks (node, subject, kind, passes, first_seen) VALUES (?, ?, ?, ?, ?)",
                    (self.node, key[0], key[1], passes, rfc3339(now)),
                )
            elif passes != before[key]:
                self._db.execute(
                    "UPDATE drift_streaks SET passes = ? WHERE node = ? AND subject = ? AND kind = ?",
                    (passes, self.node, key[0], key[1]),
                )
        for key in set(before) - set(after):
            self._db.execute("DELETE FROM drift_streaks WHERE node = ? AND subject = ? AND kind = ?",
                             (self.node, key[0], key[1]))

    def _fetch(self, incident_id: int) -> Incident:
        return self._row(self._db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone())

    def _record_step(self, step: IncidentStep, now: datetime, previous: dict[int, str]) -> Transition | None:
        """Record one step of the plan (inside :meth:`update`'s transaction).

        Args:
            step: the step.
            now: the pass's time.
            previous: priority per incident id before this pass's steps (updated
                here, so a reopen followed by an escalation reads the right one).
        Returns:
            The transition to report, or None for a quiet change.
        """
        f, ts = step.finding, rfc3339(now)
        if step.op == "open":
            assert f is not None and step.priority is not None
            d = f.drift
            cur = self._db.execute(
                "INSERT INTO incidents (node, subject, kind, priority, peak_priority, state, container, reason, "
                "details, opened_at, last_notified_at, last_seen_at) VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)",
                (self.node, step.key[0], step.key[1], str(step.priority), str(step.priority), d.container,
                 d.reason, json.dumps(d.details, default=str), ts, ts, ts),
            )
            return Transition("opened", self._fetch(cur.lastrowid or 0), f)
        assert step.incident_id is not None
        if step.op == "reopen":
            assert f is not None
            self._db.execute(
                "UPDATE incidents SET state = 'open', resolved_at = NULL, acknowledged_at = NULL, "
                "flaps = flaps + 1, last_seen_at = ?, reason = ? WHERE id = ?",
                (ts, f.drift.reason, step.incident_id),
            )
            return Transition("reopened", self._fetch(step.incident_id), f)
        if step.op in ("escalate", "deescalate"):
            assert f is not None and step.priority is not None
            d, p = f.drift, str(step.priority)
            was = previous.get(step.incident_id)
            self._db.execute(
                "UPDATE incidents SET priority = ?, container = ?, reason = ?, details = ? WHERE id = ?",
                (p, d.container, d.reason, json.dumps(d.details, default=str), step.incident_id),
            )
            previous[step.incident_id] = p
            if not step.announce:
                return None
            self._db.execute(
                "UPDATE incidents SET peak_priority = ?, last_notified_at = ?, state = 'open', "
                "acknowledged_at = NULL WHERE id = ?",
                (p, ts, step.incident_id),
            )
            return Transition("escalated", self._fetch(step.incident_id), f, previous_priority=was)
        if step.op == "remind":
            self._db.execute("UPDATE incidents SET last_notified_at = ? WHERE id = ?", (ts, step.incident_id))
            return Transition("reminder", self._fetch(step.incident_id), f)
        self._db.execute("UPDATE incidents SET state = 'resolved', resolved_at = ? WHERE id = ?",
                         (ts, step.incident_id))
        return Transition("resolved", self._fetch(step.incident_id))

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
