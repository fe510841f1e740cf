"""One daemon per state dir: an exclusive ``flock`` on ``<state-dir>/daemon.lock``
holding the daemon's PID. The kernel drops the lock when the process dies, so a
crash never leaves a stale lock behind."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dockwarden.private import DIR_MODE, private_opener


class AlreadyRunning(RuntimeError):
    """Another daemon holds the state dir's lock."""


def acquire_lock(state_dir: Path):
    """Take the single-instance lock of a state dir.

    Returns:
        The open lock file (keep it open for the daemon's lifetime).
    Raises:
        AlreadyRunning: another process holds it; the message names its PID.
    """
    state_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path = state_dir / "daemon.lock"
    fh = open(path, "a+", opener=private_opener)
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        pid = fh.read().strip() or "?"
        fh.close()
        raise AlreadyRunning(f"another dockwarden daemon (pid {pid}) is running on {state_dir}")
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def lock_held(state_dir: Path) -> bool:
    """True when a daemon currently holds the state dir's lock."""
    path = state_dir / "daemon.lock"
    if not path.exists():
        return False
    with open(path, "a+", opener=private_opener) as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False
