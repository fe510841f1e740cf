"""The action protocol: record an action, carry it out, judge it.

One protocol for every part of dockwarden that changes a container: the
daemon's reconcile loop, the CLI's operator commands and the API (design.md:
"one protocol, used by the daemon, the CLI and the API"):

1. **Record first.** :meth:`ActionProtocol.begin` writes the action with a new
   id (``uid``, written as ``details.action_id`` in every event about it), the
   real container name and id, who asked (daemon, cli, api), the owner's pid
   and a deadline, then emits ``action_started``. The engine events the action
   causes are recognised as dockwarden's own from this record (bounded by the
   action's start, finish and deadline), never read as the operator's intent.
2. **Carry out, never raise.** :meth:`ActionProtocol.carry_out` runs the call
   in ``try``/``finally``: any exception becomes an ``action_failed`` outcome
   with a digest of the error (kopf's ``execute_handler_once``); Ctrl-C or a
   signal closes the action as ``interrupted`` and is re-raised.
3. **Judge by observation.** The next observation judges it
   (:func:`dockwarden.reconcile.policy.judge`, one rule per action kind); a
   call that returned an error is judged failed at once. Unfinished actions are
   closed as ``interrupted`` when their deadline passes and when a daemon
   starts and finds their owner gone (:meth:`ActionProtocol.close_interrupted`).

:class:`ActionRunner` runs actions off the daemon's loop, one per service at a
time, and reports each finished one back to the loop, so a long ``compose up``
never stops events from being read and intents from being recorded.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from dockwarden.model import (
    ActionBy,
    ActionKind,
    ActionRecord,
    DriftKind,
    Event,
    EventType,
    Outcome,
    parse_time,
    utcnow,
)
from dockwarden.store import Store

log = logging.getLogger(__name__)

#: Seconds beyond an action's own timeout before its record is closed as
#: ``interrupted`` (a call that never returned: the process was killed).
DEADLINE_SLACK_S = 30.0
#: How long each kind of call may take, seconds, before the stop grace period:
#: compose runs with a 300 s timeout (execute.py); the rest are single API calls.
CALL_TIMEOUT_S = {ActionKind.COMPOSE_UP: 300.0, ActionKind.RECREATE: 120.0}
DEFAULT_CALL_TIMEOUT_S = 60.0
#: Longest error digest kept in events and the actions table, characters.
ERROR_DIGEST_CHARS = 300


def new_action_id() -> str:
    """A fresh action id: ``a-`` and 12 hex digits (random, so two processes
    never collide and no database round trip is needed to make one)."""
    return "a-" + uuid.uuid4().hex[:12]


def deadline_s(action: ActionKind, stop_timeout_s: float) -> float:
    """Seconds from an action's start to its deadline: the call's own timeout,
    plus the stop grace period for actions that stop a container, plus
    :data:`DEADLINE_SLACK_S`."""
    t = CALL_TIMEOUT_S.get(action, DEFAULT_CALL_TIMEOUT_S)
    if action in (ActionKind.STOP, ActionKind.RESTART, ActionKind.RECREATE):
        t += stop_timeout_s
    return t + DEADLINE_SLACK_S


def error_digest(e: BaseException) -> str:
    """``TypeName: message (file:line)`` of an unexpected exception, one line,
    at most :data:`ERROR_DIGEST_CHARS` characters (no environment, no locals)."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" ({os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
    text = f"{type(e).__name__}: {e}".replace("\n", " ")
    return (text[: ERROR_DIGEST_CHARS - len(where)] + where)


def pid_alive(pid: int | None) -> bool:
    """True when a process with this pid exists (signal 0); False for None."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ActionProtocol:
    """Records, carries out and closes actions (see the module docstring).

    Args:
        store: the SQLite store (the ``actions`` table).
        emit: records an event (``EventLog.send``); must not raise.
        node: node name written into events.
        by: who this process acts for (daemon, cli, api).
        stop_timeout_s: the stop grace period, for deadlines.
    """

    def __init__(self, store: Store, emit: Callable[[Event], Any], node: str, *, by: ActionBy,
                 stop_timeout_s: float = 10.0):
        self.store = store
        self.emit = emit
        self.node = node
        self.by = by
        self.stop_timeout_s = stop_timeout_s

    def _event(self, type_: EventType, rec: ActionRecord, reason: str, now: datetime, **kw: Any) -> None:
        details = {"action_id": rec.uid, "by": rec.by.value, **kw.pop("details", {})}
        self.emit(Event(type=type_, ts=now, node=self.node, service=rec.service, container=rec.container,
                        action=rec.action.value, drift=rec.drift.value if rec.drift else None,
                        reason=reason, details=details, **kw))

    def begin(self, *, service: str, container: str, action: ActionKind, reason: str,
              container_id: str | None = None, drift: DriftKind | None = None, priority: str | None = None,
              now: datetime | None = None, details: dict[str, Any] | None = None,
              stop_timeout_s: float | None = None) -> ActionRecord:
        """Record an action before it is carried out, and emit ``action_started``.

        Args:
            service: the service name.
            container: the real container name (compose: the name compose gave it).
            action: what will be done.
            reason: why, in words a person can read.
            container_id: the container's id when it exists.
            drift: the drift being remedied (None for operator commands).
            priority: the finding's priority ("P2"), for the event.
            now: start time (UTC); default now.
            details: extra event details (attempt number, ...).
            stop_timeout_s: the service's own grace period, seconds, for the
                deadline (None: the protocol's).
        Returns:
            ActionRecord: with its ``uid`` and ``deadline_at``.
        Raises:
            sqlite3.Error: the record could not be written (the caller must not act).
        """
        now = now or utcnow()
        rec = ActionRecord(
            uid=new_action_id(), service=service, container=container, container_id=container_id,
            action=action, drift=drift, by=self.by, pid=os.getpid(), started_at=now,
            deadline_at=now + timedelta(seconds=deadline_s(
                action, self.stop_timeout_s if stop_timeout_s is None else stop_timeout_s)),
        )
        self.store.begin_action(rec)
        self._event(EventType.ACTION_STARTED, rec, reason, now, priority=priority, details=details or {})
        return rec

    def carry_out(self, rec: ActionRecord, call: Callable[[], Outcome]) -> Outcome:
        """Run the call and record its result; never raises an ``Exception``.

        Args:
            rec: the action from :meth:`begin`.
            call: carries the action out (``Executor.run`` bound to its arguments).
        Returns:
            Outcome: the call's, or ``ok=False`` with an error digest when it raised.
        Raises:
            KeyboardInterrupt, SystemExit: re-raised after the action is closed
                as ``interrupted`` (Ctrl-C in a CLI command).
        """
        outcome: Outcome | None = None
        try:
            outcome = call()
        except Exception as e:  # the protocol's promise: an unexpected error fails one action
            log.exception("%s: %s %s raised", rec.service, rec.action.value, rec.uid)
            outcome = Outcome(action=rec.action, service=rec.service, container=rec.container, ok=False,
                              error=f"unexpected error: {error_digest(e)}", permanent=False)
        except BaseException:
            self.interrupt(rec, "interrupted (Ctrl-C or a signal) before the call returned")
            raise
        finally:
            if outcome is not None:
                self._finish(rec, outcome)
        return outcome

    def _finish(self, rec: ActionRecord, outcome: Outcome) -> None:
        now = utcnow()
        try:
            self.store.finish_action(rec.uid, outcome, now)
        except Exception as e:  # the store may be full; the event below still tells
            log.error("%s: cannot record the end of action %s: %s", rec.service, rec.uid, e)
        if not outcome.ok:
            self._event(EventType.ACTION_FAILED, rec, f"{rec.action.value} failed: {outcome.error}", now,
                        details={"permanent": outcome.permanent})

    def interrupt(self, rec: ActionRecord, why: str) -> None:
        """Close an action whose call will not return (verdict ``interrupted``)."""
        now = utcnow()
        try:
            closed = self.store.interrupt_action(rec.uid, now, why)
        except Exception as e:  # closing is best effort; the deadline closes it later
            log.error("%s: cannot close action %s: %s", rec.service, rec.uid, e)
            closed = True
        if closed:
            self._event(EventType.ACTION_INTERRUPTED, rec, f"{rec.action.value} {why}", now)

    def close_interrupted(self, now: datetime | None = None, *, starting: bool = False) -> list[str]:
        """Close unfinished actions whose call will never return.

        An unfinished action is closed when its deadline has passed, or when its
        owner process is gone (a daemon or CLI killed mid-action), or, with
        ``starting``, when it belonged to an earlier daemon (this daemon has just
        started and runs nothing yet).

        Returns:
            list[str]: the uids closed (each gets an ``action_interrupted`` event).
        """
        now = now or utcnow()
        closed = []
        for r in self.store.unfinished_actions():
            deadline = parse_time(r["deadline_at"])
            own = r["pid"] == os.getpid()
            why = None
            if deadline is not None and deadline < now:
                why = "not finished by its deadline"
            elif not own and not pid_alive(r["pid"]):
                why = f"its process ({r['by']}, pid {r['pid']}) is gone"
            elif starting and r["by"] == ActionBy.DAEMON.value and not own:
                why = "the daemon that ran it stopped"
            if why is None:
                continue
            rec = ActionRecord(uid=r["uid"], service=r["service"], container=r["container"],
                               action=ActionKind(r["action"]), started_at=now, deadline_at=now,
                               by=ActionBy(r["by"]), pid=r["pid"])
            if self.store.interrupt_action(r["uid"], now, f"interrupted: {why}"):
                closed.append(r["uid"])
                self._event(EventType.ACTION_INTERRUPTED, rec, f"{rec.action.value} interrupted: {why}", now)
        return closed


@dataclass(frozen=True)
class ActionDone:
    """Put on the daemon's queue when an action run off the loop has finished."""

    rec: ActionRecord
    outcome: Outcome
    context: Any = None


@dataclass
class ActionRunner:
    """Runs actions off the daemon's loop: at most one per service at a time, at
    most ``workers`` at once; each finished action is reported as an
    :class:`ActionDone` on ``done`` (the daemon's queue), which wakes the loop.

    Args:
        protocol: records and carries out each action.
        done: the queue that receives ``ActionDone``.
        workers: threads (actions of different services run concurrently).
    """

    protocol: ActionProtocol
    done: "queue.Queue[Any]"
    workers: int = 8
    _pool: ThreadPoolExecutor = field(init=False)
    _busy: dict[str, str] = field(init=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dockwarden-action")

    def busy(self, service: str) -> bool:
        """True while an action of this service is running."""
        with self._lock:
            return service in self._busy

    def in_flight(self) -> set[str]:
        """Services with an action running now."""
        with self._lock:
            return set(self._busy)

    def submit(self, rec: ActionRecord, call: Callable[[], Outcome], context: Any = None) -> bool:
        """Run ``call`` for a recorded action in a worker thread.

        Returns:
            bool: False (and nothing runs) when the service already has an action
            running; the record is then closed as ``interrupted``.
        """
        with self._lock:
            if rec.service in self._busy:
                busy = True
            else:
                busy = False
                self._busy[rec.service] = rec.uid
        if busy:
            self.protocol.interrupt(rec, "not run: another action of the service is still running")
            return False

        def work() -> None:
            outcome = None
            try:
                outcome = self.protocol.carry_out(rec, call)
            finally:
                with self._lock:
                    self._busy.pop(rec.service, None)
                if outcome is None:
                    outcome = Outcome(action=rec.action, service=rec.service, container=rec.container,
                                      ok=False, error="interrupted")
                self.done.put(ActionDone(rec, outcome, context))

        self._pool.submit(work)
        return True

    def shutdown(self, wait_s: float = 10.0) -> None:
        """Stop taking actions; wait up to ``wait_s`` for running ones (the
        rest are closed as interrupted by the next daemon's start)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = threading.Event()
        t = threading.Thread(target=lambda: (self._pool.shutdown(wait=True), deadline.set()), daemon=True)
        t.start()
        deadline.wait(wait_s)
