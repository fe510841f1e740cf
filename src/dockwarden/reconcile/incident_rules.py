"""Incident rules: which incident changes one pass's findings call for.

Pure: no I/O, no clock (``now`` is a parameter). :class:`~dockwarden.incidents.IncidentBook`
reads the active incidents, the persistence streaks and the incidents resolved within
the flap window from SQLite, asks :func:`plan_incidents` what to do, and records the
steps it returns (the split style.md asks for: deciding here, recording there).

Identity (issue 8). An incident is one open problem per :func:`incident_key`,
``(subject, kind)``: the drift's own key, except for disk pressure, which is keyed
on the filesystem, ``("host:disk:<mount point>", "resource_pressure")``. So the
host's ``host:disk:<path>`` drift (``reconcile/drift.py``) and the storage worker's
``host:storage:<root dir>`` drift (``storage/monitor.py``), which supersedes it above
the critical level (``merge_disk_drifts``), are one incident: when the storage
worker starts reporting a disk the host reported, the incident stays open (and
escalates if the priority rose). For a disk on its own mount point, or for ``/``,
the key is the host drift's own subject, so incidents opened before this rule keep
their identity. Several findings with one key in one pass count as one: the worst
priority wins (ties: the first in the order given).

Rules, in the order of the code:

1. Streaks: a key's streak counts the consecutive passes its drift was present;
   event-driven passes (``full_pass`` False) do not add to it except on the first
   sighting; a key whose drift is gone loses its streak.
2. A key without an active incident opens one when its streak reaches the
   priority's threshold: P0-P2 at once, P3 after ``open_after_passes_p3``, P4
   only when ``open_after_passes_p4`` is set (0: never). If an incident of that
   key resolved within ``flap_window_s``, it is reopened instead (quietly), and
   then judged like an active one against the new priority (rule 3), so a
   problem that comes back worse than it was is still announced.
3. An active incident whose drift is present:

   * worse priority than the incident's: the incident escalates. It is
     *announced* (step ``escalate`` with ``announce`` True: the pipeline records
     ``incident_escalated``, notified like an opening) when the new priority is
     worse than the worst it was ever announced at (``peak_priority``, its
     opening priority at first). An announced escalation clears an
     acknowledgement (the operator acknowledged a lesser problem) and restarts
     the reminder clock. Back up to a level already announced, it is raised
     quietly, and a reminder follows at the usual cadence if one is due.
   * better priority: de-escalation, always quiet: the incident's priority
     follows its drift, so reminders follow the lower priority (a disk back at
     "warn" after a prune is not reminded at the P1 cadence), while its peak
     stays, so a disk hovering around the critical level sends one escalation,
     not one per crossing. An operator reading ``dockwarden incidents`` sees how
     bad the problem is now; the messages already told how bad it got.
   * reminder: when ``open`` (not acknowledged), at P0-P1 (after any change
     above), and last notified at least ``reminder_interval_s`` ago.

4. An active incident whose drift is gone resolves, unless its key is held (the
   service is up but not yet healthy), or it flapped and its drift was seen less
   than ``flap_window_s`` ago (it resolves after a quiet window).

Steps come out opened/reopened first, then priority changes, then reminders, then
resolved; within each group in findings order (opens) or in the order of
``active`` (the rest: the book gives them by incident id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import AbstractSet as Set, Literal, Protocol

from dockwarden.config import Policy
from dockwarden.model import Drift, Finding, Priority
from dockwarden.reconcile.drift import HOST, disk_filesystem

#: ``(subject, kind)`` of an incident; see :func:`incident_key`.
IncidentKey = tuple[str, str]

StepOp = Literal["open", "reopen", "escalate", "deescalate", "remind", "resolve"]


class IncidentView(Protocol):
    """What the rules read of an incident (``dockwarden.incidents.Incident`` has it)."""

    @property
    def id(self) -> int: ...
    @property
    def priority(self) -> str: ...  # "P0".."P4"
    @property
    def peak_priority(self) -> str | None: ...  # worst announced; None: the priority
    @property
    def state(self) -> str: ...  # "open", "acknowledged" or "resolved"
    @property
    def last_notified_at(self) -> datetime | None: ...
    @property
    def flaps(self) -> int: ...
    @property
    def last_seen_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class IncidentStep:
    """One change to make to the incidents table.

    ``op``:

    * ``open``: a new incident for ``key`` at ``priority`` (``finding`` says what).
    * ``reopen``: incident ``incident_id`` (resolved within the flap window) is open again.
    * ``escalate``: raise incident ``incident_id`` to ``priority``; ``announce``
      True when it is worse than anything announced for it (a message, a new peak,
      acknowledgement cleared, reminder clock restarted), False for a quiet raise.
    * ``deescalate``: lower incident ``incident_id`` to ``priority``, quietly.
    * ``remind``: incident ``incident_id`` is due a reminder.
    * ``resolve``: incident ``incident_id``'s drift is gone.
    """

    op: StepOp
    key: IncidentKey
    finding: Finding | None = None
    incident_id: int | None = None
    priority: Priority | None = None
    announce: bool = False


@dataclass(frozen=True)
class IncidentPlan:
    """What one pass changes.

    Attributes:
        streaks: persistence streak (full passes) per key present this pass; keys
            not in it are gone and lose their streak.
        seen: ids of active (or reopened) incidents whose drift is present this pass.
        steps: the changes, in the order of the module docstring.
    """

    streaks: Mapping[IncidentKey, int]
    seen: tuple[int, ...]
    steps: tuple[IncidentStep, ...]


def incident_key(drift: Drift) -> IncidentKey:
    """The incident a drift belongs to: ``(subject, kind)``.

    Disk pressure (``details["resource"]`` "disk", ``level`` "warn" or "critical")
    is keyed on its filesystem (:func:`~dockwarden.reconcile.drift.disk_filesystem`,
    the mount point): ``("host:disk:/", "resource_pressure")`` for both
    ``host:disk:/`` and ``host:storage:/var/lib/docker`` when ``/var/lib/docker``
    is on ``/``. Every other drift keeps :attr:`Drift.key`.
    """
    fs = disk_filesystem(drift)
    if fs is None:
        return drift.key
    return (f"{HOST}:disk:{fs}", drift.kind.value)


def parse_priority(p: str | None, default: Priority = Priority.P4) -> Priority:
    """``"P1"`` -> ``Priority.P1``; anything else -> ``default``."""
    if p and len(p) == 2 and p[0] == "P" and p[1] in "01234":
        return Priority(int(p[1]))
    return default


def current_findings(findings: Iterable[Finding]) -> dict[IncidentKey, Finding]:
    """Tracked findings by incident key, the worst one per key (ties: the first)."""
    out: dict[IncidentKey, Finding] = {}
    for f in findings:
        if not f.drift.tracked:
            continue  # untracked containers: dockwarden only recommends
        k = incident_key(f.drift)
        if k not in out or f.priority < out[k].priority:
            out[k] = f
    return out


def _open_threshold(priority: Priority, policy: Policy) -> int:
    """Full passes a drift must persist before it opens an incident (0: never)."""
    cfg = policy.incidents
    return {Priority.P3: cfg.open_after_passes_p3, Priority.P4: cfg.open_after_passes_p4}.get(priority, 1)


def _judge_present(key: IncidentKey, inc: IncidentView, f: Finding, *, state: str, now: datetime,
                   policy: Policy, may_remind: bool) -> tuple[list[IncidentStep], list[IncidentStep]]:
    """Rule 3 for one incident whose drift is present: (priority changes, reminders)."""
    changes: list[IncidentStep] = []
    was = parse_priority(inc.priority)
    peak = min(was, parse_priority(inc.peak_priority, was))
    notified_at = inc.last_notified_at
    if f.priority < was:
        announce = f.priority < peak
        changes.append(IncidentStep("escalate", key, f, inc.id, f.priority, announce=announce))
        if announce:
            return changes, []  # the escalation is this pass's message; reminders count from it
    elif f.priority > was:
        changes.append(IncidentStep("deescalate", key, f, inc.id, f.priority))
    if (may_remind and state == "open" and f.priority <= Priority.P1 and notified_at is not None
            and now - notified_at >= timedelta(seconds=policy.incidents.reminder_interval_s)):
        return changes, [IncidentStep("remind", key, f, inc.id)]
    return changes, []


def plan_incidents(findings: Iterable[Finding], *, active: Mapping[IncidentKey, IncidentView],
                   streaks: Mapping[IncidentKey, int], recent: Mapping[IncidentKey, IncidentView],
                   now: datetime, policy: Policy, full_pass: bool = True,
                   hold: Set[IncidentKey] = frozenset()) -> IncidentPlan:
    """Decide one pass's incident changes (rules in the module docstring).

    Args:
        findings: every finding of the pass (untracked containers' are ignored).
        active: open and acknowledged incidents by key, in id order.
        streaks: recorded persistence streaks (full passes) by key.
        recent: per key, the latest incident resolved at or after
            ``now - flap_window_s`` (only keys with one; may hold more than needed).
        now: the pass's time (aware UTC).
        policy: ``[incidents]`` thresholds.
        full_pass: True for a full observation (resync, ``once``).
        hold: keys whose drift is gone but not yet settled: their incidents stay open.
            For service drifts the incident key is the drift key.
    Returns:
        IncidentPlan: new streaks, incidents seen, and the steps.
    """
    cfg = policy.incidents
    current = current_findings(findings)
    new_streaks = {k: streaks.get(k, 0) + (1 if full_pass or k not in streaks else 0) for k in current}
    opened: list[IncidentStep] = []
    changes: list[IncidentStep] = []
    reminders: list[IncidentStep] = []
    resolved: list[IncidentStep] = []
    seen: list[int] = []
    for k, f in current.items():
        if k in active:
            continue
        needed = _open_threshold(f.priority, policy)
        if needed == 0 or new_streaks[k] < needed:
            continue
        inc = recent.get(k)
        if inc is None:
            opened.append(IncidentStep("open", k, f, priority=f.priority))
            continue
        opened.append(IncidentStep("reopen", k, f, inc.id))  # flapping: the same incident again, quietly
        seen.append(inc.id)
        more, _ = _judge_present(k, inc, f, state="open", now=now, policy=policy, may_remind=False)
        changes.extend(more)
    for k, inc in active.items():
        f = current.get(k)
        if f is None:
            if k in hold:
                continue
            if (inc.flaps > 0 and inc.last_seen_at is not None
                    and now - inc.last_seen_at < timedelta(seconds=cfg.flap_window_s)):
                continue  # a flapping incident resolves only after a quiet window
            resolved.append(IncidentStep("resolve", k, None, inc.id))
            continue
        seen.append(inc.id)
        more, due = _judge_present(k, inc, f, state=inc.state, now=now, policy=policy, may_remind=True)
        changes.extend(more)
        reminders.extend(due)
    return IncidentPlan(streaks=new_streaks, seen=tuple(seen), steps=tuple(opened + changes + reminders + resolved))
