"""The append-only event log: ``<state-dir>/events.jsonl`` plus the SQLite
``events`` table, and an optional echo for people watching ``dockwarden run``.

A sink never fails a reconcile pass (style.md §9): write errors are logged and
counted in :attr:`EventLog.failures`, and the pass goes on.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Callable

from dockwarden.model import Event
from dockwarden.store import Store

log = logging.getLogger(__name__)


class EventLog:
    """Append events to ``events.jsonl`` (one JSON object per line) and SQLite.

    Args:
        path: the JSONL file; created with its directory.
        store: the SQLite store (events table), or None for the file only.
        echo: called with each event after it is recorded (console output).
    """

    def __init__(self, path: str | Path, store: Store | None, echo: Callable[[Event], None] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.store = store
        self.echo = echo
        self.subscribers: list[Callable[[Event], None]] = []  # e.g. the notifier
        self.failures = 0
        self._lock = threading.Lock()

    def send(self, event: Event) -> bool:
        """Record one event. Returns False (and logs) when a write failed."""
        ok = True
        line = json.dumps(event.to_dict(), default=str, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                # O_APPEND: concurrent writers (daemon and CLI) never interleave within a line.
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, line.encode("utf-8"))
                finally:
                    os.close(fd)
            except OSError as e:
                ok = False
                self.failures += 1
                log.error("events.jsonl: cannot append %s event: %s", event.type.value, e)
            if self.store is not None:
                try:
                    self.store.insert_event(event)
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
