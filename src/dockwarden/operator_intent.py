"""The operator's intent, read from the engine's *sequence* of events for one container.

design.md promise 1: a container the operator stopped (any stop signal, any
tool) stays stopped until the operator starts it. One event is not enough to
tell a stop from a reload or a crash, so each container's recent events are
kept as a short trace and read as a sequence (the README's intent table):

* ``kill`` (any signal) then ``die``: the process exited because of the signal,
  so this is a stop: intent ``stopped`` (source ``observed``). ``docker stop``
  sends the image's stop signal (SIGTERM, nginx's SIGQUIT, postgres' SIGINT,
  httpd's SIGWINCH...) and emits ``kill`` -> ``die`` -> ``stop``; ``docker kill``
  emits ``kill`` -> ``die``. A signal that is not a stopping one (not SIGKILL,
  not the container's stop signal, not TERM/INT/QUIT) followed by a ``die`` more
  than :data:`NON_STOP_SIGNAL_DIE_S` later is a crash, not a stop.
* ``kill`` without ``die`` (``docker kill -s HUP`` to reload): not a stop. While
  a ``kill`` waits for its ``die`` (up to :data:`KILL_HOLD_S`), the service is
  *held*: no action runs on it, so a pass that inspects the exited container
  before the ``die`` event arrives cannot undo the operator's stop.
* ``die`` with no ``kill`` before it: a crash (or ``kill -9`` from the host, or
  an OOM kill). Not intent; the drift ``stopped`` follows.
* ``stop`` not caused by dockwarden: a stop (covers engines that skip ``kill``).
* ``destroy`` after an operator stop: gone means gone, the intent stays
  ``stopped``, unless the sequence was ``kill`` (SIGKILL) -> ``die`` ->
  ``destroy`` with no ``stop`` event, i.e. ``docker rm -f`` of a running
  container: a removal, taken back to ``running`` (recreated from its spec).
* ``start`` / ``unpause`` not caused by dockwarden: intent ``running``.
* ``pause`` not caused by dockwarden: intent ``stopped`` (the operator froze it;
  dockwarden does not unpause it).
* Events caused by dockwarden's own actions (the action protocol records each
  action before it runs, bounded by its start, finish and deadline) are never
  intent.

Stops by the engine's own shutdown look exactly like ``docker stop``. They are
remembered in the store (``observed_stops``) and taken back only on evidence
that the engine restarted (:meth:`OperatorIntent.reconsider_stops`), never on a
mere loss of the event stream.

Stops by the engine's own *start-up* look the same too: a ``dockerd`` killed
with SIGKILL (no live-restore) finds its containers still running under their
shims when it starts again, and stops them during its restore, before its API
answers (``kill`` -> ``die`` -> ``stop``, and Engine 20.10 marks them
``HasBeenManuallyStopped``). Those events are read after the reconnect, through
the new stream (its ``since`` has one-second resolution). With evidence of the
restart, :meth:`OperatorIntent.engine_started_up` names the window from the
engine's start to its first answer; stop events stamped (engine clock) inside it
are the engine's, never intent. No operator command can run in it: the API did
not answer yet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from dockwarden.model import (
    ActionKind,
    ContainerState,
    DesiredState,
    EngineEvent,
    EventType,
    Intent,
    IntentRecord,
    IntentSource,
    ServiceSpec,
    WorldState,
)
from dockwarden.reconcile.drift import effective_intent
from dockwarden.reconcile.resolve import find_container
from dockwarden.store import Store

log = logging.getLogger(__name__)

#: Seconds either side of an action's run within which its events are its own.
OWN_ACTION_SLACK_S = 2.0
#: A ``kill`` waits this long for its ``die`` before it is taken for a
#: non-stopping signal (the service is held meanwhile), seconds.
KILL_HOLD_S = 10.0
#: A ``die`` this long after a ``kill`` still pairs with it (``docker stop -t``
#: grace periods; a slow graceful shutdown), seconds.
KILL_DIE_WINDOW_S = 600.0
#: A non-stopping signal (HUP, USR1...) whose ``die`` follows within this many
#: seconds killed the process (default action of the signal): a stop.
NON_STOP_SIGNAL_DIE_S = 2.0
#: A ``destroy`` this soon after the ``die`` of a SIGKILL with no ``stop`` event
#: is ``docker rm -f``, seconds.
REMOVAL_WINDOW_S = 10.0
#: Operator stops this close before the engine went away are kept as take-back
#: candidates until the evidence decides, seconds.
ENGINE_SHUTDOWN_WINDOW_S = 60.0
#: Signals whose purpose is to stop (besides the container's own stop signal).
STOPPING_SIGNALS = frozenset({"SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT"})

#: Our actions that cause kill/die/stop events, start events, and destroy events.
_STOP_CAUSES = (ActionKind.STOP, ActionKind.RESTART, ActionKind.RECREATE, ActionKind.COMPOSE_UP)
_START_CAUSES = (ActionKind.START, ActionKind.RESTART, ActionKind.RECREATE, ActionKind.COMPOSE_UP)
_DESTROY_CAUSES = (ActionKind.RECREATE, ActionKind.COMPOSE_UP)

_SIGNAL_NUMBERS = {"1": "SIGHUP", "2": "SIGINT", "3": "SIGQUIT", "9": "SIGKILL", "10": "SIGUSR1",
                   "12": "SIGUSR2", "15": "SIGTERM", "28": "SIGWINCH"}


def signal_name(value: str | None) -> str | None:
    """Normalise a signal as the engine writes it (``"15"``, ``"TERM"``,
    ``"SIGTERM"``) to ``"SIGTERM"``; None stays None."""
    if not value:
        return None
    v = value.strip().upper()
    if v.isdigit():
        return _SIGNAL_NUMBERS.get(v, f"SIG{v}")
    return v if v.startswith("SIG") else f"SIG{v}"


@dataclass
class _Trace:
    """The recent events of one container that matter for intent."""

    service: str
    last_at: datetime
    kill_at: datetime | None = None
    kill_signal: str | None = None
    died_at: datetime | None = None
    stop_event: bool = False
    operator_stop: bool = False  # intent stopped was recorded from this sequence


class OperatorIntent:
    """Records operator intent from the engine's events.

    Args:
        store: intents, observed stops, and our own actions (to tell them apart).
        emit: records an event: ``emit(type, reason, **fields)``.
    """

    def __init__(self, store: Store, emit: Callable[..., None]):
        self.store = store
        self._emit = emit
        self._traces: dict[str, _Trace] = {}
        self._start_up: tuple[datetime, datetime] | None = None

    # ------------------------------------------------------------------ queries

    def held(self, now: datetime) -> set[str]:
        """Services whose operator stop is under way (``kill`` seen, ``die`` not yet,
        for at most :data:`KILL_HOLD_S`): the pass must not act on them."""
        out = set()
        for t in self._traces.values():
            if t.kill_at is not None and t.died_at is None and (now - t.kill_at).total_seconds() < KILL_HOLD_S:
                out.add(t.service)
        return out

    def forget_except(self, container_ids: set[str], now: datetime) -> None:
        """Drop traces of containers that no longer exist and were quiet for
        :data:`ENGINE_SHUTDOWN_WINDOW_S` (bounded memory; a removal's ``destroy``
        event may arrive after the pass that found the container gone)."""
        for cid in [c for c, t in self._traces.items() if c not in container_ids
                    and (now - t.last_at).total_seconds() > ENGINE_SHUTDOWN_WINDOW_S]:
            del self._traces[cid]

    # ------------------------------------------------------------------ events

    def on_event(self, ev: EngineEvent, spec: ServiceSpec, container: ContainerState | None = None) -> None:
        """Read one container event of a tracked service.

        Args:
            ev: the engine event (``ev.at`` is compared with our actions' times).
            spec: the service the container belongs to (``resolve.ServiceIndex``).
            container: the container as last observed (for its stop signal), if known.
        """
        base = ev.base_action
        if base not in ("kill", "die", "stop", "destroy", "start", "pause", "unpause"):
            return
        cid = ev.container_id
        if base in ("kill", "die", "stop") and self._during_start_up(ev):
            self._traces.pop(cid, None)
            log.debug("%s: %s of %s at %s is the engine's own start-up clean-up, not intent",
                      spec.name, base, ev.name, ev.time)
            return
        causes = {"start": _START_CAUSES, "unpause": _START_CAUSES, "destroy": _DESTROY_CAUSES}.get(
            base, _STOP_CAUSES)
        if base != "pause" and self.store.own_action(spec.name, cid, ev.at, OWN_ACTION_SLACK_S, causes):
            if base in ("start", "destroy"):
                self._traces.pop(cid, None)
            return
        trace = self._traces.get(cid)
        if trace is None or trace.service != spec.name:
            trace = self._traces[cid] = _Trace(service=spec.name, last_at=ev.at)
        trace.last_at = ev.at
        if base == "kill":
            trace.kill_at, trace.kill_signal, trace.died_at = ev.at, signal_name(ev.attributes.get("signal")), None
            trace.stop_event = trace.operator_stop = False
        elif base == "die":
            trace.died_at = ev.at
            if self._kill_stopped_it(trace, ev.at, container):
                trace.operator_stop = True
                sig = trace.kill_signal or "a signal"
                self._record_stop(spec, ev, f"`docker stop`/`docker kill` ({sig}) not caused by dockwarden")
        elif base == "stop":
            trace.stop_event = True
            if not trace.operator_stop:
                trace.operator_stop = True
                self._record_stop(spec, ev, "`docker stop` not caused by dockwarden")
        elif base == "pause":
            self._record_stop(spec, ev, "`docker pause` not caused by dockwarden", remember=False)
        elif base == "destroy":
            self._traces.pop(cid, None)
            if (trace.operator_stop and not trace.stop_event and trace.kill_signal == "SIGKILL"
                    and trace.died_at is not None
                    and (ev.at - trace.died_at).total_seconds() <= REMOVAL_WINDOW_S):
                self._take_back_removal(spec, ev)
        elif base in ("start", "unpause"):
            self._traces.pop(cid, None)
            self._record_start(spec, ev)

    @staticmethod
    def _kill_stopped_it(trace: _Trace, died_at: datetime, container: ContainerState | None) -> bool:
        """Did the ``kill`` before this ``die`` cause it (a stop), or is it a crash?"""
        if trace.kill_at is None:
            return False
        gap = (died_at - trace.kill_at).total_seconds()
        if gap > KILL_DIE_WINDOW_S:
            return False
        own_stop_signal = signal_name(container.stop_signal if container else None) or "SIGTERM"
        if trace.kill_signal in STOPPING_SIGNALS or trace.kill_signal == own_stop_signal:
            return True
        return gap <= NON_STOP_SIGNAL_DIE_S

    def _record_stop(self, spec: ServiceSpec, ev: EngineEvent, why: str, *, remember: bool = True) -> None:
        current = self.store.intents().get(spec.name)
        if current is not None and current.intent == Intent.STOPPED:
            return
        self.store.set_intent(spec.name, Intent.STOPPED, IntentSource.OBSERVED, ev.at, why)
        if remember:
            self.store.put_observed_stop(spec.name, ev.name, ev.container_id, ev.at, ev.base_action, current)
            self.store.forget_observed_stops_before(ev.at - timedelta(seconds=ENGINE_SHUTDOWN_WINDOW_S))
        self._emit(EventType.INTENT_CHANGED, f"{spec.name}: operator stopped it ({why}); it stays stopped "
                   "until `dockwarden start`", service=spec.name, container=ev.name,
                   details={"intent": "stopped", "source": "observed", "event": ev.action,
                            "signal": t.kill_signal if (t := self._traces.get(ev.container_id)) else None})

    def _record_start(self, spec: ServiceSpec, ev: EngineEvent) -> None:
        current = self.store.intents().get(spec.name)
        if current is None or current.intent != Intent.STOPPED:
            return
        self.store.set_intent(spec.name, Intent.RUNNING, IntentSource.OBSERVED, ev.at,
                              f"`docker {ev.base_action}` outside dockwarden")
        self.store.forget_observed_stop(spec.name)
        self._emit(EventType.INTENT_CHANGED, f"{spec.name}: operator started it outside dockwarden "
                   f"({ev.base_action}); intent is running again", service=spec.name, container=ev.name,
                   details={"intent": "running", "source": "observed", "event": ev.action})

    def _take_back_removal(self, spec: ServiceSpec, ev: EngineEvent) -> None:
        for stop in self.store.observed_stops():
            if stop["service"] == spec.name:
                self._take_back(stop, "the container was removed while running (`docker rm -f`), not stopped")
                return

    def adopt_unseen_stops(self, desired: DesiredState, world: WorldState, *, since: datetime,
                           manually_stopped: Callable[[str], bool | None]) -> list[str]:
        """Record stops the operator made while dockwarden was not watching.

        A tracked service that should run, whose container exited after
        ``since`` (the last event we saw) and which Docker marks
        ``HasBeenManuallyStopped`` (``docker stop``/``kill``; never a crash or the
        engine's own shutdown), was stopped by the operator: intent ``stopped``.
        Where the flag cannot be read (a remote engine) the replayed events are
        all there is.

        Returns:
            list[str]: the services whose stop was adopted.
        """
        adopted = []
        intents = self.store.intents()
        for name, spec in sorted(desired.services.items()):
            if effective_intent(spec, intents.get(name)) is not Intent.RUNNING:
                continue
            c = find_container(spec, world)
            if (c is None or c.running or c.state == "paused" or c.finished_at is None
                    or c.finished_at <= since or manually_stopped(c.id) is not True):
                continue
            why = "stopped while dockwarden was not watching (Docker marks it HasBeenManuallyStopped)"
            self.store.set_intent(name, Intent.STOPPED, IntentSource.OBSERVED, c.finished_at, why)
            self._emit(EventType.INTENT_CHANGED, f"{name}: operator stopped it ({why}); it stays stopped "
                       "until `dockwarden start`", service=name, container=c.name,
                       details={"intent": "stopped", "source": "observed", "evidence": "HasBeenManuallyStopped"})
            adopted.append(name)
        return adopted

    # ------------------------------------------------------------------ engine restarts

    def end_holds(self) -> list[str]:
        """The engine restarted: every ``kill`` still waiting for its ``die`` is settled
        (the restart ended those processes; the ``die`` may never reach us), so the
        services it held are released at once instead of after :data:`KILL_HOLD_S`.
        bench/recovery.py with the daemon running through an engine restart: four
        layer-0 services killed by the engine's shutdown were held 10 s, and the
        recovery took 15.9 s instead of about 8.

        Returns:
            list[str]: the services released, sorted.
        """
        released = sorted({t.service for t in self._traces.values() if t.kill_at is not None and t.died_at is None})
        for cid in [c for c, t in self._traces.items() if t.kill_at is not None and t.died_at is None]:
            del self._traces[cid]
        return released

    def engine_started_up(self, started: datetime, answered: datetime) -> None:
        """The engine restarted: it started at ``started`` and first answered at
        ``answered`` (both on the engine's clock, UTC). Stop events stamped in
        between are its restore's clean-up, not the operator's (module docstring).
        A later call replaces the window.

        Args:
            started: the engine process's start (psutil on a local engine), else
                the last event seen before the loss.
            answered: the engine's ``SystemTime`` in its first answer after the restart.
        """
        self._start_up = (min(started, answered), answered)

    def _during_start_up(self, ev: EngineEvent) -> bool:
        return self._start_up is not None and self._start_up[0] <= ev.time <= self._start_up[1]

    def _take_back(self, stop: dict, why: str) -> None:
        """Undo an observed-stop intent that turned out not to be the operator's wish."""
        prev: IntentRecord | None = stop["previous"]
        service = stop["service"]
        if prev is None:
            self.store.clear_intent(service)
        else:
            self.store.set_intent(service, prev.intent, prev.source, stop["at"], prev.reason)
        self.store.forget_observed_stop(service)
        self._emit(EventType.INTENT_CHANGED, f"{service}: stop taken back — {why}", service=service,
                   container=stop["container"], details={"intent": prev.intent.value if prev else None,
                                                          "taken_back": True})

    def reconsider_stops(self, *, engine_restarted: bool | None, last_seen: datetime | None,
                         manually_stopped: Callable[[str], bool | None]) -> dict[str, list[str]]:
        """After the engine came back (or at daemon start): decide the remembered
        stops of the last :data:`ENGINE_SHUTDOWN_WINDOW_S` before ``last_seen``.

        Per stop, first rule that applies:

        1. Docker's own flag ``HasBeenManuallyStopped`` (``manually_stopped(id)``,
           readable on a local engine as root): False -> the engine stopped it:
           taken back; True -> the operator did: kept.
        2. ``engine_restarted`` True (the engine process started again, or it no
           longer remembers the events we saw): taken back.
        3. Otherwise (a dropped stream, no evidence): kept. A blip of the stream
           never undoes an operator's stop.

        Args:
            engine_restarted: evidence that the engine restarted (None: unknown).
            last_seen: when the last event before the loss was seen (our clock).
            manually_stopped: reads Docker's flag for a container id; None when unreadable.
        Returns:
            dict: ``{"taken_back": [services], "kept": [services]}``.
        """
        out: dict[str, list[str]] = {"taken_back": [], "kept": []}
        for stop in self.store.observed_stops():
            if last_seen is not None and (last_seen - stop["at"]).total_seconds() > ENGINE_SHUTDOWN_WINDOW_S:
                self.store.forget_observed_stop(stop["service"])
                continue
            current = self.store.intents().get(stop["service"])
            if current is None or current.intent != Intent.STOPPED or current.source != IntentSource.OBSERVED:
                self.store.forget_observed_stop(stop["service"])
                continue
            flag = manually_stopped(stop["container_id"]) if stop["container_id"] else None
            if flag is False:
                self._take_back(stop, "Docker says the engine stopped it (HasBeenManuallyStopped false), "
                                      "not the operator")
                out["taken_back"].append(stop["service"])
            elif flag is None and engine_restarted:
                self._take_back(stop, "the engine was shutting down, not the operator")
                out["taken_back"].append(stop["service"])
            else:
                self.store.forget_observed_stop(stop["service"])
                out["kept"].append(stop["service"])
        return out
