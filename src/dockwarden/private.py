"""Private state: the state dir is 0700 and everything in it 0600/0700.

The state dir holds the database (with each tracked container's creation spec,
environment included), the event log, ``world.json``, the journal, locks and
the pool's secret files (design.md, promise 3: "the state dir is private").
Two things keep it so:

- :func:`private_umask` (``umask 077``), set once at process start by the CLI
  for every command and the daemon, so files created later come out 0600
  and directories 0700 whatever opened them (sqlite's ``-wal``/``-shm`` take
  the database file's mode);
- :func:`secure_state_dir`, called where the state dir is opened (the SQLite
  plumbing in :mod:`dockwarden.db`), which mends a dir made by an older
  dockwarden or by hand.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077


def private_umask() -> int:
    """Set the process umask to 077 (files 0600, dirs 0700 by default).

    Returns:
        int: the previous umask.
    Side effects: ``os.umask`` for the whole process (threads included).
    """
    return os.umask(UMASK)


def private_opener(path: str | os.PathLike, flags: int) -> int:
    """An ``opener`` for :func:`open` that creates missing files 0600 whatever the
    umask: ``open(path, "a+", opener=private_opener)``.

    Returns:
        int: the file descriptor (``os.open(path, flags, 0o600)``).
    Raises:
        OSError: as ``os.open``.
    """
    return os.open(path, flags, FILE_MODE)


def _fix(path: Path, st: os.stat_result, want: int) -> bool:
    """chmod ``path`` to ``want`` when its permission bits differ; True when changed."""
    if stat.S_IMODE(st.st_mode) == want:
        return False
    try:
        os.chmod(path, want)
    except OSError as e:  # not ours (another user's dir): say so, never fail the command
        log.warning("%s: cannot make it private (mode %o): %s", path, stat.S_IMODE(st.st_mode), e.strerror or e)
        return False
    return True


def secure_state_dir(path: str | Path) -> int:
    """Make the state dir private: create it 0700 (parents too, under umask 077),
    then chmod it and every dir below it to 0700 and every file to 0600.

    Covers ``dockwarden.db`` and its ``-wal``/``-shm``, ``events.jsonl*``,
    ``world.json``, ``journal/``, lock files, ``pool-secrets/`` and anything
    else in it. Symbolic links are left alone (never followed, never chmodded),
    and so are sockets and FIFOs.

    Args:
        path: the state dir, e.g. ``/var/lib/dockwarden``.
    Returns:
        int: how many files and dirs had their mode changed (0 when all was private).
    Raises:
        OSError: the dir cannot be created. A chmod that fails (a path owned by
            another user) is logged as a warning and skipped.
    """
    root = Path(path)
    old = os.umask(UMASK)
    try:
        root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    finally:
        os.umask(old)
    changed = 0
    st = os.stat(root)
    changed += _fix(root, st, DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue  # removed while we walked (a rotated log, a sqlite -shm)
            if stat.S_ISDIR(st.st_mode):
                changed += _fix(p, st, DIR_MODE)
            elif stat.S_ISREG(st.st_mode):
                changed += _fix(p, st, FILE_MODE)
    if changed:
        log.info("%s: made %d file(s)/dir(s) private (0600/0700)", root, changed)
    return changed
