"""The daily journal: ``<state-dir>/journal/YYYY-MM-DD.md``, one file per UTC day.

Shape from the disinto supervisor's journal (seed 000), kept short so trends
show across runs::

    ## Run — 14:05 UTC
    Health: RAM 3.1 GiB available of 7.8 GiB, swap 0 B used, disk / 86%, load 0.41, containers 5/8 running — unstable
    - [P1] disk / 86.0% full (> 80%, critical) — recommended prune
    - [P2] web: container web exited with code 1 — start (done)
    Actions:
    - start web: started
    - tier 1 (dangling images and build cache): removed 3, freed 1.2 GiB, 86.0% -> 79.1%
    Escalations:
    - [P2] db: circuit open — `dockwarden resume db` to retry
    Trends:
    - disk /var/lib/docker 86.0 %: +1.2 GiB/h (6 h), +0.8 GiB/h (24 h); above P1 (80 %)

A section is written for a pass that found something new (its findings differ
from the last section's), acted, or carries actions of a worker; otherwise at
most one quiet section per ``journal.quiet_interval_s`` (an hour), so standing
findings still show up hourly ("disk > 75 % for 3 runs"). A section has at most
``journal.max_lines`` lines (25), heading included: the longest groups are cut
first and end with "- … and N more".

A sink never fails a pass (style.md §9): write errors are logged and counted.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dockwarden.config_storage import JournalPolicy
from dockwarden.reconcile.usage import human_bytes

log = logging.getLogger(__name__)

_HEADING = re.compile(r"^## Run — (\d\d):(\d\d) UTC", re.M)
_MAX_TEXT = 200


def _cut(text: str, n: int = _MAX_TEXT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def health_line(world: Any, summary: str | None = None) -> str:
    """``Health: RAM 3.1 GiB available of 7.8 GiB, swap 0 B used, disk / 22%, load 0.41, containers 5/8 running — nominal``.

    Args:
        world: a WorldState (``host`` may be None; ``engine_ok`` False is said).
        summary: the pass's summary state, appended when given.
    """
    parts = []
    h = getattr(world, "host", None)
    if h is not None:
        parts.append(f"RAM {human_bytes(h.mem_available_bytes)} available of {human_bytes(h.mem_total_bytes)}")
        parts.append(f"swap {human_bytes(h.swap_used_bytes)} used")
        if h.disks:
            parts.append("disk " + ", ".join(f"{d.path} {d.percent:.0f}%" for d in h.disks))
        parts.append(f"load {h.load1:.2f}")
    if getattr(world, "engine_ok", True):
        cs = getattr(world, "containers", ())
        parts.append(f"containers {sum(1 for c in cs if c.running)}/{len(cs)} running")
    else:
        parts.append(f"engine unreachable ({_cut(getattr(world, 'engine_error', '') or '?', 80)})")
    return "Health: " + ", ".join(parts) + (f" — {summary}" if summary else "")


def _decision_text(d: Any) -> str:
    rec = d.recommendation
    if d.execute:
        return f"{rec.action.value} (done)"
    if d.blocked:
        return f"blocked: {_cut(d.reason, 100)}"
    kind = d.event_type.value.replace("reconcile_", "")
    return f"{kind} {rec.action.value}"


def finding_lines(evaluation: Any) -> list[str]:
    """``- [P1] reason — action`` per finding, worst first (the evaluation's order)."""
    by_subject = {d.recommendation.subject: d for d in getattr(evaluation, "decisions", ())}
    out = []
    for f in evaluation.findings:
        d = by_subject.get(f.subject)
        action = _decision_text(d) if d is not None else "no action"
        out.append(f"- [{f.priority}] {_cut(f.drift.reason or f.subject)} — {action}")
    return out


def action_lines(result: Any) -> list[str]:
    """``- restart web: restarted`` per executed action of a pass result."""
    out = []
    for d, outcome in getattr(result, "executed", ()) or ():
        rec = d.recommendation
        if outcome is None:
            out.append(f"- {rec.action.value} {rec.subject}: not run")
        elif outcome.ok:
            out.append(f"- {rec.action.value} {rec.subject}: {outcome.result}")
        else:
            out.append(f"- {rec.action.value} {rec.subject}: failed ({_cut(outcome.error or '?', 100)})")
    return out


def escalation_lines(evaluation: Any) -> list[str]:
    """``- [P2] subject: reason`` for every blocked recommendation (a person must look)."""
    return [f"- [{d.recommendation.finding.priority}] {d.recommendation.subject}: {_cut(d.reason, 160)}"
            for d in getattr(evaluation, "decisions", ()) if d.blocked]


def render_section(now: datetime, *, health: str, findings: Sequence[str], actions: Sequence[str] = (),
                   escalations: Sequence[str] = (), trends: Sequence[str] = (), quiet_since: datetime | None = None,
                   max_lines: int = 25) -> list[str]:
    """The lines of one section, at most ``max_lines`` (heading included).

    PURE. Groups in order: findings (no label; ``Findings: none`` when empty),
    ``Actions:``, ``Escalations:``, ``Trends:``. When too long, the group with the
    most lines loses one at a time (its label goes with its last line) and ends
    with ``- … and N more``. A quiet section says ``Quiet: nothing new since HH:MM``.

    Args:
        now: aware UTC time of the pass (the heading's HH:MM).
        health: the health line.
        findings, actions, escalations, trends: lines (``- ...``).
        quiet_since: when set, the section is a quiet one.
        max_lines: the cap (>= 3).
    Returns:
        list[str]: lines without newlines.
    """
    head = [f"## Run — {now.astimezone(timezone.utc):%H:%M} UTC", _cut(health, 300)]
    if quiet_since is not None:
        head.append(f"Quiet: nothing new since {quiet_since.astimezone(timezone.utc):%H:%M} UTC")
    groups: list[tuple[str | None, list[str]]] = [
        (None, list(findings) or ["Findings: none"]), ("Actions:", list(actions)),
        ("Escalations:", list(escalations)), ("Trends:", list(trends)),
    ]
    alloc = [len(lines) for _, lines in groups]

    def total() -> int:
        return len(head) + sum(a + (1 if label and a else 0) for (label, _), a in zip(groups, alloc))

    while total() > max_lines and any(alloc):
        i = max(range(len(alloc)), key=lambda k: (alloc[k], -k))
        alloc[i] -= 1
    out = list(head)
    for (label, lines), a in zip(groups, alloc):
        if a == 0:
            continue
        if label:
            out.append(label)
        if a < len(lines):
            out.extend(lines[: a - 1])
            out.append(f"- … and {len(lines) - a + 1} more")
        else:
            out.extend(lines)
    return out[:max_lines]


def signature(evaluation: Any) -> frozenset[tuple[str, str, str, bool]]:
    """What makes a pass "new": the set of (priority, subject, drift kind, blocked)."""
    blocked = {d.recommendation.subject for d in getattr(evaluation, "decisions", ()) if d.blocked}
    return frozenset((str(f.priority), f.subject, f.drift.kind.value, f.subject in blocked)
                     for f in evaluation.findings)


class Journal:
    """Writes the daily markdown journal.

    Args:
        directory: ``<state-dir>/journal`` (created on first write).
        node: named in each file's title.
    """

    def __init__(self, directory: str | Path, node: str = ""):
        self.directory = Path(directory)
        self.node = node
        self.failures = 0
        self._lock = threading.Lock()
        self._last_signature: frozenset | None = None
        self._last_section_at: datetime | None = None
        self._last_quiet_at: datetime | None = None
        self._loaded_day: date | None = None

    def path_for(self, day: date) -> Path:
        return self.directory / f"{day:%Y-%m-%d}.md"

    def read(self, day: date) -> str | None:
        """The journal of one UTC day, or None when there is none."""
        p = self.path_for(day)
        try:
            return p.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def _last_heading(self, day: date) -> datetime | None:
        text = self.read(day) or ""
        times = _HEADING.findall(text)
        if not times:
            return None
        hh, mm = times[-1]
        return datetime(day.year, day.month, day.day, int(hh), int(mm), tzinfo=timezone.utc)

    def record_pass(self, evaluation: Any, result: Any, trends: Sequence[str], now: datetime, *,
                    actions: Sequence[str] = (), escalations: Sequence[str] = (),
                    policy: JournalPolicy | None = None) -> bool:
        """Write a section for this pass when it found or did something, or a quiet
        one when the last quiet section is older than ``quiet_interval_s``.

        Args:
            evaluation: the pass's ``pipeline.Evaluation`` (world, findings, decisions, summary).
            result: the pass's ``pipeline.PassResult`` (executed actions), or None.
            trends: trend lines (``- ...`` added when missing), e.g. from the storage worker.
            now: aware UTC time of the pass.
            actions: lines for actions taken outside the pipeline (prune tiers,
                housekeeping); any makes the pass eventful.
            escalations: extra escalation lines (e.g. the recipe could not get below P1).
            policy: ``[journal]`` (None: defaults).
        Returns:
            bool: True when a section was written.
        Raises:
            Nothing: write errors are logged and counted in ``failures``.
        """
        pol = policy or JournalPolicy()
        if not pol.enabled:
            return False
        now = now.astimezone(timezone.utc)
        with self._lock:
            if self._loaded_day != now.date():
                self._loaded_day = now.date()
                last = self._last_heading(now.date())
                if last is not None and self._last_quiet_at is None:
                    self._last_quiet_at = last  # after a restart: no second section in the same hour
            sig = signature(evaluation)
            acted = bool(getattr(result, "executed", None)) or bool(actions)
            eventful = acted or sig != self._last_signature
            quiet_due = self._last_quiet_at is None or (now - self._last_quiet_at) >= timedelta(
                seconds=pol.quiet_interval_s)
            if not eventful and not quiet_due:
                return False
            summary = getattr(getattr(evaluation, "summary", None), "value", None)
            world = evaluation.world
            if summary and not getattr(world, "engine_ok", True):
                summary = "unknown"
            bullet = [t if t.startswith("- ") else f"- {t}" for t in trends]
            lines = render_section(
                now, health=health_line(world, summary), findings=finding_lines(evaluation),
                actions=action_lines(result) + [a if a.startswith("- ") else f"- {a}" for a in actions],
                escalations=escalation_lines(evaluation) + [e if e.startswith("- ") else f"- {e}" for e in escalations],
                trends=bullet, quiet_since=None if eventful else self._last_section_at, max_lines=pol.max_lines)
            if not self._append(now, lines):
                return False
            self._last_signature = sig
            self._last_section_at = now
            self._last_quiet_at = now  # any section is the hour's sign of life
            return True

    def _append(self, now: datetime, lines: list[str]) -> bool:
        path = self.path_for(now.date())
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            text = "\n".join(lines) + "\n\n"
            if not path.exists():
                node = f", node {self.node}" if self.node else ""
                text = f"# dockwarden journal — {now:%Y-%m-%d} (UTC){node}\n\n" + text
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, text.encode("utf-8"))
            finally:
                os.close(fd)
            return True
        except OSError as e:
            self.failures += 1
            log.error("journal %s: cannot append: %s", path, e)
            return False
