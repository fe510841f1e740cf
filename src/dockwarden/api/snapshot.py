"""The immutable snapshot each reconcile pass swaps in, and the status document.

The daemon builds one :class:`Snapshot` after each pass (O(services), on the
loop's thread) and publishes it to a :class:`SnapshotHolder`; the API's handlers
read only the snapshot they get (a reference read: never a lock the loop
holds) or the store through their own connection. A snapshot is never changed
after it is built; its JSON is serialised once, on first use.

:func:`status_document` is the document ``dockwarden status --json`` prints and
``GET /api/v1/status`` serves: one builder for both (issue 9 reads the daemon's
snapshot instead of observing).

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

from dockwarden.model import CircuitState, Mode, to_jsonable
from dockwarden.reconcile.drift import effective_intent
from dockwarden.reconcile.policy import service_mode
from dockwarden.reconcile.resolve import find_container

#: Summary states a snapshot can carry ("unknown": the engine did not answer).
SUMMARY_STATES = ("nominal", "degraded", "reconciling", "unstable", "unknown")


def _guard_json(guard: Any) -> dict[str, Any] | None:
    return to_jsonable(guard) if guard is not None else None


def status_document(ev: Any, *, mode: Mode, policy: Any, daemon_running: bool) -> dict[str, Any]:
    """The status document of one evaluation (``status --json``, ``GET /api/v1/status``).

    Args:
        ev: a :class:`dockwarden.pipeline.Evaluation`.
        mode: the global mode in force (``--mode`` or the policy's).
        policy: the policy in force (a service's mode narrows the global one).
        daemon_running: whether a daemon holds the state dir.
    Returns:
        dict: ``node``, ``observed_at`` (RFC 3339), ``summary``, ``exit_code``,
        ``engine_ok``, ``engine_error``, ``daemon_running``, ``mode``, ``host``,
        ``services`` (each: ``service`` and ``name``, ``node``, ``container``,
        ``source``, ``state``, ``health``, ``exit_code``, ``restart_count``,
        ``cpu_percent`` (% of one core), ``memory_bytes``, ``intent``,
        ``intent_source``, ``remediation``, ``mode``, ``depends_on``, ``guard``,
        ``circuit_open``, ``up``), ``untracked``, ``findings``,
        ``recommendations``, ``label_problems``. Sizes in bytes.
    """
    services = []
    opening = {d.recommendation.subject for d in ev.decisions if d.open_circuit}
    node = ev.desired.node
    for name, spec in sorted(ev.desired.services.items()):
        c = find_container(spec, ev.world)
        h = ev.histories.get(name)
        rec_i = ev.intents.get(name)
        guard = h.guard if h else None
        state = c.state if c else "missing"
        services.append({
            "service": name, "name": name, "node": node, "container": c.name if c else spec.container_name,
            "source": spec.source.value, "state": state, "health": c.health if c else None,
            "exit_code": c.exit_code if c else None, "restart_count": c.restart_count if c else None,
            "cpu_percent": c.cpu_percent if c else None, "memory_bytes": c.memory_bytes if c else None,
            "intent": effective_intent(spec, rec_i).value,
            "intent_source": rec_i.source.value if rec_i else spec.source.value,
            "remediation": spec.remediation.value, "mode": service_mode(mode, spec, policy).value,
            "depends_on": list(spec.depends_on), "guard": _guard_json(guard),
            "circuit_open": bool(guard is not None and guard.circuit == CircuitState.OPEN) or name in opening,
            "up": state == "running" and (c is not None and c.health != "unhealthy"),
        })
    tracked = {s_["container"] for s_ in services}
    untracked = [{"container": c.name, "state": c.state, "health": c.health, "exit_code": c.exit_code}
                 for c in ev.world.containers
                 if c.name not in tracked and c.labels.get("dockwarden.managed", "").lower() != "true"]
    return {
        "node": node,
        "observed_at": to_jsonable(ev.world.observed_at),
        "summary": ev.summary.value if ev.world.engine_ok else "unknown",
        "exit_code": ev.exit_code,
        "engine_ok": ev.world.engine_ok,
        "engine_error": ev.world.engine_error,
        "daemon_running": daemon_running,
        "mode": mode.value,
        "host": to_jsonable(ev.world.host),
        "services": services,
        "untracked": untracked,
        "findings": [
            {"priority": str(f.priority), "subject": f.subject, "drift": f.drift.kind.value,
             "container": f.drift.container, "tracked": f.drift.tracked, "reason": f.drift.reason,
             "details": to_jsonable(f.drift.details)}
            for f in ev.findings
        ],
        "recommendations": [
            {"subject": d.recommendation.subject, "type": d.event_type.value, "action": d.recommendation.action.value,
             "reason": d.recommendation.reason, "advice": list(d.recommendation.advice), "execute": d.execute,
             "decision": d.reason}
            for d in ev.decisions
        ],
        "label_problems": ev.label_problems,
    }


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
