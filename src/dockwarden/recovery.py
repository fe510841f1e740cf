"""Boot-time and engine-restart recovery: one session from "the engine answers
again" to "every service that should run does", summarised once.

The daemon opens a :class:`RecoverySession` when it sees a host reboot (boot
time changed since the last run) or an engine restart (the event stream was
lost and came back, or the local ``dockerd`` started after the last run).
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
from typing import Any, Mapping

from dockwarden.model import DesiredState, Intent, IntentRecord, WorldState, rfc3339
from dockwarden.reconcile.drift import effective_intent, find_container


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
