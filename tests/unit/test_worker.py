"""PeriodicWorker: a worker that loads the engine waits while the daemon recovers."""

from __future__ import annotations

import threading
import time

from dockwarden import worker as worker_mod
from dockwarden.config import Settings
from dockwarden.worker import PeriodicWorker, WorkerContext


class _Probe(PeriodicWorker):
    name = "probe"

    def __init__(self, defer: bool) -> None:
        super().__init__()
        self.defer_while_recovering = defer
        self.ticked = threading.Event()

    def interval_s(self) -> float:
        return 3600.0

    def tick(self) -> None:
        self.ticked.set()


class _Recovery:
    """ctx.recovering: True until ended; counts the questions."""

    def __init__(self) -> None:
        self.on = True
        self.asked = 0
        self.asked_thrice = threading.Event()

    def __call__(self) -> bool:
        self.asked += 1
        if self.asked >= 3:
            self.asked_thrice.set()
        return self.on


def _ctx(tmp_path, recovering) -> WorkerContext:
    return WorkerContext(settings=Settings.resolve(state_dir=tmp_path), node="n1", policy=lambda: None,
                         mode=lambda: None, world=lambda: None, emit=lambda e: True, wake=lambda: None,
                         recovering=recovering)


def _wait(event: threading.Event, what: str, timeout: float = 10.0) -> None:
    assert event.wait(timeout), f"timed out waiting for {what}"


def test_a_deferring_worker_ticks_only_once_the_recovery_is_over(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_mod, "RECOVERY_POLL_S", 0.01)
    rec = _Recovery()
    w = _Probe(defer=True)
    w.start(_ctx(tmp_path, rec))
    try:
        _wait(rec.asked_thrice, "the worker to ask three times whether the recovery is over")
        assert not w.ticked.is_set()  # asked, and told to wait: no tick yet
        rec.on = False
        _wait(w.ticked, "the first tick after the recovery")
    finally:
        w.stop()


def test_a_recovery_that_never_ends_delays_the_tick_by_at_most_the_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_mod, "RECOVERY_POLL_S", 0.01)
    monkeypatch.setattr(worker_mod, "RECOVERY_DEFER_MAX_S", 0.2)
    rec = _Recovery()
    w = _Probe(defer=True)
    t0 = time.monotonic()
    w.start(_ctx(tmp_path, rec))
    try:
        _wait(w.ticked, "the tick after the cap")
        assert rec.on and time.monotonic() - t0 >= 0.2
    finally:
        w.stop()


def test_other_workers_do_not_wait(tmp_path):
    rec = _Recovery()
    w = _Probe(defer=False)
    w.start(_ctx(tmp_path, rec))
    try:
        _wait(w.ticked, "the first tick")
        assert rec.asked == 0
    finally:
        w.stop()


def test_stop_ends_the_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_mod, "RECOVERY_POLL_S", 0.01)
    rec = _Recovery()
    w = _Probe(defer=True)
    w.start(_ctx(tmp_path, rec))
    _wait(rec.asked_thrice, "the worker to wait")
    w.stop()
    assert w._thread is not None and not w._thread.is_alive() and not w.ticked.is_set()
