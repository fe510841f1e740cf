"""The append-only event log: ``<state-dir>/events.jsonl`` plus the SQLite
``events`` table, and an optional echo for people watching ``dockwarden run``.

A sink never fails a reconcile pass (style.md §9): write errors are logged and
counted in :attr:`EventLog.failures`, and the pass goes on.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Callable

from dockwarden.model import Event
from dockwarden.store import Store

log = logging.getLogger(__name__)

#: Most event lines held in memory while events.jsonl cannot be appended to.
BACKLOG_MAX_LINES = 20_000


class EventLog:
    """Append events to ``events.jsonl`` (one JSON object per line) and SQLite.

    Args:
        path: the JSONL file; created with its directory.
        store: the SQLite store (events table), or None for the file only.
        echo: called with each event after it is recorded (console output).
    """

    def __init__(self, path: str | Path, store: Store | None, echo: Callable[[Event], None] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.store = store
        self.echo = echo
        self.subscribers: list[Callable[[Event], None]] = []  # e.g. the notifier
        self.failures = 0
        self.dropped = 0  # held lines dropped because the backlog was full
        self._backlog: deque[str] = deque()
        self._lock = threading.Lock()

    def send(self, event: Event) -> bool:
        """Record one event. Returns False (and logs) when a write failed or was
        held: lines that cannot be appended (disk full) wait in a bounded
        in-memory backlog and are appended, in order, once writing works again."""
        ok = True
        line = json.dumps(event.to_dict(), default=str, separators=(",", ":")) + "\n"
        with self._lock:
            if self._backlog:
                self._flush_locked()
            if self._backlog:
                self._hold(line)
                ok = False
            else:
                try:
                    self._append_line(line)
                except OSError as e:
                    ok = False
                    self.failures += 1
                    log.error("events.jsonl: cannot append %s event: %s", event.type.value, e)
                    self._hold(line)
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

    def _append_line(self, line: str) -> None:
        """Append one whole line with O_APPEND (concurrent writers, the daemon
        and CLI commands, never interleave within a line). A short write (disk
        full) is cut back so no torn line is left, and raises OSError."""
        data = line.encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            before = os.fstat(fd).st_size
            n = os.write(fd, data)
            if n != len(data):
                os.ftruncate(fd, before)
                raise OSError(errno.ENOSPC, f"short write ({n} of {len(data)} bytes)")
        finally:
            os.close(fd)

    def _hold(self, line: str) -> None:
        if len(self._backlog) >= BACKLOG_MAX_LINES:
            self._backlog.popleft()
            self.dropped += 1
        self._backlog.append(line)

    def _flush_locked(self) -> bool:
        while self._backlog:
            try:
                self._append_line(self._backlog[0])
            except OSError:
                return False
            self._backlog.popleft()
        return True

    def flush(self) -> bool:
        """Append held lines (and let the store write its held rows). Returns
        True when nothing is held any more."""
        with self._lock:
            done = self._flush_locked()
        if self.store is not None:
            done = self.store.flush_held() and done
        return done

    @property
    def held(self) -> int:
        """Lines waiting in memory to be appended."""
        return len(self._backlog)


def read_jsonl(path: str | Path) -> list[dict]:
    """Read every event of an ``events.jsonl`` file (skipping a torn last line)."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    with p.open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s: skipping a line that is not JSON", p)
    return out
