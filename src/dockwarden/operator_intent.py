"""The operator's intent, read from the engine's events.

A ``stop`` or ``kill`` (SIGKILL/SIGTERM) event that dockwarden did not cause is
the operator's: it records intent ``stopped`` (source ``observed``), and the
service stays stopped until ``dockwarden start`` (or a ``docker start``, which
records ``running`` again). Docker's own remembered manual stop works the same
way for ``unless-stopped`` (field-notes). Two look-alikes are taken back:

- ``docker rm -f`` is ``kill`` + ``die`` + ``destroy``: a removal, not a stop;
  the desired state still wants the service (it is recreated from its spec).
- Stops just before the engine went away are the engine shutting down.

dockwarden's own actions are recorded in the store before they run, so their
events are recognised here and never read as operator intent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from dockwarden.model import ActionKind, EngineEvent, EventType, Intent, IntentRecord, IntentSource, ServiceSpec, utcnow
from dockwarden.store import Store

#: Seconds around one of our own actions within which a container's stop/kill
#: events are ours, not the operator's.
OWN_ACTION_WINDOW_S = 30.0
#: Observed stops this close before the engine went away are the engine's shutdown.
ENGINE_SHUTDOWN_WINDOW_S = 60.0
#: A `kill` followed by `destroy` within this many seconds is a removal (`docker rm -f`).
REMOVAL_WINDOW_S = 10.0
#: Our actions that cause stop/kill events, and those that cause start events.
_STOP_CAUSES = (ActionKind.STOP, ActionKind.RESTART, ActionKind.RECREATE, ActionKind.COMPOSE_UP)
_START_CAUSES = (ActionKind.START, ActionKind.RESTART, ActionKind.RECREATE, ActionKind.COMPOSE_UP)
_STOP_SIGNALS = ("9", "15", "SIGKILL", "SIGTERM", "KILL", "TERM")


@dataclass
class _ObservedStop:
    at_monotonic: float
    service: str
    container: str
    previous: IntentRecord | None
    event: str  # "stop" or "kill"


class OperatorIntent:
    """Records operator intent from engine events.

    Args:
        store: where intents and our own actions are recorded.
        emit: records an event: ``emit(type, reason, **fields)``.
    """

    def __init__(self, store: Store, emit: Callable[..., None]):
        self.store = store
        self._emit = emit
        self._observed_stops: list[_ObservedStop] = []

    def engine_lost(self) -> None:
        """The engine went away: stops seen just before were its shutdown."""
        cutoff = time.monotonic() - ENGINE_SHUTDOWN_WINDOW_S
        for stop in [s for s in self._observed_stops if s.at_monotonic >= cutoff]:
            self._take_back(stop, "the engine was shutting down, not the operator")
        self._observed_stops.clear()

    def _take_back(self, stop: _ObservedStop, why: str) -> None:
        """Undo an observed-stop intent that turned out not to be the operator's wish."""
        if stop.previous is None:
            self.store.clear_intent(stop.service)
        else:
            self.store.set_intent(stop.service, stop.previous.intent, stop.previous.source, utcnow(),
                                  stop.previous.reason)
        if stop in self._observed_stops:
            self._observed_stops.remove(stop)
        self._emit(EventType.INTENT_CHANGED, f"{stop.service}: stop taken back — {why}", service=stop.service,
                   container=stop.container,
                   details={"intent": stop.previous.intent.value if stop.previous else None})

    def on_event(self, ev: EngineEvent, spec: ServiceSpec) -> None:
        """Read one container event of a tracked service for operator intent."""
        base = ev.base_action
        if base == "destroy":
            # `docker rm -f` is kill + die + destroy: the container was removed, not
            # stopped, and the desired state still wants it (recreate from its spec).
            cutoff = time.monotonic() - REMOVAL_WINDOW_S
            for stop in [s for s in self._observed_stops
                         if s.service == spec.name and s.event == "kill" and s.at_monotonic >= cutoff]:
                self._take_back(stop, "the container was removed (`docker rm -f`), not stopped")
            return
        operator_stop = base == "stop" or (base == "kill" and ev.attributes.get("signal") in _STOP_SIGNALS)
        operator_start = base == "start"
        if not (operator_stop or operator_start):
            return
        causes = _STOP_CAUSES if operator_stop else _START_CAUSES
        ours = self.store.recent_action_on(ev.name, ev.time - timedelta(seconds=OWN_ACTION_WINDOW_S),
                                           ev.time + timedelta(seconds=2), causes)
        if ours:
            return
        intents = self.store.intents()
        current = intents.get(spec.name)
        now = utcnow()
        if operator_stop and (current is None or current.intent != Intent.STOPPED):
            self.store.set_intent(spec.name, Intent.STOPPED, IntentSource.OBSERVED, now,
                                  f"`docker {base}` not caused by dockwarden")
            keep_after = time.monotonic() - ENGINE_SHUTDOWN_WINDOW_S
            self._observed_stops = [s for s in self._observed_stops if s.at_monotonic >= keep_after]
            self._observed_stops.append(_ObservedStop(time.monotonic(), spec.name, ev.name, current, base))
            self._emit(EventType.INTENT_CHANGED, f"{spec.name}: operator stopped it ({base} event not caused by "
                       "dockwarden); it stays stopped until `dockwarden start`", service=spec.name, container=ev.name,
                       details={"intent": "stopped", "source": "observed", "event": ev.action})
        elif operator_start and current is not None and current.intent == Intent.STOPPED:
            self.store.set_intent(spec.name, Intent.RUNNING, IntentSource.OBSERVED, now,
                                  "started outside dockwarden")
            self._emit(EventType.INTENT_CHANGED, f"{spec.name}: operator started it outside dockwarden; "
                       "intent is running again", service=spec.name, container=ev.name,
                       details={"intent": "running", "source": "observed"})
