"""The daemon: Docker events + a resync timer drive the reconcile pipeline.

- A container event re-inspects just that container and runs a pass at once
  (milliseconds, no stats wait); the resync timer (``--resync``, default 30 s)
  runs a full observation with stats.
- Events are read for the operator's intent (``operator_intent``: the sequence
  ``kill`` -> ``die`` -> ``stop`` of one container, not single events), between
  and during actions: actions run off the loop (``actions.ActionRunner``), one
  per service at a time, so a long ``compose up`` never stops the loop.
- A pass that raises never kills the daemon (controller-runtime's per-reconcile
  recovery): it emits ``pass_failed`` and is retried with backoff.
- The engine is watched on its own connection (``observe.liveness``): a silent
  or frozen stream is noticed within seconds, a restarted engine within a
  quarter of a second. Stops read as the operator's are taken back only on
  evidence that the engine itself restarted (``OperatorIntent.reconsider_stops``).
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
from datetime import datetime
from typing import Any, Callable, Sequence

from dockwarden.actions import ActionDone, ActionProtocol, ActionRunner, error_digest
from dockwarden.api.server import NO_API, DaemonView, start_api  # issue 10: the HTTP API
from dockwarden.config import Settings
from dockwarden.config_watch import ConfigWatcher
from dockwarden.execute import Executor
from dockwarden.incidents import IncidentBook
from dockwarden.lock import acquire_lock
from dockwarden.inventory import merge_labelled
from dockwarden.model import ActionBy, Drift, EngineEvent, Event, EventType, Mode, WorldState, parse_time, utcnow
from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver, connect
from dockwarden.observe.events import EngineLost, EventStream, event_from_dict
from dockwarden.observe.host import HostSampler
from dockwarden.observe.liveness import EngineDown, EngineUp, EngineWatch, EventMark, engine_remembers, manually_stopped
from dockwarden.observe.world import observe_world, replace_containers, unreported_changes, write_world
from dockwarden.operator_intent import OperatorIntent
from dockwarden.pipeline import PassResult, Reconciler
from dockwarden.reconcile.backoff import exponential_delay_s
from dockwarden.reconcile.drift import state_write_drift
from dockwarden.reconcile.resolve import ServiceIndex
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
#: Reconnect backoff while the engine is away: 0.5 s doubling to 5 s. The
#: liveness watch wakes the loop as soon as the engine answers, so this only
#: paces attempts that fail after a ping succeeded.
RECONNECT_INITIAL_S, RECONNECT_MAX_S = 0.5, 5.0
#: Backoff of a pass that raised: 0.5 s doubling to 30 s.
PASS_RETRY_INITIAL_S, PASS_RETRY_MAX_S = 0.5, 30.0
#: A container change older than this, seen by a full observation with no event
#: for it, means the event stream missed it (seconds).
STALE_STREAM_AFTER_S = 3.0
#: Events remembered to drop duplicates of a replay (bounded memory).
RECENT_EVENTS_KEPT = 1024


class _Wake:
    """Queue sentinel: wake the loop (stop requested, or a worker asked)."""


class Daemon:
    """The long-running supervisor of one node.

    Args:
        settings: state dir, inventory, policy, node.
        mode: overrides the policy's mode when given (``--mode``).
        resync_s: seconds between full observations (``--resync``).
        echo: called with each recorded event (console output).
        workers: background workers started beside the loop.
    """

    def __init__(self, settings: Settings, *, mode: Mode | None = None, resync_s: float = 30.0,
                 echo: Callable[[Event], None] | None = None, workers: Sequence[Worker] = (),
                 listen: str | None = None):
        self.settings = settings
        self.listen = listen  # issue 10: --listen / DOCKWARDEN_LISTEN (None: the policy's [api] listen)
        self.api = NO_API  # issue 10: the HTTP API's handle (beat, publish, stop)
        self.mode_override = mode
        self.resync_s = resync_s
        self.echo = echo
        self.queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self.client: Any = None
        self.observer: ContainerObserver | None = None
        self.stream: EventStream | None = None
        self.sampler = HostSampler()
        self.world: WorldState | None = None
        self.docker_root_dir: str | None = None
        self.passes = 0
        self.workers: list[Worker] = list(workers)
        self.spikes = SpikeState()
        self.spike_drifts: list = []
        self.services: ServiceIndex | None = None
        self.ready = False
        self._connected_once = False
        self._seen_since_full: set[str] = set()
        self._last_mark: EventMark | None = None
        self._recent_events: dict[tuple, None] = {}  # insertion-ordered, bounded

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

    # ------------------------------------------------------------------ setup

    def _setup(self) -> None:
        state_dir = self.settings.state_dir
        self.config = ConfigWatcher(self.settings)
        policy, desired = self.config.load()
        self.store = Store(state_dir / "dockwarden.db")
        ret = policy.retention
        self.events = EventLog(state_dir / "events.jsonl", self.store, self.echo,
                               max_bytes=ret.events_jsonl_max_bytes, rotated_files=ret.events_jsonl_rotated_files)
        self.intent_reader = OperatorIntent(self.store, self._emit)
        self.recovery = RecoveryTracker(self.store, self._emit, self.settings.docker_host)
        self.incidents = IncidentBook(state_dir / "dockwarden.db", desired.node)
        self.protocol = ActionProtocol(self.store, self.events.send, desired.node, by=ActionBy.DAEMON,
                                       stop_timeout_s=policy.guardrails.stop_timeout_s)
        self.runner = ActionRunner(self.protocol, self.queue)
        self.reconciler = Reconciler(store=self.store, events=self.events, executor=None, policy=policy,
                                     desired=desired, mode=self.mode_override or policy.guardrails.mode,
                                     incidents=self.incidents, protocol=self.protocol, runner=self.runner)
        self.outbox = outbox = Outbox(state_dir / "dockwarden.db")
        notify_worker = NotifyWorker(outbox)
        self.events.subscribers.append(Notifier(outbox, lambda: self.reconciler.policy, notify_worker.kick).on_event)
        self.workers.append(notify_worker)
        self.watch = EngineWatch(self.settings.docker_host, self.queue)

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        """Run until stopped. Returns the process exit code.

        Raises:
            AlreadyRunning: another daemon holds the state dir.
            ConfigError: the inventory or policy is invalid at start.
        """
        lock = acquire_lock(self.settings.state_dir)
        self._setup()
        closed = self.protocol.close_interrupted(starting=True)
        self._emit(EventType.DAEMON_STARTED, f"dockwarden daemon started (pid {os.getpid()}), mode "
                   f"{self.reconciler.mode.value}, {len(self.reconciler.desired.services)} services in the inventory",
                   details={"pid": os.getpid(), "mode": self.reconciler.mode.value, "resync_s": self.resync_s,
                            "services": sorted(self.reconciler.desired.services),
                            "interrupted_actions_closed": closed})
        ctx = WorkerContext(
            settings=self.settings, node=self.desired_node,
            policy=lambda: self.reconciler.policy, mode=lambda: self.reconciler.mode,
            world=lambda: self.world, emit=self.events.send, wake=lambda: self.queue.put(_Wake()),
        )
        for w in self.workers:
            w.start(ctx)
        self.watch.start()
        try:
            # --- issue 10: the HTTP API (its own thread; reads the snapshot each pass publishes) ---
            self.api = start_api(DaemonView(
                settings=self.settings, listen=self.listen, resync_s=self.resync_s, node=self.desired_node,
                policy=lambda: self.reconciler.policy, desired=lambda: self.reconciler.desired,
                mode=lambda: self.reconciler.mode, ready=lambda: self.ready, events=self.events, workers=self.workers,
                world=lambda: self.world if self.world is not None and self.world.engine_ok else None))
            self._loop()
        finally:
            self._shutdown(lock)
        return 0

    def _loop(self) -> None:
        next_resync = 0.0
        requeue_at: float | None = None
        reconnect_at = 0.0
        reconnect_attempt = 0
        pass_failures = 0
        retry_at: float | None = None
        while not self._stop.is_set():
            self.api.beat()  # issue 10: the loop's heartbeat for /healthz
            if self.client is None and time.monotonic() >= reconnect_at:
                if self._connect():
                    reconnect_attempt = 0
                    next_resync = 0.0
                else:
                    reconnect_attempt += 1
                    reconnect_at = time.monotonic() + exponential_delay_s(
                        reconnect_attempt, RECONNECT_INITIAL_S, RECONNECT_MAX_S)
            deadlines = [next_resync]
            for d in (requeue_at, retry_at, reconnect_at if self.client is None else None):
                if d is not None:
                    deadlines.append(d)
            items = self._next_items(max(0.0, min(deadlines) - time.monotonic()))
            dirty: set[str] = set()
            lost: str | None = None
            woken = False
            for item in items:
                if isinstance(item, EngineEvent):
                    self._guarded("engine event", self._on_engine_event, item, dirty)
                elif isinstance(item, (EngineLost, EngineDown)):
                    lost = item.error
                elif isinstance(item, EngineUp):
                    reconnect_at = 0.0
                elif isinstance(item, ActionDone):
                    self._guarded("action result", self.reconciler.on_action_done, item.rec, item.outcome,
                                  item.context)
                    dirty.add(item.rec.container_id or item.rec.container)
                elif isinstance(item, _Wake):
                    woken = True
            if self._stop.is_set():
                break
            if lost is not None and self.client is not None:
                self._on_engine_lost(lost)
                self._guarded_pass(self._offline_world(lost))
                reconnect_at = 0.0
                continue
            if self.client is None:
                continue
            now_m = time.monotonic()
            full = now_m >= next_resync
            due = requeue_at is not None and now_m >= requeue_at
            retry = retry_at is not None and now_m >= retry_at
            if not (full or dirty or due or woken or retry):
                continue
            try:
                result = self._one_pass(full=full, dirty=dirty, cheap=(due or woken or retry) and not dirty)
            except Exception as e:  # a pass never kills the daemon (controller-runtime's recovery)
                pass_failures += 1
                delay = exponential_delay_s(pass_failures, PASS_RETRY_INITIAL_S, PASS_RETRY_MAX_S)
                retry_at = time.monotonic() + delay
                log.exception("pass failed (%d in a row); retrying in %.1f s", pass_failures, delay)
                self._emit_safely(EventType.PASS_FAILED, f"a reconcile pass failed ({error_digest(e)}); "
                                  f"retrying in {delay:.1f} s", details={"failures": pass_failures,
                                                                        "retry_in_s": delay})
                if full:
                    next_resync = time.monotonic() + self.resync_s
                continue
            pass_failures, retry_at = 0, None
            if full:
                next_resync = time.monotonic() + self.resync_s
            if result is not None:
                requeue_at = ((time.monotonic() + result.requeue_after_s)
                              if result.requeue_after_s is not None else None)

    def _next_items(self, timeout: float) -> list:
        try:
            items = [self.queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                return items

    def _one_pass(self, *, full: bool, dirty: set[str], cheap: bool) -> PassResult | None:
        if full:
            self._reload_config()
            world = self._observe(with_stats=True)
            if world is not None:
                self._check_stream(world)
                self._update_spikes(world)
        elif cheap:
            world = self._observe(with_stats=False)
        else:
            world = self._refresh(dirty)
        if world is None:  # the engine went away mid-observation
            return None
        result = self._pass(world, full_pass=full)
        if not self.ready:
            self.ready = True
            self._emit(EventType.DAEMON_READY, "dockwarden is ready: engine connected, events subscribed, "
                       "first pass done", details={"services": len(result.evaluation.desired.services)})
        return result

    def _guarded(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """Run one handler; an exception is logged and reported, never fatal."""
        try:
            fn(*args)
        except Exception as e:  # one bad event must not kill the daemon
            log.exception("%s failed", what)
            self._emit_safely(EventType.PASS_FAILED, f"handling an {what} failed: {error_digest(e)}",
                              details={"stage": what})

    def _guarded_pass(self, world: WorldState) -> None:
        try:
            self._pass(world)
        except Exception as e:  # the offline pass only records; never fatal
            log.exception("offline pass failed")
            self._emit_safely(EventType.PASS_FAILED, f"a reconcile pass failed ({error_digest(e)})")

    def _emit_safely(self, type_: EventType, reason: str, **kw: Any) -> None:
        try:
            self._emit(type_, reason, **kw)
        except Exception as e:  # the event log itself failing must not stop supervision
            log.error("cannot record %s: %s", type_.value, e)

    def _shutdown(self, lock: Any) -> None:
        self.api.stop()  # issue 10
        self.watch.stop()
        self.runner.shutdown(wait_s=10.0)
        for w in self.workers:
            try:
                w.stop()
            except Exception as e:  # stopping must go on for the others
                log.error("worker %s: stop failed: %s", getattr(w, "name", w), e)
        if self.stream is not None:
            self.stream.close()
        self._emit_safely(EventType.DAEMON_STOPPED, f"dockwarden daemon stopped after {self.passes} passes")
        self.store.close()
        lock.close()

    # ------------------------------------------------------------------ engine

    def _connect(self) -> bool:
        was_lost = self.store.checkpoint("engine") == "lost"
        first = not self._connected_once
        try:
            client = connect(self.settings.docker_host)
            client.ping()
            observer = ContainerObserver(client)
            info = observer.engine_info()
        except ENGINE_ERRORS as e:
            log.warning("engine unreachable: %s", e)
            if self.world is None or self.world.engine_ok:
                self._guarded_pass(self._offline_world(str(e)))
                self._mark_engine_lost(str(e))
            return False
        self.client, self.observer = client, observer
        self._connected_once = True
        self.docker_root_dir = info.get("root_dir")
        self.reconciler.executor = Executor(client, stop_timeout_s=self.reconciler.policy.guardrails.stop_timeout_s)
        self._last_mark = EventMark.from_json(self.store.checkpoint("last_event"))
        restarted = self._engine_restarted(client)
        rebooted = self.recovery.host_rebooted() if first else False
        # Before the first pass may act: what happened while we were not watching.
        world = observe_world(observer, self.sampler, node=self.desired_node, now=utcnow(), with_stats=False,
                              docker_root_dir=self.docker_root_dir)
        if not world.engine_ok:
            self._on_engine_lost(world.engine_error or "observation failed")
            return False
        merged, _ = merge_labelled(self.reconciler.desired, world.containers)
        self.services = ServiceIndex(merged)
        self.world = world
        if first or was_lost:
            decided = self.intent_reader.reconsider_stops(
                engine_restarted=restarted or rebooted,
                last_seen=self._last_mark.time if self._last_mark else None,
                manually_stopped=lambda cid: manually_stopped(self.docker_root_dir, cid))
            if decided["taken_back"] or decided["kept"]:
                log.info("remembered stops: taken back %s, kept %s", decided["taken_back"], decided["kept"])
        until = parse_time(info.get("system_time")) or utcnow()
        if self._last_mark is not None and not restarted:
            self._replay(client, self._last_mark.time, until)
        if self._last_mark is not None:
            self.intent_reader.adopt_unseen_stops(merged, world, since=self._last_mark.time,
                                                  manually_stopped=lambda cid: manually_stopped(
                                                      self.docker_root_dir, cid))
        self.stream = EventStream(client, self.queue, since=until)
        self.stream.start()
        self.watch.set_up(True)
        self.recovery.on_connect(host_rebooted=rebooted, engine_restarted=restarted)
        self.store.set_checkpoint("engine", "ok")
        if was_lost:
            self._emit(EventType.ENGINE_RECONNECTED,
                       f"Docker engine is back (server {info.get('server_version')}); "
                       + ("it restarted; " if restarted else "same engine process; ") + "resyncing",
                       details={**info, "engine_restarted": restarted})
        return True

    def _replay(self, client: Any, since: datetime, until: datetime) -> None:
        """Read the events we missed (``since`` the last one seen, ``until`` the
        engine's now) synchronously, before any pass can act on their result."""
        try:
            docs = client.api.events(since=int(since.timestamp()), until=int(until.timestamp()) + 1, decode=True,
                                     filters={"type": ["container"]})
            replayed = [e for e in (event_from_dict(d) for d in docs) if e is not None]
        except ENGINE_ERRORS as e:
            log.warning("cannot replay missed events: %s", e)
            return
        for ev in replayed:
            if not ev.base_action.startswith("exec_") and ev.time >= since:
                self._guarded("replayed event", self._on_engine_event, ev, set())

    def _engine_restarted(self, client: Any) -> bool | None:
        """Evidence that the engine restarted since we last saw it: the local
        ``dockerd`` started again (psutil), else (remote) the engine no longer
        remembers the last event we saw. None when there is no evidence either way."""
        local = self.recovery.engine_start_changed()
        if local is not None:
            return local
        if self._last_mark is None:
            return None
        remembers = engine_remembers(client, self._last_mark)
        return None if remembers is None else not remembers

    def _mark_engine_lost(self, error: str) -> None:
        if self.store.checkpoint("engine") != "lost":
            self.store.set_checkpoint("engine", "lost")
            self._emit(EventType.ENGINE_LOST, f"Docker engine unreachable: {error}; reconnecting with backoff",
                       details={"error": error})

    def _on_engine_lost(self, error: str) -> None:
        self.watch.set_up(False)
        if self.stream is not None:
            self.stream.close(timeout_s=0.2)
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
            self._guarded_pass(world)
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
        return replace_containers(self.world, updated, removed)

    def _check_stream(self, world: WorldState) -> None:
        """A full observation that finds container changes the event stream never
        reported means the stream went silent: resubscribe, replaying from the
        last event seen (issue 8: a half-open stream must not go unnoticed)."""
        before, seen = self.world, self._seen_since_full
        self._seen_since_full = set()
        if before is None or not before.engine_ok or self.stream is None:
            return
        missed = unreported_changes(before, world, seen, settle_s=STALE_STREAM_AFTER_S)
        if not missed:
            return
        self._emit(EventType.STREAM_STALE, f"the event stream missed changes of {len(missed)} container(s) "
                   f"({', '.join(missed[:5])}); resubscribing with replay", details={"missed": missed[:50]})
        self.stream.close(timeout_s=0.2)
        since = self._last_mark.time if self._last_mark is not None else None
        self.stream = EventStream(self.client, self.queue, since=since)
        self.stream.start()

    # ------------------------------------------------------------------ events

    def _on_engine_event(self, ev: EngineEvent, dirty: set[str]) -> None:
        key = (ev.time, ev.container_id, ev.action)
        if key in self._recent_events:
            return  # replayed twice (a replay overlaps the live stream by up to a second)
        self._recent_events[key] = None
        if len(self._recent_events) > RECENT_EVENTS_KEPT:
            self._recent_events.pop(next(iter(self._recent_events)))
        self._last_mark = EventMark(ev.time, ev.container_id, ev.action)
        self._seen_since_full.add(ev.container_id)
        if ev.base_action not in TRIGGER_ACTIONS:
            return
        self.store.set_checkpoint("last_event", self._last_mark.to_json())
        dirty.add(ev.container_id)
        if self.services is None:
            return
        spec = self.services.service_of(ev.name, ev.attributes)
        if spec is not None:
            container = self.world.index.by_id.get(ev.container_id) if self.world else None
            self.intent_reader.on_event(ev, spec, container)

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
            ret = self.config.policy.retention
            self.events.set_rotation(max_bytes=ret.events_jsonl_max_bytes, rotated_files=ret.events_jsonl_rotated_files)
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
        services = self.services
        subjects: dict[str, str] = {}
        if services is not None:
            for c in world.containers:
                spec = services.service_of_container(c)
                if spec is not None:
                    subjects[c.name] = spec.name
        self.spikes, self.spike_drifts = update_spikes(self.spikes, world, self.reconciler.policy.spikes, subjects)

    def _state_drifts(self) -> list[Drift]:
        """Write out what is held in memory; while the state dir cannot be
        written, a P1 finding says so (issue 8: a full disk is survived)."""
        done = self.events.flush()
        for db in (self.incidents, self.outbox):
            done = db.flush_held() and done
        if done:
            return []
        held = self.events.held + sum(db.held_count for db in (self.store, self.incidents, self.outbox))
        dropped = self.events.dropped + sum(db.held_dropped for db in (self.store, self.incidents, self.outbox))
        error = self.store.write_error or self.incidents.write_error or self.outbox.write_error or "cannot append"
        return [state_write_drift(str(self.settings.state_dir), held=held, dropped=dropped, error=error)]

    def _pass(self, world: WorldState, full_pass: bool = True) -> PassResult:
        t0 = time.monotonic()  # issue 10: pass duration for the API's metrics
        self.world = world
        now = utcnow()
        state = self._state_drifts()
        if world.engine_ok:
            self.protocol.close_interrupted(now)
        result = self.reconciler.run_pass(world, now=now,
                                          extra_drifts=self._worker_drifts() + self.spike_drifts + state,
                                          full_pass=full_pass, held=self.intent_reader.held(now))
        desired = result.evaluation.desired
        if world.engine_ok:
            self.services = ServiceIndex(desired)
            self.intent_reader.forget_except(set(world.index.by_id), now)
            self.recovery.after_pass(desired, world, now, self.reconciler.policy.recovery.timeout_s)
        self.passes += 1
        for w in self.workers:
            hook = getattr(w, "after_pass", None)  # e.g. the storage journal
            if hook is not None:
                try:
                    hook(result)
                except Exception as e:  # a worker's hook (a full disk for the journal) never fails the pass
                    log.error("worker %s: after_pass failed: %s", getattr(w, "name", w), e)
        try:
            write_world(world, self.settings.state_dir / "world.json")
        except OSError as e:
            log.error("world.json: cannot write: %s", e)
        self.api.publish(result, time.monotonic() - t0, self.passes)  # issue 10: swap in the API's snapshot
        return result
