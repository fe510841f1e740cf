"""The immutable snapshot each reconcile pass swaps in, and the status document.

The daemon builds one :class:`Snapshot` after each pass (O(services), on the
loop's thread) and publishes it to a :class:`SnapshotHolder`; the API's handlers
read only the snapshot they get (a reference read: never a lock the loop
holds) or the store through their own connection. A snapshot is never changed
after it is built; its JSON is serialised once, on first use.

:func:`status_document` (``dockwarden.report``) is the document ``dockwarden
status --json`` prints, the daemon's ``status.json`` and ``GET /api/v1/status``:
one builder for all three.

:class:`SampleRing` keeps the last hour of per-service CPU and memory samples
(from full observations, at most one per ``min_interval_s``) for the dashboard's
sparklines; bounded by the tracked services and the window.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


#: Summary states a snapshot can carry ("unknown": the engine did not answer).
SUMMARY_STATES = ("nominal", "degraded", "reconciling", "unstable", "unknown")


# One builder of the status document for the CLI, the daemon's status.json and the API.
from dockwarden.report import status_document  # noqa: E402,F401


def storage_document(report: Any, trend: Any, top_n: int = 5) -> dict[str, Any] | None:
    """The storage breakdown (``dockwarden storage --json``'s shape) with the
    disk trend (``trend``: rates, ``eta_p1_s``/``eta_full_s`` in seconds and a
    ``line`` for people), or None before the storage worker's first sample."""
    if report is None:
        return None
    doc = report.to_json(top_n)
    doc["trend"] = None if trend is None else {**trend.to_json(), "line": trend.line()}
    return doc


@dataclass(frozen=True)
class Snapshot:
    """What one pass saw, for the API. Immutable once built.

    Attributes:
        status: :func:`status_document` of the pass (plus ``pass``, ``ready``).
        storage: :func:`storage_document` of the storage worker's last report, or None.
        published_at: wall clock when published (``time.time()``, seconds).
        published_mono: ``time.monotonic()`` when published (for /healthz).
        pass_duration_s: how long the pass took, seconds.
        passes: passes made by this daemon so far.
    """

    status: dict[str, Any]
    storage: dict[str, Any] | None = None
    published_at: float = 0.0
    published_mono: float = 0.0
    pass_duration_s: float = 0.0
    passes: int = 0

    @cached_property
    def status_json(self) -> bytes:
        """The status document as JSON bytes, serialised once."""
        return json.dumps(self.status, default=str, separators=(",", ":")).encode()

    @cached_property
    def services_by_name(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.status["services"]}

    def drift(self) -> dict[str, Any]:
        """``GET /api/v1/drift``: the ``drift --json`` keys of the status document."""
        return {k: self.status[k] for k in ("node", "summary", "observed_at", "findings", "recommendations")}


class SnapshotHolder:
    """Holds the latest snapshot: :meth:`publish` swaps a reference, :meth:`get`
    reads it (both atomic; no lock the loop could wait on)."""

    def __init__(self) -> None:
        self._current: Snapshot | None = None

    def publish(self, snap: Snapshot) -> None:
        self._current = snap

    def get(self) -> Snapshot | None:
        return self._current


@dataclass
class SampleRing:
    """Per-service CPU/memory samples of the last ``window_s`` seconds.

    Args:
        window_s: how far back samples are kept, seconds (3600: one hour).
        min_interval_s: at most one sample per service this often, seconds.
    """

    window_s: float = 3600.0
    min_interval_s: float = 10.0
    _data: dict[str, deque] = field(default_factory=dict)
    _last: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: dict[str, Any], now: float | None = None) -> bool:
        """Record one sample per service from a status document (services with
        no CPU figure, i.e. event-driven passes without stats, are skipped).
        Returns True when a sample was taken. Services no longer tracked are dropped."""
        now = time.time() if now is None else now
        if now - self._last < self.min_interval_s:
            return False
        rows = [(s["name"], s.get("cpu_percent"), s.get("memory_bytes")) for s in status["services"]]
        if not any(cpu is not None for _, cpu, _ in rows):
            return False
        self._last = now
        cutoff = now - self.window_s
        with self._lock:
            names = {n for n, _, _ in rows}
            for gone in [n for n in self._data if n not in names]:
                del self._data[gone]
            for name, cpu, mem in rows:
                q = self._data.setdefault(name, deque())
                q.append((round(now, 1), None if cpu is None else round(cpu, 2), mem))
                while q and q[0][0] < cutoff:
                    q.popleft()
        return True

    def get(self, window_s: float | None = None, now: float | None = None) -> dict[str, list[list[Any]]]:
        """``{service: [[unix_ts, cpu_percent, memory_bytes], ...]}``, oldest first."""
        now = time.time() if now is None else now
        cutoff = now - (self.window_s if window_s is None else min(window_s, self.window_s))
        with self._lock:
            return {n: [list(x) for x in q if x[0] >= cutoff] for n, q in self._data.items()}
