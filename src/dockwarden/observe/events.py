"""The engine's container event stream, delivered to a queue by a daemon thread.

``GET /events?filters={"type":["container"]}`` streams one JSON document per
event. :class:`EventStream` turns each into a :class:`dockwarden.model.EngineEvent`
and puts it on a ``queue.Queue``; when the stream ends or fails (the engine went
away) it puts one :class:`EngineLost` and its thread exits. The consumer (the
daemon) reconnects by making a new ``EventStream`` with ``since=`` the time of the
last event it saw.

Healthchecks run as execs, so every check of every container emits
``exec_create``, ``exec_start`` and ``exec_die`` events (seen on Engine 20.10).
They are dropped here by default (``ignore_exec=True``): the health outcome
arrives as ``health_status: ...`` when it changes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from dockwarden import model
from dockwarden.observe.docker import ENGINE_ERRORS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineLost:
    """Sentinel put on the queue when the event stream ended or failed.

    ``error`` says why, e.g. ``"event stream ended"`` or
    ``"ConnectionError: ... Connection refused"``.
    """

    error: str


def event_from_dict(ev: dict[str, Any]) -> model.EngineEvent | None:
    """Turn one decoded ``/events`` document into an :class:`model.EngineEvent`.

    PURE.

    Args:
        ev: ``{"Type": "container", "Action": "die", "Actor": {"ID": ...,
            "Attributes": {"name": ..., "exitCode": ...}}, "time": 1700000000,
            "timeNano": 1700000000123456789}`` (Engine API 1.22+; older engines
            use ``status``/``id``).
    Returns:
        model.EngineEvent | None: None for non-container events or documents
        without an action. ``time`` is from ``timeNano`` (microsecond precision)
        or ``time`` (seconds), aware UTC.
    """
    if ev.get("Type", "container") != "container":
        return None
    action = ev.get("Action") or ev.get("status")
    if not action:
        return None
    actor = ev.get("Actor") or {}
    attrs = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
    cid = actor.get("ID") or ev.get("id") or ""
    tn = ev.get("timeNano")
    if tn:
        secs, ns = divmod(int(tn), 1_000_000_000)
        ts = datetime.fromtimestamp(secs, timezone.utc) + timedelta(microseconds=ns // 1000)
    elif ev.get("time"):
        ts = datetime.fromtimestamp(int(ev["time"]), timezone.utc)
    else:
        ts = model.utcnow()
    return model.EngineEvent(action=str(action), container_id=str(cid),
                             name=attrs.get("name", ""), time=ts, attributes=attrs)


def api_time(ns: int) -> str:
    """An engine API timestamp (``since``/``until``): ``seconds.nanoseconds``, the
    form moby parses exactly (a float's digits would be read as nanoseconds)."""
    secs, rest = divmod(ns, 1_000_000_000)
    return f"{secs}.{rest:09d}"


def replay_window(client: Any, since_ns: int, until_ns: int, *,
                  timeout_s: float = 5.0) -> tuple[int, list[model.EngineEvent]]:
    """The events the engine still holds between two times, from its in-memory buffer.

    ``GET /events?since=...&until=...`` (all types): the engine answers from the
    last 256 events it keeps (moby ``daemon/events/events.go``, ``eventsLimit``)
    and ends the response at ``until`` (a time in the engine's future makes it
    wait until then). One bounded request, not docker-py's ``events()``: that
    streams with no timeout at all, so a frozen engine (SIGSTOP) would hold the
    caller for ever (seen: a node loop stuck in it never saw the engine go away).

    Args:
        client: a ``docker.DockerClient``.
        since_ns, until_ns: the window, nanoseconds since the epoch (engine clock).
        timeout_s: connect and read timeout, seconds.
    Returns:
        tuple: (how many events of any type the engine returned, the container
        events among them in order).
    Raises:
        Exceptions in :data:`ENGINE_ERRORS`: the engine cannot be asked, did not
            answer within ``timeout_s``, or answered with an error; ValueError:
            the answer is not a JSON stream.
    """
    api = client.api
    resp = api.get(f"{api.base_url}/v{api.api_version}/events",
                   params={"since": api_time(since_ns), "until": api_time(until_ns)}, timeout=timeout_s)
    resp.raise_for_status()
    total, events = 0, []
    for line in resp.text.splitlines():
        if not line.strip():
            continue
        total += 1
        ev = event_from_dict(json.loads(line))
        if ev is not None:
            events.append(ev)
    return total, events


class EventStream:
    """Stream container events from the engine into a queue, in a daemon thread.

    Usage::

        q = queue.Queue()
        stream = EventStream(client, q, since=last_event_time)
        stream.start()
        item = q.get()  # model.EngineEvent, or EngineLost (then make a new stream)
        stream.close()

    Measured on Engine 20.10 here (``bench/observe.py`` step d): from the start
    of a kill API call to the ``die`` event on the queue, median 30 ms; the
    engine itself stamps the event about 28 ms after the kill, so the stream adds
    1-2 ms. (The kill call itself returns only after about 90 ms.)
    """

    def __init__(self, client: Any, out: queue.Queue, *, since: datetime | None = None,
                 ignore_exec: bool = True) -> None:
        """
        Args:
            client: a ``docker.DockerClient``.
            out: the queue that receives ``model.EngineEvent`` and ``EngineLost``.
            since: replay events from this time on (rounded down to the second,
                so a few events may be seen twice; consumers must be idempotent).
            ignore_exec: drop ``exec_*`` events (healthcheck execs).
        """
        self.client = client
        self.out = out
        self.since = since
        self.ignore_exec = ignore_exec
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Subscribe to the engine's events and start the reader thread.

        The subscription is open when this returns: events after it are seen.
        If the engine cannot be reached, an :class:`EngineLost` is put on the
        queue at once and no thread is started (nothing is raised).

        Raises:
            RuntimeError: ``start`` was already called.
        """
        with self._lock:
            if self._thread is not None or self._stream is not None or self._closing.is_set():
                raise RuntimeError("EventStream.start() called twice")
            since = int(self.since.timestamp()) if self.since is not None else None
            try:
                self._stream = self.client.events(decode=True, filters={"type": ["container"]},
                                                  since=since)
            except ENGINE_ERRORS as e:
                self.out.put(EngineLost(f"{type(e).__name__}: {e}"))
                return
            self._thread = threading.Thread(target=self._run, name="dockwarden-events", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        error = "event stream ended"
        try:
            for ev in self._stream:
                item = event_from_dict(ev)
                if item is None:
                    continue
                item = dataclasses.replace(item, received_at=model.utcnow())
                if self.ignore_exec and item.base_action.startswith("exec_"):
                    continue
                self.out.put(item)
        except Exception as e:  # noqa: BLE001 - any failure means the stream is lost
            error = f"{type(e).__name__}: {e}"
        if not self._closing.is_set():
            log.warning("engine event stream lost: %s", error)
            self.out.put(EngineLost(error))

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the stream and wait for the thread to exit.

        Closing puts no :class:`EngineLost` on the queue.

        Args:
            timeout_s: how long to wait for the thread, seconds.
        """
        self._closing.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception as e:  # noqa: BLE001 - already closed or broken socket
                log.debug("closing event stream: %s", e)
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        """Whether the reader thread is running."""
        return self._thread is not None and self._thread.is_alive()
