"""The daemon: Docker events + a resync timer drive the reconcile pipeline.

- A ``die``/``oom``/``health_status``/``stop``/``start`` event re-inspects just
  that container and runs a pass at once (milliseconds, no stats wait); the
  resync timer (``--resync``, default 30 s) runs a full observation with stats.
- ``stop``/``kill`` events that dockwarden did not cause are the operator's:
  they record intent ``stopped`` (source ``observed``); a later ``start`` by the
  operator records ``running``. Stops seen just before the engine went away
  are the engine shutting down, not the operator, and are taken back.
- When the engine goes away the daemon reconnects with backoff (0.5 s growing
  to 5 s) and resyncs when it is back.
- One instance per state dir (an ``flock`` on ``daemon.lock``); SIGTERM/SIGINT
  stop it cleanly; the inventory and policy are reloaded when their files
  change, and a broken file is rejected with an event while the last good
  configuration stays in force.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Sequence


from dockwarden.config import Settings
from dockwarden.config_watch import ConfigWatcher
from dockwarden.execute import Executor
from dockwarden.incidents import IncidentBook
from dockwarden.inventory import label_enabled, merge_labelled
from dockwarden.lock import acquire_lock
from dockwarden.model import EngineEvent, Event, EventType, Mode, ServiceSpec, WorldState, utcnow
from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver, connect
from dockwarden.observe.events import EngineLost, EventStream
from dockwarden.observe.host import HostSampler
from dockwarden.observe.world import observe_world, replace_containers, write_world
from dockwarden.operator_intent import OperatorIntent
from dockwarden.pipeline import PassResult, Reconciler
from dockwarden.reconcile.spikes import SpikeState, update_spikes
from dockwarden.recovery import RecoveryTracker
from dockwarden.sinks.events import EventLog
from dockwarden.sinks.notify import Notifier, NotifyWorker, Outbox
from dockwarden.store import Store
from dockwarden.worker import Worker, WorkerContext

log = logging.getLogger(__name__)

#: Container event actions that can change what the pipeline decides.
TRIGGER_ACTIONS = frozenset(
    {"die", "oom", "kill", "stop", "start", "restart", "health_status", "destroy", "create", "pause", "unpause", "rename"}
)
#: Delays between reconnect attempts while the engine is away. A failed connect to
#: a local socket costs microseconds, so the cap is low: a restarted engine is
#: noticed within 5 s (only the first failure is logged as an event).
RECONNECT_DELAYS_S = (0.5, 1, 1, 2, 3, 5)


class _Wake:
    """Queue sentinel: wake the loop (stop requested)."""


class Daemon:
    """The long-running supervisor of one node.

    Args:
        settings: state dir, inventory, policy, node.
        mode: overrides the policy's mode when given (``--mode``).
        resync_s: seconds between full observations (``--resync``).
        echo: called with each recorded event (console output).
    """

    def __init__(self, settings: Settings, *, mode: Mode | None = None, resync_s: float = 30.0,
                 echo: Callable[[Event], None] | None = None, workers: Sequence[Worker] = ()):
        self.settings = settings
        self.mode_override = mode
        self.resync_s = resync_s
        self.echo = echo
        self.queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self.client = None
        self.observer: ContainerObserver | None = None
        self.stream: EventStream | None = None
        self.sampler = HostSampler()
        self.world: WorldState | None = None
        self.docker_root_dir: str | None = None
        self.passes = 0
        self.workers: list[Worker] = list(workers)
        self.spikes = SpikeState()
        self.spike_drifts: list = []

    # ------------------------------------------------------------------ control

    def request_stop(self, *_: object) -> None:
        self._stop.set()
        self.queue.put(_Wake())

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def _emit(self, type_: EventType, reason: str, **kw) -> None:
        self.events.send(Event(type=type_, ts=utcnow(), node=self.desired_node, reason=reason, **kw))

    @property
    def desired_node(self) -> str:
        return self.reconciler.desired.node

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        """Run until stopped. Returns the process exit code.

        Raises:
            AlreadyRunning: another daemon holds the state dir.
            ConfigError: the inventory or policy is invalid at start.
        """
        state_dir = self.settings.state_dir
        lock = acquire_lock(state_dir)
        self.store = Store(state_dir / "dockwarden.db")
        self.events = EventLog(state_dir / "events.jsonl", self.store, self.echo)
        self.intent_reader = OperatorIntent(self.store, self._emit)
        self.recovery = RecoveryTracker(self.store, self._emit, self.settings.docker_host)
        self.config = ConfigWatcher(self.settings)
        policy, desired = self.config.load()
        self.incidents = IncidentBook(state_dir / "dockwarden.db", desired.node)
        self.reconciler = Reconciler(store=self.store, events=self.events, executor=None, policy=policy,
                                     desired=desired, mode=self.mode_override or policy.guardrails.mode,
                                     incidents=self.incidents)
        outbox = Outbox(state_dir / "dockwarden.db")
        notify_worker = NotifyWorker(outbox)
        self.events.subscribers.append(Notifier(outbox, lambda: self.reconciler.policy, notify_worker.kick).on_event)
        self.workers.append(notify_worker)
        self._emit(EventType.DAEMON_STARTED, f"dockwarden daemon started (pid {os.getpid()}), mode "
                   f"{self.reconciler.mode.value}, {len(desired.services)} services in the inventory",
                   details={"pid": os.getpid(), "mode": self.reconciler.mode.value, "resync_s": self.resync_s,
                            "services": sorted(desired.services)})
        ctx = WorkerContext(
            settings=self.settings, node=self.desired_node,
            policy=lambda: self.reconciler.policy, mode=lambda: self.reconciler.mode,
            world=lambda: self.world, emit=self.events.send, wake=lambda: self.queue.put(_Wake()),
        )
        for w in self.workers:
            w.start(ctx)
        next_resync = 0.0
        requeue_at: float | None = None
        reconnect_at = 0.0
        reconnect_attempt = 0
        try:
            while not self._stop.is_set():
                now_m = time.monotonic()
                if self.client is None and now_m >= reconnect_at:
                    if self._connect():
                        reconnect_attempt = 0
                        next_resync = 0.0
                    else:
                        delay = RECONNECT_DELAYS_S[min(reconnect_attempt, len(RECONNECT_DELAYS_S) - 1)]
                        reconnect_attempt += 1
                        reconnect_at = time.monotonic() + delay
                deadlines = [next_resync]
                if requeue_at is not None:
                    deadlines.append(requeue_at)
                if self.client is None:
                    deadlines.append(reconnect_at)
                timeout = max(0.0, min(deadlines) - time.monotonic())
                dirty: set[str] = set()
                lost = False
                try:
                    item = self.queue.get(timeout=timeout)
                    items = [item]
                    while True:
                        try:
                            items.append(self.queue.get_nowait())
                        except queue.Empty:
                            break
                except queue.Empty:
                    items = []
                woken = any(isinstance(i, _Wake) for i in items) and not self._stop.is_set()
                for item in items:
                    if isinstance(item, EngineEvent):
                        self._on_engine_event(item, dirty)
                    elif isinstance(item, EngineLost):
                        lost = True
                        self._on_engine_lost(item.error)
                if self._stop.is_set():
                    break
                now_m = time.monotonic()
                if lost or self.client is None:
                    if lost:
                        self._pass(self._offline_world())
                    continue
                full = now_m >= next_resync
                due = requeue_at is not None and now_m >= requeue_at
                if not (full or dirty or due or woken):
                    continue
                if full:
                    self._reload_config()
                    world = self._observe(with_stats=True)
                    next_resync = time.monotonic() + self.resync_s
                    if world is not None:
                        self._update_spikes(world)
                elif due or (woken and not dirty):
                    world = self._observe(with_stats=False)
                else:
                    world = self._refresh(dirty)
                if world is None:  # engine went away mid-observation
                    continue
                result = self._pass(world, full_pass=full)
                requeue_at = (time.monotonic() + result.requeue_after_s) if result.requeue_after_s is not None else None
        finally:
            for w in self.workers:
                try:
                    w.stop()
                except Exception as e:  # stopping must go on for the others
                    log.error("worker %s: stop failed: %s", getattr(w, "name", w), e)
            if self.stream is not None:
                self.stream.close()
            self._emit(EventType.DAEMON_STOPPED, f"dockwarden daemon stopped after {self.passes} passes")
            self.store.close()
            lock.close()
        return 0

    # ------------------------------------------------------------------ engine

    def _connect(self) -> bool:
        was_lost = self.store.checkpoint("engine") == "lost"
        try:
            client = connect(self.settings.docker_host)
            client.ping()
            observer = ContainerObserver(client)
            info = observer.engine_info()
        except ENGINE_ERRORS as e:
            log.warning("engine unreachable: %s", e)
            if self.world is None or self.world.engine_ok:
                self._pass(self._offline_world(str(e)))
                self._mark_engine_lost(str(e))
            return False
        self.client, self.observer = client, observer
        self.docker_root_dir = info.get("root_dir")
        self.reconciler.executor = Executor(client, stop_timeout_s=self.reconciler.policy.guardrails.stop_timeout_s)
        since = None
        cp = self.store.checkpoint("last_event_time")
        if cp:
            try:
                since = datetime.fromtimestamp(float(cp), tz=timezone.utc)
            except ValueError:
                since = None
        self.stream = EventStream(client, self.queue, since=since)
        self.stream.start()
        self.recovery.on_connect(was_lost=was_lost)
        if was_lost:
            self.store.set_checkpoint("engine", "ok")
            self._emit(EventType.ENGINE_RECONNECTED, f"Docker engine is back (server {info.get('server_version')}); resyncing",
                       details=info)
        else:
            self.store.set_checkpoint("engine", "ok")
        return True

    def _mark_engine_lost(self, error: str) -> None:
        if self.store.checkpoint("engine") != "lost":
            self.store.set_checkpoint("engine", "lost")
            self._emit(EventType.ENGINE_LOST, f"Docker engine unreachable: {error}; reconnecting with backoff",
                       details={"error": error})

    def _on_engine_lost(self, error: str) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = None
        if self.observer is not None:
            self.observer.close()  # its inspect/stats thread pools
        if self.client is not None:
            try:
                self.client.close()
            except Exception as e:  # a dead engine's connection may fail to close; nothing to keep
                log.debug("closing the old client: %s", e)
        self.client = None
        self.observer = None
        self.reconciler.executor = None
        self._mark_engine_lost(error)
        self.intent_reader.engine_lost()

    def _offline_world(self, error: str | None = None) -> WorldState:
        host = self.sampler.sample(["/"] + ([self.docker_root_dir] if self.docker_root_dir else []))
        return WorldState(node=self.desired_node, observed_at=utcnow(), host=host, containers=(),
                          engine_ok=False, engine_error=error or "Docker engine unreachable",
                          docker_root_dir=self.docker_root_dir)

    def _observe(self, *, with_stats: bool) -> WorldState | None:
        assert self.observer is not None
        world = observe_world(self.observer, self.sampler, node=self.desired_node, now=utcnow(),
                              with_stats=with_stats, docker_root_dir=self.docker_root_dir)
        if not world.engine_ok:
            self._on_engine_lost(world.engine_error or "observation failed")
            self._pass(world)
            return None
        return world

    def _refresh(self, dirty: set[str]) -> WorldState | None:
        """Re-inspect only the containers events named (fast path)."""
        if self.world is None or not self.world.engine_ok:
            return self._observe(with_stats=False)
        assert self.observer is not None
        updated, removed = [], []
        try:
            for cid in dirty:
                c = self.observer.inspect_one(cid)
                if c is None:
                    removed.append(cid)
                else:
                    updated.append(c)
        except ENGINE_ERRORS as e:
            self._on_engine_lost(str(e))
            return None
        world = replace_containers(self.world, updated, removed)
        return world

    # ------------------------------------------------------------------ events

    def _on_engine_event(self, ev: EngineEvent, dirty: set[str]) -> None:
        self.store.set_checkpoint("last_event_time", f"{ev.time.timestamp():.3f}")
        if ev.base_action not in TRIGGER_ACTIONS:
            return
        dirty.add(ev.container_id)
        spec = self._service_for(ev)
        if spec is not None:
            self.intent_reader.on_event(ev, spec)

    def _service_for(self, ev: EngineEvent) -> ServiceSpec | None:
        desired = self.reconciler.desired
        for spec in desired.services.values():
            if spec.compose_project:
                if (ev.attributes.get("com.docker.compose.project") == spec.compose_project
                        and ev.attributes.get("com.docker.compose.service") == (spec.compose_service or spec.name)):
                    return spec
            elif spec.container_name == ev.name:
                return spec
        if label_enabled(ev.attributes) is True:
            merged, _ = merge_labelled(desired, self.world.containers if self.world else ())
            return merged.services.get(ev.name)
        return None

    # ------------------------------------------------------------------ passes

    def _reload_config(self) -> None:
        changed, error = self.config.reload()
        if error:
            log.error("configuration rejected, keeping the last good one:\n%s", error)
            self._emit(EventType.CONFIG_REJECTED, f"configuration rejected, keeping the last good one: {error}",
                       details={"error": error})
        elif changed:
            assert self.config.policy is not None and self.config.desired is not None
            self.reconciler.policy = self.config.policy
            self.reconciler.desired = self.config.desired
            if self.mode_override is None:
                self.reconciler.mode = self.config.policy.guardrails.mode
            log.info("configuration reloaded: %d services", len(self.config.desired.services))

    def _worker_drifts(self) -> list:
        out = []
        for w in self.workers:
            try:
                out.extend(w.drifts())
            except Exception as e:  # one broken worker must not stop the pass
                log.error("worker %s: drifts() failed: %s", getattr(w, "name", w), e)
        return out

    def _update_spikes(self, world: WorldState) -> None:
        merged, _ = merge_labelled(self.reconciler.desired, world.containers)
        subjects = {s.container_name: n for n, s in merged.services.items() if not s.compose_project}
        for n, s in merged.services.items():
            if s.compose_project:
                for c in world.containers:
                    if c.compose_project == s.compose_project and c.compose_service == (s.compose_service or n):
                        subjects[c.name] = n
        self.spikes, self.spike_drifts = update_spikes(self.spikes, world, self.reconciler.policy.spikes, subjects)

    def _pass(self, world: WorldState, full_pass: bool = True) -> PassResult:
        self.world = world
        now = utcnow()
        result = self.reconciler.run_pass(world, now=now, extra_drifts=self._worker_drifts() + self.spike_drifts,
                                          full_pass=full_pass)
        if world.engine_ok:
            self.recovery.after_pass(self.reconciler.desired, world, now, self.reconciler.policy.recovery.timeout_s)
        self.passes += 1
        for w in self.workers: getattr(w, "after_pass", lambda _result: None)(result)  # e.g. the storage journal
        try:
            write_world(world, self.settings.state_dir / "world.json")
        except OSError as e:
            log.error("world.json: cannot write: %s", e)
        return result
