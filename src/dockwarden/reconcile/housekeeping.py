"""Housekeeping (P4): which lock files and worktrees are stale.

Pure: the storage worker probes the filesystem and the process table
(``storage/housekeeping.py``) and hands the facts here. Rules from the disinto
supervisor (seed 000): "lock files of dead processes" and "worktrees > 2 h with
no process", with the TTLs of ``[housekeeping]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dockwarden.model import Drift, DriftKind
from dockwarden.reconcile.usage import human_duration

#: Subject prefix of housekeeping drifts: ``host:housekeeping:locks`` / ``:worktrees``.
SUBJECT = "host:housekeeping:"
#: Paths listed in a drift's details at most.
MAX_LISTED = 20


@dataclass(frozen=True)
class LockProbe:
    """A lock file: its age (now - mtime, seconds) and the PID written in it
    (None when it holds no number); ``pid_alive`` None when there is no PID."""

    path: str
    age_s: float
    pid: int | None = None
    pid_alive: bool | None = None


@dataclass(frozen=True)
class WorktreeProbe:
    """A worktree directory: seconds since anything directly in it changed, and
    the PIDs whose cwd or open files are inside it."""

    path: str
    age_s: float
    users: tuple[int, ...] = ()


@dataclass(frozen=True)
class Stale:
    """A stale lock (``kind`` "lock") or worktree ("worktree"), with why."""

    kind: str
    path: str
    age_s: float
    why: str


def stale_locks(probes: Sequence[LockProbe], ttl_s: float) -> list[Stale]:
    """Lock files whose PID is dead, or that are older than ``ttl_s`` seconds.

    Returns:
        list[Stale]: sorted by path.
    """
    out = []
    for p in sorted(probes, key=lambda p: p.path):
        if p.pid is not None and p.pid_alive is False:
            out.append(Stale("lock", p.path, p.age_s, f"PID {p.pid} is dead"))
        elif p.age_s > ttl_s:
            out.append(Stale("lock", p.path, p.age_s, f"older than {human_duration(ttl_s)} "
                                                       f"({human_duration(p.age_s)})"))
    return out


def stale_worktrees(probes: Sequence[WorktreeProbe], ttl_s: float) -> list[Stale]:
    """Worktrees unchanged for more than ``ttl_s`` seconds that no process uses.

    Returns:
        list[Stale]: sorted by path.
    """
    return [Stale("worktree", p.path, p.age_s, f"unchanged for {human_duration(p.age_s)}, no process uses it")
            for p in sorted(probes, key=lambda p: p.path) if p.age_s > ttl_s and not p.users]


def housekeeping_drifts(stale: Sequence[Stale]) -> list[Drift]:
    """One ``housekeeping`` drift (P4) per kind with stale items.

    Subjects ``host:housekeeping:locks`` and ``host:housekeeping:worktrees``;
    details ``resource`` (locks|worktrees), ``count`` and ``items`` (at most
    :data:`MAX_LISTED` of {path, age_s, why}).
    """
    out = []
    for kind, resource, noun in (("lock", "locks", "lock file"), ("worktree", "worktrees", "worktree")):
        items = [s for s in stale if s.kind == kind]
        if not items:
            continue
        first = ", ".join(f"{s.path} ({s.why})" for s in items[:3])
        more = f" and {len(items) - 3} more" if len(items) > 3 else ""
        plural = "s" if len(items) != 1 else ""
        out.append(Drift(
            DriftKind.HOUSEKEEPING, f"{SUBJECT}{resource}",
            reason=f"{len(items)} stale {noun}{plural}: {first}{more}",
            details={"resource": resource, "count": len(items),
                     "items": [{"path": s.path, "age_s": round(s.age_s, 1), "why": s.why}
                               for s in items[:MAX_LISTED]]},
        ))
    return out
