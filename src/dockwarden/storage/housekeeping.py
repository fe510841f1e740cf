"""Housekeeping probes and removals: stale lock files and worktrees (P4).

The facts (ages, PIDs, which processes use a directory) are gathered here with
``glob``, ``os.stat`` and psutil; :mod:`dockwarden.reconcile.housekeeping`
decides what is stale. Removal happens only when ``[housekeeping]`` enables it
(``remove_locks`` / ``remove_worktrees``) and the worker is in ``auto`` mode;
each item is checked again right before it goes, and mount points, symlinks,
shallow paths and protected directories (state dir, Docker root dir) are never
removed.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from dockwarden.reconcile.housekeeping import LockProbe, Stale, WorktreeProbe

log = logging.getLogger(__name__)

_PID = re.compile(rb"(\d{1,10})")


def _expand(globs: Iterable[str]) -> list[str]:
    out: set[str] = set()
    for g in globs:
        out.update(glob.glob(g))
    return sorted(out)


def read_pid(path: str) -> int | None:
    """The first number in the first 64 bytes of a lock file (``1234``, ``pid=1234``), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    m = _PID.search(head)
    return int(m.group(1)) if m else None


def probe_locks(globs: Sequence[str], now_ts: float) -> list[LockProbe]:
    """Every regular file matching ``globs``: age from mtime, PID and whether it lives.

    Args:
        globs: absolute shell globs (``[housekeeping] lock_globs``).
        now_ts: the current time, seconds since the epoch.
    """
    out = []
    for p in _expand(globs):
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if not os.path.isfile(p) or os.path.islink(p):
            continue
        pid = read_pid(p)
        out.append(LockProbe(p, max(0.0, now_ts - st.st_mtime), pid,
                             None if pid is None else psutil.pid_exists(pid)))
    return out


def _newest_mtime(path: str) -> float:
    newest = os.lstat(path).st_mtime
    try:
        with os.scandir(path) as it:
            for e in it:
                try:
                    newest = max(newest, e.stat(follow_symlinks=False).st_mtime)
                except OSError:
                    continue
    except OSError as e:  # the directory went away or is unreadable: judge by what was seen
        log.debug("housekeeping: cannot scan %s: %s", path, e)
    return newest


def users_of(path: str) -> tuple[int, ...]:
    """PIDs whose cwd, or one of whose open files, is inside ``path`` (psutil;
    processes we may not inspect are skipped)."""
    root = os.path.realpath(path).rstrip("/") + "/"
    pids = []
    for proc in psutil.process_iter(["pid", "cwd"]):
        try:
            cwd = proc.info.get("cwd") or ""
            if (cwd.rstrip("/") + "/").startswith(root):
                pids.append(proc.pid)
                continue
            if any((f.path or "").startswith(root) for f in proc.open_files()):
                pids.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return tuple(sorted(pids))


def probe_worktrees(globs: Sequence[str], now_ts: float, ttl_s: float) -> list[WorktreeProbe]:
    """Every directory matching ``globs`` with its age (newest mtime of it and its
    direct entries); the processes using it are looked up only for directories
    older than ``ttl_s`` (the process scan is the expensive part)."""
    out = []
    for p in _expand(globs):
        if not os.path.isdir(p) or os.path.islink(p):
            continue
        try:
            age = max(0.0, now_ts - _newest_mtime(p))
        except OSError:
            continue
        out.append(WorktreeProbe(p, age, users_of(p) if age > ttl_s else ()))
    return out


@dataclass(frozen=True)
class Removed:
    """The result of removing one stale item."""

    item: Stale
    ok: bool
    error: str | None = None


def _refuse(path: str, protected: Sequence[str]) -> str | None:
    p = Path(path)
    real = os.path.realpath(path)
    if len(p.parts) < 3 or real in ("/", str(Path.home())):
        return "too shallow a path"
    if os.path.islink(path):
        return "a symlink"
    if os.path.ismount(path):
        return "a mount point"
    for q in protected:
        qr = os.path.realpath(q)
        if real == qr or qr.startswith(real.rstrip("/") + "/") or real.startswith(qr.rstrip("/") + "/"):
            return f"protected ({q})"
    return None


def remove_stale(stale: Sequence[Stale], *, locks: bool, worktrees: bool, now_ts: float, lock_ttl_s: float,
                 worktree_ttl_s: float, protected: Sequence[str] = ()) -> list[Removed]:
    """Remove the stale items whose kind is enabled, each checked again first.

    A lock goes when its PID is still dead (or it is still older than the TTL);
    a worktree when it is still unchanged for the TTL and still unused.

    Returns:
        list[Removed]: one per item attempted (disabled kinds are not attempted).
    Raises:
        Nothing: OS errors become ``ok=False``.
    """
    done = []
    for s in stale:
        if (s.kind == "lock" and not locks) or (s.kind == "worktree" and not worktrees):
            continue
        why = _refuse(s.path, protected)
        if why:
            done.append(Removed(s, False, f"not removed: {why}"))
            continue
        try:
            if s.kind == "lock":
                pid = read_pid(s.path)
                age = now_ts - os.lstat(s.path).st_mtime
                if not ((pid is not None and not psutil.pid_exists(pid)) or age > lock_ttl_s):
                    done.append(Removed(s, False, "no longer stale"))
                    continue
                os.unlink(s.path)
            else:
                if now_ts - _newest_mtime(s.path) <= worktree_ttl_s or users_of(s.path):
                    done.append(Removed(s, False, "no longer stale"))
                    continue
                shutil.rmtree(s.path)
            log.info("housekeeping: removed stale %s %s (%s)", s.kind, s.path, s.why)
            done.append(Removed(s, True))
        except OSError as e:
            done.append(Removed(s, False, f"{type(e).__name__}: {e}"))
    return done
