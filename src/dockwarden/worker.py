"""Background workers: periodic jobs that run beside the reconcile loop.

Some work must not block the event-driven loop (``docker system df`` can take
seconds on a big host; pool health probes; notification delivery). Each such
job is a :class:`Worker`: the daemon starts it with a :class:`WorkerContext`,
asks it for its standing drifts on every pass (they are assessed and
recommended on with the rest), and stops it at shutdown.

:class:`PeriodicWorker` is the usual base: a thread that calls :meth:`tick`
every ``interval_s`` seconds and never dies of an exception in a tick (it is
logged and counted, style.md §9).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from dockwarden.config import Policy, Settings
from dockwarden.model import Drift, Event, Mode, WorldState, utcnow

log = logging.getLogger(__name__)

#: The longest a worker's tick waits for a recovery to end, seconds (an engine that
#: never answers, a recovery that never ends: the worker then runs and reports).
RECOVERY_DEFER_MAX_S = 60.0
#: How often a waiting worker asks whether the recovery is over, seconds.
RECOVERY_POLL_S = 0.25


@dataclass
class WorkerContext:
    """What a worker may use. Getters, because the daemon reloads the policy
    and reconnects to the engine while workers run.

    Attributes:
        settings: state dir, inventory, policy path, node, DOCKER_HOST.
        node: the node name.
        policy: returns the policy in force (the last good one).
        mode: returns the global mode in force.
        world: returns the last observed world state (or None before the first pass).
        emit: records an event (events.jsonl + SQLite); thread-safe.
        wake: asks the daemon for a reconcile pass soon (e.g. new drifts).
        recovering: True before the daemon's first pass and while it brings services
            back after an engine restart or a reboot (workers that load the engine
            wait: :attr:`PeriodicWorker.defer_while_recovering`).
    """

    settings: Settings
    node: str
    policy: Callable[[], Policy]
    mode: Callable[[], Mode]
    world: Callable[[], WorldState | None]
    emit: Callable[[Event], bool]
    wake: Callable[[], None]
    recovering: Callable[[], bool] = lambda: False

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir


class Worker(Protocol):
    """A background job of the daemon."""

    name: str

    def start(self, ctx: WorkerContext) -> None: ...

    def stop(self) -> None: ...

    def drifts(self) -> Sequence[Drift]:
        """The worker's standing drifts (e.g. disk pressure with its breakdown), read each pass."""
        ...


class PeriodicWorker:
    """A thread calling :meth:`tick` every ``interval_s`` seconds (first tick at once).

    Subclasses set ``name`` and implement :meth:`tick`; :meth:`interval_s` may
    read the policy so a reload changes the cadence.
    """

    name = "worker"
    #: Hold each tick while ``ctx.recovering()`` (at most :data:`RECOVERY_DEFER_MAX_S`):
    #: for workers whose tick loads the engine (``docker system df``, an inspect per
    #: exited container), which would slow the starts a recovery is waiting for.
    defer_while_recovering = False

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ctx: WorkerContext | None = None
        self.failures = 0
        self.ticks = 0
        self._drifts: list[Drift] = []
        self._lock = threading.Lock()

    def interval_s(self) -> float:
        return 60.0

    def tick(self) -> None:  # pragma: no cover - subclasses implement
        raise NotImplementedError

    def set_drifts(self, drifts: Sequence[Drift]) -> None:
        with self._lock:
            self._drifts = list(drifts)

    def drifts(self) -> Sequence[Drift]:
        with self._lock:
            return list(self._drifts)

    def start(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self._thread = threading.Thread(target=self._loop, name=f"dockwarden-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _wait_out_recovery(self) -> None:
        """Wait while the daemon recovers (:attr:`defer_while_recovering`), polling every
        :data:`RECOVERY_POLL_S`, for at most :data:`RECOVERY_DEFER_MAX_S`."""
        if not self.defer_while_recovering or self.ctx is None:
            return
        deadline = time.monotonic() + RECOVERY_DEFER_MAX_S
        while self.ctx.recovering() and time.monotonic() < deadline:
            if self._stop.wait(RECOVERY_POLL_S):
                return

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wait_out_recovery()
            if self._stop.is_set():
                return
            t0 = time.monotonic()
            try:
                self.tick()
                self.ticks += 1
            except Exception:  # a worker must never take the daemon down
                self.failures += 1
                log.exception("%s: tick failed (failure %d); trying again next interval", self.name, self.failures)
            elapsed = time.monotonic() - t0
            self._stop.wait(max(0.0, self.interval_s() - elapsed))


def now_utc():
    """The clock workers use (one place to stub in tests)."""
    return utcnow()
