"""The daemon: one process supervising one node, or several (issue 11).

Each node has its own loop (:class:`~dockwarden.node_loop.NodeLoop`: engine
connection, event stream, heartbeat, observation and reconcile passes) in its
own thread; one node that hangs, is slow or is offline never delays another.
The daemon owns what they share:

- the single-instance lock (an ``flock`` on ``<state-dir>/daemon.lock``);
- the event log (``events.jsonl`` + SQLite) and the notification outbox;
- the configuration: the inventory (all nodes) and the policy, reloaded when
  their files change; a broken file is rejected with an event while the last
  good configuration stays in force;
- the background workers (storage, pool, retention, notifications), which
  belong to the first node (the local one);
- with several nodes, the fleet (``fleet.py``): the fleet status and failover.

SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Callable, Sequence

from dockwarden.api.server import NO_API, DaemonView, start_api  # issue 10: the HTTP API
from dockwarden.config import Settings
from dockwarden.config_watch import ConfigWatcher
from dockwarden.fleet import FailoverBook, Fleet
from dockwarden.lock import acquire_lock
from dockwarden.model import Event, EventType, Mode, WorldState, utcnow
from dockwarden.node_loop import NodeLoop, Shared
from dockwarden.sdnotify import SystemdReporter  # issue 12: sd_notify (READY, WATCHDOG, STATUS, STOPPING)
from dockwarden.sinks.events import EventLog
from dockwarden.sinks.notify import Notifier, NotifyWorker, Outbox
from dockwarden.store import Store
from dockwarden.worker import Worker, WorkerContext

log = logging.getLogger(__name__)

#: How often the daemon's own loop looks at the configuration files and the
#: fleet (failovers), seconds.
TICK_S = 1.0


class Daemon:
    """The long-running supervisor.

    Args:
        settings: state dir, inventory, policy, node.
        mode: overrides the policy's mode when given (``--mode``).
        resync_s: seconds between full observations (``--resync``).
        echo: called with each recorded event (console output).
        workers: background workers started beside the loops.
        nodes: the nodes to supervise (``--node a --node b``, ``all``); None:
            ``settings.node`` (or the inventory's only node).
    """

    def __init__(self, settings: Settings, *, mode: Mode | None = None, resync_s: float = 30.0,
                 echo: Callable[[Event], None] | None = None, workers: Sequence[Worker] = (),
                 nodes: Sequence[str] | None = None, listen: str | None = None):
        self.settings = settings
        self.mode_override = mode
        self.resync_s = resync_s
        self.echo = echo
        self.workers: list[Worker] = list(workers)
        self.wanted_nodes = list(nodes) if nodes else None
        self.listen = listen  # --listen / DOCKWARDEN_LISTEN (None: the policy's [api] listen)
        self.api = NO_API  # the HTTP API's handle (beat, publish, stop)
        self._stop = threading.Event()
        self.loops: dict[str, NodeLoop] = {}
        self.fleet: Fleet | None = None
        self.systemd = SystemdReporter.from_env(resync_s=resync_s)  # issue 12: a no-op without NOTIFY_SOCKET

    # ------------------------------------------------------------------ control

    def request_stop(self, *_: object) -> None:
        self._stop.set()
        for lp in self.loops.values():
            lp.wake()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    @property
    def primary(self) -> NodeLoop:
        """The first node's loop (the local node: its workers, its world.json)."""
        return next(iter(self.loops.values()))

    # single-node views, used by the API and tests
    @property
    def world(self) -> WorldState | None:
        return self.primary.world if self.loops else None

    @property
    def ready(self) -> bool:
        return bool(self.loops) and all(lp.ready for lp in self.loops.values())

    def _mode(self) -> Mode:
        assert self.config.policy is not None
        return self.mode_override or self.config.policy.guardrails.mode

    def _emit(self, node: str, type_: EventType, reason: str, **kw) -> None:
        try:
            self.events.send(Event(type=type_, ts=utcnow(), node=node, reason=reason, **kw))
        except Exception as e:  # the event log failing must not stop supervision
            log.error("cannot record %s: %s", type_.value, e)

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        """Run until stopped. Returns the process exit code.

        Raises:
            AlreadyRunning: another daemon holds the state dir.
            ConfigError: the inventory, a node.yaml or the policy is invalid at start.
        """
        state_dir = self.settings.state_dir
        lock = acquire_lock(state_dir)
        self.config = ConfigWatcher(self.settings, self.wanted_nodes)
        policy, _ = self.config.load()
        names = list(self.config.nodes)
        self.store = Store(state_dir / "dockwarden.db", names[0])
        ret = policy.retention
        self.events = EventLog(state_dir / "events.jsonl", self.store, self.echo,
                               max_bytes=ret.events_jsonl_max_bytes, rotated_files=ret.events_jsonl_rotated_files)
        self.outbox = Outbox(state_dir / "dockwarden.db")
        notify_worker = NotifyWorker(self.outbox)
        self.events.subscribers.append(Notifier(self.outbox, lambda: self.config.policy, notify_worker.kick).on_event)
        self.workers.append(notify_worker)
        several = len(names) > 1
        shared = Shared(settings=self.settings, events=self.events, stop=self._stop,
                        policy=lambda: self.config.policy, mode=self._mode, outbox=self.outbox, several=several,
                        api=lambda: self.api)
        for i, n in enumerate(names):
            self.loops[n] = NodeLoop(shared, self.config.node_configs[n], self.config.nodes[n],
                                     resync_s=self.resync_s, workers=self.workers if i == 0 else (),
                                     primary=i == 0)
        if several:
            self.fleet = shared.fleet = Fleet(self.loops, self.events.send, state_dir,
                                              FailoverBook(state_dir / "dockwarden.db"))
        for n in names:
            d = self.config.nodes[n]
            self._emit(n, EventType.DAEMON_STARTED,
                       f"dockwarden daemon started (pid {os.getpid()}), mode {self._mode().value}, "
                       f"{len(d.services)} services in the inventory" + (f" of node {n}" if several else ""),
                       details={"pid": os.getpid(), "mode": self._mode().value, "resync_s": self.resync_s,
                                "services": sorted(d.services), "nodes": names})
        primary = self.loops[names[0]]
        ctx = WorkerContext(
            settings=self.settings, node=names[0],
            policy=lambda: self.config.policy, mode=self._mode,
            world=lambda: primary.world, emit=self.events.send, wake=primary.wake,
            recovering=lambda: primary.recovering,
        )
        try:
            for w in self.workers:
                w.start(ctx)
            # The HTTP API, in its own thread; it reads the snapshot the first node's passes publish.
            self.api = start_api(DaemonView(
                settings=self.settings, listen=self.listen, resync_s=self.resync_s, node=primary.name,
                policy=lambda: self.config.policy, desired=primary.desired,
                ready=lambda: self.ready, events=self.events, workers=self.workers,
                world=lambda: primary.world if primary.world is not None and primary.world.engine_ok else None,
                other_nodes=lambda: [lp.status_doc for lp in self.loops.values()
                                     if lp is not primary and lp.status_doc is not None]))
            for lp in self.loops.values():
                lp.start()
            self._loop()
        finally:
            self._shutdown(lock)
        return 0

    def _loop(self) -> None:
        while not self._stop.wait(self.systemd.tick_s(TICK_S)):  # issue 12: a tick per watchdog half-period
            self.systemd.tick(self.loops)  # issue 12: READY once, STATUS, WATCHDOG while every loop goes round
            self._reload_config()
            if self.fleet is not None:
                try:
                    self.fleet.tick(utcnow())
                except Exception:  # failover is best effort; the next tick tries again
                    log.exception("fleet tick failed")

    def _reload_config(self) -> None:
        changed, error = self.config.reload()
        if error:
            log.error("configuration rejected, keeping the last good one:\n%s", error)
            for n in self.loops:
                self._emit(n, EventType.CONFIG_REJECTED,
                           f"configuration rejected, keeping the last good one: {error}", details={"error": error})
                break
        elif changed:
            assert self.config.policy is not None
            ret = self.config.policy.retention
            self.events.set_rotation(max_bytes=ret.events_jsonl_max_bytes, rotated_files=ret.events_jsonl_rotated_files)
            for n, lp in self.loops.items():
                lp.apply_config(self.config.nodes[n], self.config.node_configs[n])
                lp.wake()
            log.info("configuration reloaded: %s", {n: len(d.services) for n, d in self.config.nodes.items()})

    def _shutdown(self, lock) -> None:
        self.systemd.stopping()  # issue 12: STOPPING=1
        self._stop.set()
        self.api.stop()
        for lp in self.loops.values():
            lp.wake()
        for lp in self.loops.values():
            lp.join(15)
        for w in self.workers:
            try:
                w.stop()
            except Exception as e:  # stopping must go on for the others
                log.error("worker %s: stop failed: %s", getattr(w, "name", w), e)
        passes = sum(lp.passes for lp in self.loops.values())
        for n in self.loops:
            self._emit(n, EventType.DAEMON_STOPPED, f"dockwarden daemon stopped after {passes} passes")
            break
        self.store.close()
        self.systemd.close()  # issue 12
        lock.close()
