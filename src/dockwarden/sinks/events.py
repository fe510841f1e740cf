"""The append-only event log: ``<state-dir>/events.jsonl`` plus the SQLite
``events`` table, and an optional echo for people watching ``dockwarden run``.

A sink never fails a reconcile pass (style.md §9): write errors are logged and
counted in :attr:`EventLog.failures`, and the pass goes on.

``events.jsonl`` is bounded by rotation by size, like logrotate or Python's
``RotatingFileHandler``: before an append would make it larger than
``max_bytes`` it is renamed to ``events.jsonl.1`` (``.1`` to ``.2``, ...), and
only ``rotated_files`` rotated files are kept. Two processes append to the same
file (the daemon and CLI commands, with ``O_APPEND``), so the rotation runs under
an exclusive ``flock`` on ``events.jsonl.lock`` and re-checks the size once it
holds the lock: one rotation per overflow, whoever gets there first. A line
written through a descriptor opened just before a rename lands in the renamed
file: it is never lost. :func:`read_events` reads the current and rotated files
in order. Files are created 0600 (the state dir is private, design.md).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
from collections import deque
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from dockwarden.config_retention import EVENTS_JSONL_MAX_BYTES, EVENTS_JSONL_ROTATED_FILES
from dockwarden.model import Event, parse_time
from dockwarden.store import Store

log = logging.getLogger(__name__)

#: The events file's name in the state dir.
EVENTS_FILE = "events.jsonl"
#: Mode of every file this module creates (the state dir is private).
FILE_MODE = 0o600
#: Most event lines held in memory while events.jsonl cannot be appended to
#: (disk full); beyond that the oldest are dropped and counted.
BACKLOG_MAX_LINES = 20_000


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def rotated_path(path: Path, n: int) -> Path:
    """``events.jsonl`` -> ``events.jsonl.<n>`` (n >= 1; larger is older)."""
    return path.with_name(f"{path.name}.{n}")


def rotated_numbers(path: Path) -> list[int]:
    """Numbers of the rotated files of ``path`` that exist, ascending (newest first)."""
    prefix = path.name + "."
    out = []
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    for name in names:
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            out.append(int(name[len(prefix):]))
    return sorted(out)


def rotate_if_over(path: str | Path, *, max_bytes: int, rotated_files: int, incoming_bytes: int = 0) -> bool:
    """Rotate ``path`` when appending ``incoming_bytes`` would make it larger than
    ``max_bytes``; also delete rotated files numbered above ``rotated_files``.

    Runs under an exclusive ``flock`` on ``<path>.lock`` (created 0600) and checks
    the size again once it holds the lock, so writers in several processes rotate
    once per overflow. An empty file is never rotated (a single line larger than
    ``max_bytes`` is written whole, alone in its file).

    Args:
        path: the events file.
        max_bytes: the largest size a file may reach, bytes.
        rotated_files: rotated files to keep (0: the full file is deleted).
        incoming_bytes: the size of the line about to be appended, bytes.
    Returns:
        True when the file was rotated.
    Raises:
        OSError: the lock file cannot be opened or a rename/unlink failed.
    """
    p = Path(path)
    fd = os.open(_lock_path(p), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        kept = []
        for n in rotated_numbers(p):
            if n > rotated_files:  # e.g. the policy now keeps fewer files
                rotated_path(p, n).unlink(missing_ok=True)
            else:
                kept.append(n)
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            return False
        if size == 0 or size + incoming_bytes <= max_bytes:
            return False  # another writer rotated it while we waited for the lock
        if rotated_files == 0:
            p.unlink()
            return True
        # Newest last: .N-1 replaces .N (the oldest goes), ..., .1 becomes .2.
        for n in reversed(kept):
            if n < rotated_files:
                os.replace(rotated_path(p, n), rotated_path(p, n + 1))
        os.replace(p, rotated_path(p, 1))
        return True
    finally:
        os.close(fd)  # closing releases the flock


class EventLog:
    """Append events to ``events.jsonl`` (one JSON object per line) and SQLite.

    Args:
        path: the JSONL file; created (0600) with its directory.
        store: the SQLite store (events table), or None for the file only.
        echo: called with each event after it is recorded (console output).
        max_bytes: rotate before an append would make the file larger than this,
            bytes (default ``[retention] events_jsonl_max_bytes``'s default, 10 MiB).
        rotated_files: rotated files to keep (default 5).
    """

    def __init__(self, path: str | Path, store: Store | None, echo: Callable[[Event], None] | None = None, *,
                 max_bytes: int = EVENTS_JSONL_MAX_BYTES, rotated_files: int = EVENTS_JSONL_ROTATED_FILES):
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.store = store
        self.echo = echo
        self.subscribers: list[Callable[[Event], None]] = []  # e.g. the notifier
        self.failures = 0
        self.rotation_failures = 0
        self.max_bytes = max_bytes
        self.rotated_files = rotated_files
        self.dropped = 0  # held lines dropped because the backlog was full
        self._backlog: deque[bytes] = deque()
        self._lock = threading.Lock()

    def set_rotation(self, *, max_bytes: int, rotated_files: int) -> None:
        """Change the rotation limits (e.g. from ``[retention]`` after a policy reload)."""
        with self._lock:
            self.max_bytes, self.rotated_files = max_bytes, rotated_files

    def send(self, event: Event) -> bool:
        """Record one event. Returns False (and logs) when a write failed or was
        held: lines that cannot be appended (disk full) wait in a bounded
        in-memory backlog and are appended, in order, once writing works again
        (:meth:`flush`); the store holds its rows the same way."""
        ok = True
        data = (json.dumps(event.to_dict(), default=str, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self._backlog:
                self._flush_locked()
            if self._backlog:
                self._hold(data)
                ok = False
            else:
                try:
                    self._append_line(data)
                except OSError as e:
                    ok = False
                    self.failures += 1
                    log.error("events.jsonl: cannot append %s event (held in memory): %s", event.type.value, e)
                    self._hold(data)
            if self.store is not None:
                try:
                    if self.store.insert_event(event) is None:
                        ok = False  # held in memory by the store (disk full)
                except Exception as e:  # sqlite3.Error, or a closed store at shutdown
                    ok = False
                    self.failures += 1
                    log.error("events table: cannot insert %s event: %s", event.type.value, e)
        if self.echo is not None:
            try:
                self.echo(event)
            except Exception as e:  # a broken terminal must not stop supervision
                log.debug("event echo failed: %s", e)
        for sub in self.subscribers:
            try:
                sub(event)
            except Exception as e:  # a failing subscriber must not fail the pass
                self.failures += 1
                log.error("event subscriber %s failed on %s: %s", getattr(sub, "__qualname__", sub),
                          event.type.value, e)
        return ok

    def _hold(self, data: bytes) -> None:
        if len(self._backlog) >= BACKLOG_MAX_LINES:
            self._backlog.popleft()
            self.dropped += 1
        self._backlog.append(data)

    def _flush_locked(self) -> bool:
        while self._backlog:
            try:
                self._append_line(self._backlog[0])
            except OSError:
                return False
            self._backlog.popleft()
        return True

    def flush(self) -> bool:
        """Append held lines, and let the store write its held rows. Returns True
        when nothing is held any more."""
        with self._lock:
            done = self._flush_locked()
        if self.store is not None:
            done = self.store.flush_held() and done
        return done

    @property
    def held(self) -> int:
        """Lines waiting in memory to be appended."""
        return len(self._backlog)

    def _append_line(self, data: bytes) -> None:
        """Append one whole line to the file, rotating it first when it would grow
        past ``max_bytes``. Call with ``self._lock`` held.

        Raises:
            OSError: the file cannot be opened or written, or only part of the
                line fitted (cut back: no torn line is left); a failed rotation is
                logged and counted in ``rotation_failures`` and the line is still written.
        """
        # O_APPEND: concurrent writers (daemon and CLI) never interleave within a line.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        try:
            size = os.fstat(fd).st_size
            if size > 0 and size + len(data) > self.max_bytes:
                os.close(fd)
                fd = -1
                try:
                    rotate_if_over(self.path, max_bytes=self.max_bytes, rotated_files=self.rotated_files,
                                   incoming_bytes=len(data))
                except OSError as e:  # a full file beats a lost event
                    self.rotation_failures += 1
                    log.error("events.jsonl: rotation failed, appending anyway: %s", e)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
                size = os.fstat(fd).st_size
            n = os.write(fd, data)
            if n != len(data):  # a short write (disk full): cut it back, never leave a torn line
                os.ftruncate(fd, size)
                raise OSError(errno.ENOSPC, f"short write ({n} of {len(data)} bytes)")
        finally:
            if fd >= 0:
                os.close(fd)


def _lines(f: BinaryIO, name: str | Path) -> Iterator[dict]:
    """The JSON objects of one open file, in file order; torn or foreign lines are skipped."""
    skipped = 0
    for raw in f:
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            skipped += 1
            continue
        if isinstance(obj, dict):
            yield obj
        else:
            skipped += 1
    if skipped:
        log.warning("%s: skipped %d line(s) that are not whole JSON objects", name, skipped)


def read_jsonl(path: str | Path) -> list[dict]:
    """Read every event of one ``events.jsonl`` file (skipping torn lines); [] when missing."""
    try:
        with open(path, "rb") as f:
            return list(_lines(f, path))
    except FileNotFoundError:
        return []


def _events_path(source: str | Path) -> Path:
    p = Path(source)
    return p / EVENTS_FILE if p.is_dir() else p


def event_files(source: str | Path) -> list[Path]:
    """The events file and its rotated files that exist, oldest first.

    Args:
        source: the state dir, or the events file itself.
    Returns:
        ``[events.jsonl.N, ..., events.jsonl.1, events.jsonl]`` (those that exist).
    """
    p = _events_path(source)
    files = [rotated_path(p, n) for n in reversed(rotated_numbers(p))]
    if p.exists():
        files.append(p)
    return files


@contextmanager
def _opened_event_files(source: str | Path) -> Iterator[list[tuple[Path, BinaryIO]]]:
    """The event files, oldest first, opened under a shared ``flock`` of the rotation
    lock (when it can be taken): a rotation cannot rename them between listing and
    opening, and once open they read whole whatever is renamed or deleted later."""
    p = _events_path(source)
    opened: list[tuple[Path, BinaryIO]] = []
    lock_fd = -1
    try:
        try:
            lock_fd = os.open(_lock_path(p), os.O_RDONLY)
            fcntl.flock(lock_fd, fcntl.LOCK_SH)
        except OSError as e:  # no lock file yet (nothing rotated), or not ours to lock: read as is
            log.debug("events: reading %s without its rotation lock: %s", p, e)
        for f in event_files(p):
            try:
                opened.append((f, open(f, "rb")))
            except FileNotFoundError:  # rotated away (only possible without the lock)
                continue
        if lock_fd >= 0:
            os.close(lock_fd)
            lock_fd = -1
        yield opened
    finally:
        if lock_fd >= 0:
            os.close(lock_fd)
        for _, fh in opened:
            fh.close()


def read_events(source: str | Path, since: datetime | None = None, *, service: str | None = None,
                limit: int | None = None) -> list[dict]:
    """Events from ``events.jsonl`` and its rotated files, oldest file first, each
    file in append order (the order events were recorded, give or take a line
    written by another process during a rotation). Torn lines (a crash mid-write)
    and lines that are not JSON objects are skipped. The files are opened together
    under a shared lock, so a rotation meanwhile neither repeats nor skips a file.

    Args:
        source: the state dir, or the events file itself.
        since: only events whose ``ts`` is at or after this aware time (events
            without a readable ``ts`` are then skipped).
        service: only this service's events.
        limit: at most this many, the newest when more match (None: all).
    Returns:
        list[dict]: events in the ``events.jsonl`` shape (``ts``, ``type``, ``node``,
        ``service``, ``container``, ``drift``, ``priority``, ``action``, ``reason``,
        ``details``); [] when there is no file.
    Raises:
        OSError: a file exists but cannot be read (e.g. permissions).
    """
    out: deque[dict] | list[dict] = deque(maxlen=limit) if limit is not None else []
    with _opened_event_files(source) as files:
        for name, fh in files:
            for ev in _lines(fh, name):
                if service is not None and ev.get("service") != service:
                    continue
                if since is not None:
                    ts = parse_time(ev.get("ts")) if isinstance(ev.get("ts"), str) else None
                    if ts is None or ts < since:
                        continue
                out.append(ev)
    return list(out)


def oldest_event_time(source: str | Path) -> datetime | None:
    """The ``ts`` of the first readable event of the oldest events file (None: no
    file, or no event), i.e. how far back the files reach."""
    with _opened_event_files(source) as files:
        for name, fh in files:
            for ev in _lines(fh, name):
                ts = ev.get("ts")
                if isinstance(ts, str) and (t := parse_time(ts)) is not None:
                    return t
    return None


def oldest_stored_event(store: Store) -> datetime | None:
    """The ``ts`` of the oldest event in the SQLite ``events`` table (None: empty),
    i.e. how far back the table reaches after retention.

    Raises:
        sqlite3.Error: the database cannot be read.
    """
    with store.tx() as conn:
        row = conn.execute("SELECT MIN(ts) FROM events").fetchone()
    return parse_time(row[0]) if row and row[0] else None
