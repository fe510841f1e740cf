"""Is the engine alive, and did it restart? Answers that the event stream alone
cannot give.

* :class:`EngineWatch` pings ``/_ping`` on its own connection: every
  ``interval_s`` while the engine is up (an event stream over a dead or frozen
  link can stay silent forever, issue 8), every ``lost_interval_s`` while it is
  away, so a restarted local engine is noticed within a quarter of a second (a
  failed connect to a local socket costs microseconds; issue 9).
* :func:`manually_stopped` reads Docker's own answer to "did someone stop this
  container on purpose?": ``HasBeenManuallyStopped`` in
  ``<docker root>/containers/<id>/config.v2.json``, the flag behind
  ``unless-stopped``. Verified on Engine 20.10 (issue 8): true after ``docker
  stop`` (any stop signal) and ``docker kill``; false after a ``kill -9`` of the
  process from the host; after an engine restart, false for containers the
  engine stopped and true for those the operator had stopped. Not part of the
  API: readable only as root on the engine's host.
* :func:`engine_remembers` asks the engine to replay the last event we saw. The
  engine keeps recent events in memory only, so an engine that restarted no
  longer has it: evidence of a restart for a remote engine, where the process
  start time cannot be read.
"""

from __future__ import annotations

import json
import os
import logging
import queue
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import docker

from dockwarden import ssh_transport
from dockwarden.observe.docker import ENGINE_ERRORS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineDown:
    """Put on the queue when the liveness check fails while the engine was up."""

    error: str


@dataclass(frozen=True)
class EngineUp:
    """Put on the queue when the engine answers again after being away."""


class EngineWatch:
    """Pings the engine on its own connection and reports changes to a queue.

    Args:
        base_url: the engine's address (None: ``DOCKER_HOST`` / the default socket).
        out: receives :class:`EngineDown` and :class:`EngineUp`.
        interval_s: seconds between pings while the engine is up.
        lost_interval_s: seconds between pings while it is away.
        timeout_s: a ping slower than this counts as a failure (a frozen engine).
    """

    def __init__(self, base_url: str | None, out: queue.Queue, *, interval_s: float = 2.0,
                 lost_interval_s: float = 0.25, timeout_s: float = 2.0,
                 make_client: Callable[[], Any] | None = None):
        self.base_url = base_url
        self.make_client = make_client  # e.g. connect_node for tls/ssh engines
        self.out = out
        self.interval_s = interval_s
        self.lost_interval_s = lost_interval_s
        self.timeout_s = timeout_s
        self._up = False
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        #: Called with each heartbeat's result (None: answered; else why not), from the watch's thread.
        self.on_beat: Callable[[str | None], None] | None = None

    def set_up(self, up: bool) -> None:
        """Tell the watch what the daemon believes (connected or not)."""
        self._up = up
        self._kick.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dockwarden-liveness", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=3)

    def _ping(self) -> str | None:
        """None when the engine answered, else why not."""
        try:
            if self._client is None:
                if self.make_client is not None:
                    self._client = self.make_client().api  # closes itself when it cannot connect
                else:
                    kw: dict[str, Any] = {"timeout": self.timeout_s, "version": "1.24"}
                    ssh_transport.ensure_loaded(self.base_url or os.environ.get("DOCKER_HOST"))
                    self._client = (docker.APIClient(base_url=self.base_url, **kw) if self.base_url
                                    else docker.APIClient(**{**docker.utils.kwargs_from_env(), **kw}))
            self._client.ping()
            return None
        except ENGINE_ERRORS as e:
            self._reset()
            return f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - a broken client is a failed ping, never a dead thread
            self._reset()
            return f"{type(e).__name__}: {e}"

    def _reset(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception as e:  # noqa: BLE001 - already broken
                log.debug("liveness client close: %s", e)
        self._client = None

    def _run(self) -> None:
        reported_down = False
        while not self._stop.is_set():
            up = self._up
            self._kick.clear()
            err = self._ping()
            if up and err is not None and not reported_down:
                reported_down = True
                self.out.put(EngineDown(f"liveness check failed: {err}"))
            elif not up and err is None:
                self.out.put(EngineUp())
            if self.on_beat is not None:
                self.on_beat(err)
            if up and err is None:
                reported_down = False
            self._kick.wait(self.interval_s if self._up else self.lost_interval_s)
        self._reset()


def manually_stopped(root_dir: str | None, container_id: str | None) -> bool | None:
    """Docker's ``HasBeenManuallyStopped`` for a container, or None when unknown.

    Args:
        root_dir: the engine's ``DockerRootDir`` (e.g. ``/var/lib/docker``).
        container_id: the full container id.
    Returns:
        bool | None: the flag; None when the file or the field is missing or
        unreadable (a remote engine, not root, another engine version).
    """
    if not root_dir or not container_id or "/" in container_id or container_id.startswith("."):
        return None
    path = Path(root_dir) / "containers" / container_id / "config.v2.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = doc.get("HasBeenManuallyStopped") if isinstance(doc, dict) else None
    return value if isinstance(value, bool) else None


@dataclass(frozen=True)
class EventMark:
    """Identifies one engine event: its time (UTC), container id and action."""

    time: datetime
    container_id: str
    action: str

    def to_json(self) -> str:
        return json.dumps({"time": self.time.timestamp(), "id": self.container_id, "action": self.action})

    @staticmethod
    def from_json(text: str | None) -> "EventMark | None":
        if not text:
            return None
        try:
            d = json.loads(text)
            from datetime import timezone

            return EventMark(datetime.fromtimestamp(float(d["time"]), timezone.utc), str(d["id"]), str(d["action"]))
        except (ValueError, KeyError, TypeError):
            return None


def engine_remembers(client: Any, mark: EventMark, *, timeout_s: float = 3.0) -> bool | None:
    """Whether the engine can still replay the event ``mark`` (so it did not
    restart since we saw it).

    Asks ``GET /events?since=<mark-1s>&until=<mark+1s>`` (the engine answers
    from its in-memory buffer of recent events and closes the stream at
    ``until``).

    Returns:
        bool | None: True when the event is replayed; False when the replay
        works but lacks it (the engine restarted, or more events than its
        buffer holds happened since); None when the engine cannot be asked.
    """
    from dockwarden.observe.events import replay_window

    since = mark.time - timedelta(seconds=1)
    until = mark.time + timedelta(seconds=1)
    try:
        _, replayed = replay_window(client, int(since.timestamp()) * 10**9, (int(until.timestamp()) + 1) * 10**9,
                                    timeout_s=timeout_s)
        return any(ev.container_id == mark.container_id and ev.action == mark.action
                   and abs((ev.time - mark.time).total_seconds()) < 0.001 for ev in replayed)
    except (*ENGINE_ERRORS, ValueError) as e:
        log.debug("replay check failed: %s", e)
        return None
