"""Boot-time and engine-restart recovery: one session from "the engine answers
again" to "every service that should run does", summarised once.

The daemon opens a :class:`RecoverySession` when it sees a host reboot (boot
time changed since the last run) or an engine restart: the local ``dockerd``
process started again, or the engine no longer remembers the last event we saw
(``observe.liveness.engine_remembers``). A lost event stream alone is not a restart.
The ordinary reconcile passes do the work (they start services in
``depends_on`` order and wait for a dependency to be healthy); the session only
watches each pass and, when all intent-running services are back (running, and
healthy where they have a healthcheck) or ``[recovery] timeout_s`` has passed,
produces the summary: what was brought back and how long it took, what was
left stopped on purpose, what failed to come back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping

import psutil

from dockwarden.model import DesiredState, EventType, Intent, IntentRecord, WorldState, rfc3339
from dockwarden.observe.host import local_engine_started
from dockwarden.reconcile.drift import effective_intent
from dockwarden.reconcile.resolve import find_container
from dockwarden.store import Store


def is_back(c) -> bool:
    """Running, and healthy when it has a healthcheck."""
    return c is not None and c.running and c.health in (None, "healthy")


@dataclass
class RecoverySession:
    """One recovery. ``cause`` is ``host_reboot`` or ``engine_restart``.

    Args:
        cause: why recovery runs.
        started_at: when the engine answered again (UTC).
        desired: the desired state at that time (labelled services merged).
        intents: recorded intents.
        world: the first observation after the restart.
    """

    cause: str
    started_at: datetime
    expected: list[str] = field(default_factory=list)
    left_stopped: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    back_at: dict[str, datetime] = field(default_factory=dict)
    done: bool = False

    @classmethod
    def begin(cls, cause: str, started_at: datetime, desired: DesiredState,
              intents: Mapping[str, IntentRecord], world: WorldState) -> "RecoverySession":
        s = cls(cause=cause, started_at=started_at)
        for name, spec in sorted(desired.services.items()):
            if effective_intent(spec, intents.get(name)) == Intent.STOPPED:
                s.left_stopped.append(name)
            elif is_back(find_container(spec, world)):
                s.already_running.append(name)
            else:
                s.expected.append(name)
        return s

    def observe(self, desired: DesiredState, world: WorldState, now: datetime) -> None:
        """Record which expected services are back as of this observation."""
        for name in self.expected:
            spec = desired.services.get(name)
            if name not in self.back_at and spec is not None and is_back(find_container(spec, world)):
                self.back_at[name] = now

    def finished(self, now: datetime, timeout_s: float) -> bool:
        if self.done:
            return False
        return len(self.back_at) == len(self.expected) or (now - self.started_at).total_seconds() >= timeout_s

    def summary(self, now: datetime) -> dict[str, Any]:
        """The recovery summary (event details): cause, times, lists."""
        self.done = True
        brought = [{"service": n, "seconds": round((t - self.started_at).total_seconds(), 3)}
                   for n, t in sorted(self.back_at.items(), key=lambda kv: kv[1])]
        failed = [n for n in self.expected if n not in self.back_at]
        last = max(self.back_at.values(), default=self.started_at)
        return {
            "cause": self.cause,
            "since": rfc3339(self.started_at),
            "duration_s": round(((last if not failed else now) - self.started_at).total_seconds(), 3),
            "brought_back": brought,
            "left_stopped": list(self.left_stopped),
            "failed": failed,
            "already_running": list(self.already_running),
        }


class RecoveryTracker:
    """Tells a restart from a normal start (on evidence: boot time, the engine
    process's start time, the engine's memory of our last event), and runs one :class:`RecoverySession`
    per restart: ``recovery_started`` when it begins, ``recovery_completed`` (the
    summary) when every intent-running service is back or the timeout passed.

    Args:
        store: checkpoints (boot time, engine start time) and intents.
        emit: records an event: ``emit(type, reason, **fields)``.
        docker_host: the engine's address (``DOCKER_HOST``), to find a local dockerd.
    """

    def __init__(self, store: Store, emit: Callable[..., None], docker_host: str | None, *, local: bool = True):
        self.store = store
        self._emit = emit
        self.docker_host = docker_host
        #: The engine runs on this host (its process and the host's boot time can be read).
        self.local = local
        self.session: RecoverySession | None = None
        self._pending_cause: str | None = None

    @property
    def active(self) -> bool:
        """A recovery is under way (about to begin, or begun and not reported)."""
        return self._pending_cause is not None or (self.session is not None and not self.session.done)

    def engine_start_changed(self) -> bool | None:
        """Whether the local ``dockerd`` process started since the last look
        (psutil), recording its start time for the next one; None when there is
        no local engine process to look at (a remote engine)."""
        engine_started = local_engine_started(self.docker_host) if self.local else None
        if engine_started is None:
            return None
        last = self.store.checkpoint("engine_started_at")
        self.store.set_checkpoint("engine_started_at", f"{engine_started:.0f}")
        if last is None:
            return None
        return abs(float(last) - engine_started) > 2

    def host_rebooted(self) -> bool:
        """Whether psutil's boot time differs from the one recorded at the last
        look (recorded now for the next one)."""
        boot = f"{psutil.boot_time():.0f}"
        last_boot = self.store.checkpoint("boot_time")
        self.store.set_checkpoint("boot_time", boot)
        return last_boot is not None and abs(float(last_boot) - float(boot)) > 2

    def on_connect(self, *, host_rebooted: bool, engine_restarted: bool | None, cause: str | None = None) -> None:
        """The daemon (re)connected to the engine: a recovery session starts with
        the next pass when the host rebooted or the engine restarted.

        Evidence only: a lost event stream that comes back from the same engine
        process is not a restart (issue 8: a blip must not look like one).
        """
        cause = cause or ("host_reboot" if host_rebooted else ("engine_restart" if engine_restarted else None))
        if cause is not None:
            self._pending_cause = cause
            self.session = None

    def after_pass(self, merged: DesiredState, world: WorldState, now: datetime, timeout_s: float) -> None:
        """Watch one pass's observation: begin, follow or finish the recovery.

        Args:
            merged: the pass's desired state (labelled services merged in).
        """
        if self._pending_cause is not None:
            r = self.session = RecoverySession.begin(self._pending_cause, now, merged, self.store.intents(), world)
            self._pending_cause = None
            self._emit(EventType.RECOVERY_STARTED,
                       f"{r.cause.replace('_', ' ')}: bringing back {len(r.expected)} services "
                       f"({len(r.left_stopped)} stay stopped on purpose)",
                       details={"cause": r.cause, "expected": r.expected, "left_stopped": r.left_stopped})
        r = self.session
        if r is None or r.done:
            return
        r.observe(merged, world, now)
        if not r.finished(now, timeout_s):
            return
        summary = r.summary(now)
        failed = summary["failed"]
        reason = (f"after the {r.cause.replace('_', ' ')}: {len(summary['brought_back'])} services back in "
                  f"{summary['duration_s']:.1f} s, {len(summary['left_stopped'])} left stopped on purpose"
                  + (f", {len(failed)} failed to come back: {', '.join(failed)}" if failed else ""))
        summary["todo"] = (f"look at {', '.join(failed)} (dockwarden status, dockwarden events --service NAME)"
                           if failed else None)
        self._emit(EventType.RECOVERY_COMPLETED, reason, priority="P2" if failed else "P3", details=summary)
