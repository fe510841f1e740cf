"""One node's supervision loop: its engine's events + a resync timer drive the
reconcile pipeline for that node.

- A container event re-inspects just that container and runs a pass at once
  (milliseconds, no stats wait); the resync timer (``--resync``, default 30 s)
  runs a pass with fresh CPU/memory figures. Its observation, cheapest first
  (issue 9): ``cached``, when the engine's replay of its recent events shows the
  stream delivered them all (``observe.plan.stream_complete``), starts from the
  world the events kept current, no list call; ``incremental`` lists and
  inspects only what the list shows changed (at least every 120 s, and whenever
  the stream cannot be vouched for); ``full`` inspects every container (every
  300 s).
- Events are read for the operator's intent (``operator_intent``: the sequence
  ``kill`` -> ``die`` -> ``stop`` of one container, not single events), between
  and during actions: actions run off the loop (``actions.ActionRunner``), one
  per service at a time, so a long ``compose up`` never stops the loop.
- A pass that raises never kills the loop (controller-runtime's per-reconcile
  recovery): it emits ``pass_failed`` and is retried with backoff.
- The engine is watched on its own connection (``observe.liveness``), every
  ``heartbeat_s``: a silent or frozen stream is noticed, a restarted engine within a
  quarter of a second; the node's state machine (``reconcile.node_health``) turns it
  ``offline`` after ``offline_after_s`` without an answer (drift ``node_offline``,
  P1, with a failover review) and ``online`` again when it answers (its recovery
  session runs). Stops read as the operator's are taken back only on evidence that
  the engine itself restarted (``OperatorIntent.reconsider_stops``).
- Each node has its own loop, thread, engine connection, event stream and queue;
  nothing shared across nodes is held while an engine call is in flight, so one
  node that hangs never delays another (issue 11). ``daemon.Daemon`` runs them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from dockwarden.actions import ActionDone, ActionProtocol, ActionRunner, error_digest
from dockwarden.config import Policy, Settings
from dockwarden.incidents import IncidentBook
from dockwarden.model import (ActionBy, DesiredState, Drift, DriftKind, EngineEvent, Event, EventType, Mode,
                              NodeConfig, ServiceSpec, WorldState, rfc3339, utcnow)
from dockwarden.observe.docker import ContainerObserver, connect_node
from dockwarden.observe.events import EngineLost, EventStream
from dockwarden.observe.host import HostSampler
from dockwarden.observe.liveness import EngineDown, EngineUp, EngineWatch, EventMark
from dockwarden.observe.world import ContainerDocs, write_world
from dockwarden.node_engine import NodeEngine
from dockwarden.operator_intent import OperatorIntent
from dockwarden.pipeline import PassResult, Reconciler
from dockwarden.reconcile.backoff import exponential_delay_s
from dockwarden.reconcile.drift import effective_intent, state_write_drift
from dockwarden.reconcile.node_health import NodeHealth, NodeState, next_check_s, step
from dockwarden.reconcile.resolve import ServiceIndex
from dockwarden.reconcile.spikes import SpikeState, update_spikes
from dockwarden.recovery import RecoveryTracker
from dockwarden.report import status_document, write_status
from dockwarden.sinks.events import EventLog
from dockwarden.store import Store
from dockwarden.worker import Worker

log = logging.getLogger(__name__)

#: Reconnect backoff while the engine is away: 0.5 s doubling to 5 s. The
#: liveness watch wakes the loop as soon as the engine answers, so this only
#: paces attempts that fail after a ping succeeded.
RECONNECT_INITIAL_S, RECONNECT_MAX_S = 0.5, 5.0
#: Backoff of a pass that raised: 0.5 s doubling to 30 s.
PASS_RETRY_INITIAL_S, PASS_RETRY_MAX_S = 0.5, 30.0
#: Seconds between full observations that inspect every container; the resyncs
#: between them inspect only what the list call shows changed (issue 9).
FULL_INSPECT_EVERY_S = 300.0
#: Seconds after which a resync lists the containers again even when the event
#: stream is vouched for: the list is the net for what the event log itself
#: would not show. Between, a resync whose stream the engine's replay vouches
#: for starts from the world the events kept current (``cached``; issue 9).
RELIST_EVERY_S = 120.0


class _Wake:
    """Queue sentinel: wake the loop (stop requested, or a worker asked)."""


@dataclass(frozen=True)
class _Offline:
    """Queue item: the node went offline (the loop drops its connection and records it)."""

    error: str | None


@dataclass
class Shared:
    """What the node loops of one daemon share (all thread-safe).

    Attributes:
        settings: state dir, inventory and policy paths.
        events: the event log (events.jsonl + SQLite), for every node.
        stop: set when the daemon stops.
        policy: returns the policy in force.
        mode: returns the global mode in force (``--mode`` or the policy's).
        fleet: the other nodes' view (candidates, failovers), or None alone.
        outbox: the notification outbox (held writes flushed each pass).
        files_suffix: "" for a single node (``world.json``), else "-<node>".
    """

    settings: Settings
    events: EventLog
    stop: threading.Event
    policy: Callable[[], Policy]
    mode: Callable[[], Mode]
    fleet: Any = None
    outbox: Any = None
    several: bool = False
    api: Callable[[], Any] = lambda: None  # the HTTP API's handle (issue 10), or None


class NodeLoop(NodeEngine):
    """The supervisor of one node, in its own thread (:meth:`start`).

    Args:
        shared: what the daemon's node loops share.
        node_cfg: how to reach the node's engine, heartbeat and offline thresholds.
        desired: the node's desired state from the inventory.
        resync_s: seconds between full observations (``--resync``).
        workers: background workers whose drifts and after-pass hooks belong to
            this node (the local node's storage, pool...); empty for the others.
        primary: the first node (its world feeds the workers and the API).
    """

    def __init__(self, shared: Shared, node_cfg: NodeConfig, desired: DesiredState, *, resync_s: float = 30.0,
                 workers: Sequence[Worker] = (), primary: bool = True):
        self.shared = shared
        self.primary = primary  # the first node: its workers, the API's snapshot and heartbeat
        self.settings = shared.settings
        self.node_cfg = node_cfg
        self.name = node_cfg.name
        self.base_desired = desired
        self.extra_services: dict[str, ServiceSpec] = {}  # services failed over to this node
        self.resync_s = resync_s
        self.queue: queue.Queue = queue.Queue()
        self._stop = shared.stop
        self._thread: threading.Thread | None = None
        self.health = NodeHealth(state=NodeState.SUSPECT, since=utcnow())  # until its engine first answers
        self._health_lock = threading.Lock()
        self._was_offline = False
        self.last_pass_monotonic = time.monotonic()
        self.heartbeat_monotonic = time.monotonic()  # issue 12: each round of _loop (the systemd watchdog reads it)
        self.client: Any = None
        self.observer: ContainerObserver | None = None
        self.stream: EventStream | None = None
        local = node_cfg.docker_host is None or node_cfg.docker_host.startswith("unix://")
        self.sampler = HostSampler() if local else None  # a remote engine's host is not ours to measure
        self.status_doc: dict[str, Any] | None = None
        self.world: WorldState | None = None
        self.docker_root_dir: str | None = None
        self.passes = 0
        self._world_docs: ContainerDocs = {}  # world.json's memo of container documents (world_document)
        self.pipeline_ms = 0.0  # the last pass's reconcile pipeline (run_pass), for the debug log
        self.workers: list[Worker] = list(workers)
        self.last_result: PassResult | None = None
        self.spikes = SpikeState()
        self.spike_drifts: list = []
        self.services: ServiceIndex | None = None
        self.ready = False
        self._connected_once = False
        self._seen_since_full: set[str] = set()
        self._last_mark: EventMark | None = None
        self._recent_events: dict[tuple, None] = {}  # insertion-ordered, bounded
        self._full_inspect_at = 0.0  # monotonic time of the next full (every container) inspect
        self._relist_at = 0.0  # monotonic time by which a resync lists again, whatever the stream says
        self._stream_checked_ns: int | None = None  # the stream is vouched for up to here (wall clock, ns)
        self._clock_shared = False  # the engine's clock is ours (set on connect)

    # ------------------------------------------------------------------ control

    def wake(self) -> None:
        """Ask for a pass soon (from any thread)."""
        self.queue.put(_Wake())

    def _emit(self, type_: EventType, reason: str, **kw) -> None:
        self.events.send(Event(type=type_, ts=utcnow(), node=self.name, reason=reason, **kw))

    @property
    def desired_node(self) -> str:
        return self.name

    @property
    def online(self) -> bool:
        return self.health.state is NodeState.ONLINE

    @property
    def recovering(self) -> bool:
        """Before the first pass, or while a recovery (engine restart, reboot) brings
        the node's services back: background work that loads the engine waits."""
        recovery = getattr(self, "recovery", None)  # made by _setup
        return not self.ready or (recovery is not None and recovery.active)

    def desired(self) -> DesiredState:
        """The node's desired state: its inventory, plus services failed over to it."""
        if not self.extra_services:
            return self.base_desired
        return DesiredState(node=self.name, services={**self.extra_services, **self.base_desired.services})

    def apply_config(self, desired: DesiredState, node_cfg: NodeConfig) -> None:
        """A reloaded inventory (the daemon's config watcher found a change)."""
        self.base_desired, self.node_cfg = desired, node_cfg
        self.reconciler.desired = self.desired()
        self.reconciler.policy = self.shared.policy()
        self.reconciler.mode = self.shared.mode()
        ret = self.reconciler.policy.guardrails
        if self.reconciler.executor is not None:
            self.reconciler.executor.stop_timeout_s = ret.stop_timeout_s

    # ------------------------------------------------------------------ setup

    def _setup(self) -> None:
        state_dir = self.settings.state_dir
        policy = self.shared.policy()
        self.events = self.shared.events
        self.store = Store(state_dir / "dockwarden.db", self.name)
        self.intent_reader = OperatorIntent(self.store, self._emit)
        local = self.node_cfg.docker_host is None or self.node_cfg.docker_host.startswith("unix://")
        self.recovery = RecoveryTracker(self.store, self._emit, self.node_cfg.docker_host or self.settings.docker_host,
                                        local=local)
        self.incidents = IncidentBook(state_dir / "dockwarden.db", self.name)
        self.protocol = ActionProtocol(self.store, self.events.send, self.name, by=ActionBy.DAEMON,
                                       stop_timeout_s=policy.guardrails.stop_timeout_s)
        self.runner = ActionRunner(self.protocol, self.queue)
        self.reconciler = Reconciler(store=self.store, events=self.events, executor=None, policy=policy,
                                     desired=self.desired(), mode=self.shared.mode(),
                                     incidents=self.incidents, protocol=self.protocol, runner=self.runner)
        cfg = self.node_cfg
        self.watch = EngineWatch(cfg.docker_host or self.settings.docker_host, self.queue,
                                 interval_s=min(cfg.heartbeat_s, 2.0) if not self.shared.several else cfg.heartbeat_s,
                                 timeout_s=min(2.0, cfg.heartbeat_s),
                                 make_client=(lambda: connect_node(cfg, timeout_s=min(2.0, cfg.heartbeat_s)))
                                 if cfg.docker_host else None)
        # The heartbeat drives the node state machine from the watch's own thread, so a
        # node loop blocked in an engine call (a frozen engine) still goes offline on time.
        self.watch.on_beat = lambda err: self._health(ok=err is None, error=err)

    # ------------------------------------------------------------------ main loop

    def start(self) -> None:
        """Set up and run the loop in its own thread."""
        self._setup()
        self.protocol.close_interrupted(starting=True)
        self.watch.start()
        self._thread = threading.Thread(target=self.run_forever, name=f"dockwarden-node-{self.name}", daemon=True)
        self._thread.start()

    def run_forever(self) -> None:
        """The loop, restarted with backoff if anything escapes it (never silently dead)."""
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    self._loop()
                except Exception as e:  # the loop guards its passes; this is the last resort
                    failures += 1
                    delay = exponential_delay_s(failures, PASS_RETRY_INITIAL_S, PASS_RETRY_MAX_S)
                    log.exception("node %s: its loop failed (%d); restarting it in %.1f s", self.name, failures,
                                  delay)
                    self._emit_safely(EventType.PASS_FAILED, f"node {self.name}: the loop failed "
                                      f"({error_digest(e)}); restarting it in {delay:.1f} s",
                                      details={"failures": failures, "stage": "loop"})
                    self._drop_engine()
                    self._stop.wait(delay)
        finally:
            self._shutdown()

    def _drop_engine(self) -> None:
        """Forget the engine connection (the next loop reconnects)."""
        try:
            if self.stream is not None:
                self.stream.close(timeout_s=0.2)
            if self.observer is not None:
                self.observer.close()
        except Exception as e:  # closing a broken connection: nothing to keep
            log.debug("node %s: closing: %s", self.name, e)
        self.stream = self.observer = self.client = None
        self.reconciler.executor = None

    def join(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        next_resync = 0.0
        requeue_at: float | None = None
        reconnect_at = 0.0
        reconnect_attempt = 0
        pass_failures = 0
        retry_at: float | None = None
        while not self._stop.is_set():
            if self.primary:  # the API's /healthz reads the first node's loop heartbeat
                api = self.shared.api()
                if api is not None:
                    api.beat()
            self.heartbeat_monotonic = time.monotonic()  # issue 12: the loop went round
            if self.client is None and time.monotonic() >= reconnect_at:
                try:
                    connected = self._connect()
                except Exception as e:  # a bug or an odd engine: one failed attempt, never a dead loop
                    log.exception("node %s: connecting failed", self.name)
                    self._emit_safely(EventType.PASS_FAILED, f"node {self.name}: connecting to the engine failed "
                                      f"({error_digest(e)})", details={"stage": "connect"})
                    self._drop_engine()
                    connected = False
                if connected:
                    reconnect_attempt = 0
                    next_resync = 0.0
                else:
                    reconnect_attempt += 1
                    reconnect_at = time.monotonic() + exponential_delay_s(
                        reconnect_attempt, RECONNECT_INITIAL_S, RECONNECT_MAX_S)
            if self.client is None:
                # Away: wake for the next reconnect attempt (the watch wakes us as soon as
                # the engine answers) and, offline, to record the standing finding again.
                deadlines = [reconnect_at]
                if self.health.state is NodeState.OFFLINE:
                    deadlines.append(self.last_pass_monotonic + self.resync_s)
            else:
                deadlines = [next_resync]
                for d in (requeue_at, retry_at):
                    if d is not None:
                        deadlines.append(d)
            check = next_check_s(self.health, now=utcnow(), offline_after_s=self.node_cfg.offline_after_s)
            if check is not None:
                deadlines.append(time.monotonic() + check + 0.01)
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
                elif isinstance(item, _Offline):
                    lost = lost or item.error or "the node is offline"
                elif isinstance(item, ActionDone):
                    self._guarded("action result", self.reconciler.on_action_done, item.rec, item.outcome,
                                  item.context)
                    dirty.add(item.rec.container_id or item.rec.container)
                elif isinstance(item, _Wake):
                    woken = True
            if self._stop.is_set():
                break
            self._health(ok=None)  # a tick: suspect -> offline when its time has come
            if lost is not None and self.client is not None:
                self._on_engine_lost(lost)
                self._health(ok=False, error=lost)
                self._guarded_pass(self._offline_world(lost))
                reconnect_at = 0.0
                continue
            if lost is not None:  # offline while not connected: record it now
                self._guarded_pass(self._offline_world(lost))
                continue
            if self.client is None:
                if self.health.state is NodeState.OFFLINE and time.monotonic() - self.last_pass_monotonic >= self.resync_s:
                    self._guarded_pass(self._offline_world(self.health.error))  # the offline finding stands
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
        t0 = time.monotonic()
        self.reconciler.desired = self.desired()  # the inventory (maybe reloaded) and failed-over services
        self.reconciler.policy, self.reconciler.mode = self.shared.policy(), self.shared.mode()
        if (full and t0 < self._relist_at and t0 < self._full_inspect_at and self.world is not None
                and self._stream_verified()):
            kind = "cached"  # the stream delivered every event: the world is current but for its figures
            world = self._cached(dirty)
            if world is not None:
                self._update_spikes(world)
        elif full:
            inspect_all = t0 >= self._full_inspect_at
            kind = "full" if inspect_all else "incremental"
            listed_ns = time.time_ns()
            # The containers events named are inspected even when the list shows no
            # change: the list may lag the event (observe.docker.plan_inspection).
            world = self._observe(with_stats=True, incremental=not inspect_all, named=dirty)
            if inspect_all:
                self._full_inspect_at = t0 + FULL_INSPECT_EVERY_S
            if world is not None:
                self._listed(listed_ns)
                self._relist_at = t0 + RELIST_EVERY_S
                self._check_stream(world)
                self._update_spikes(world)
        elif cheap:
            kind = "cheap"
            world = self._observe(with_stats=False, incremental=True)
        else:
            kind = "refresh"
            world = self._refresh(dirty)
        if world is None:  # the engine went away mid-observation
            return None
        t1 = time.monotonic()
        result = self._pass(world, full_pass=full)
        if log.isEnabledFor(logging.DEBUG):
            inspected = (len(dirty) if kind in ("refresh", "cached")
                         else (self.observer.last_inspected if self.observer else 0))
            log.debug("pass kind=%s containers=%d inspected=%d observe_ms=%.1f pipeline_ms=%.1f duration_ms=%.1f",
                      kind, len(world.containers), inspected, (t1 - t0) * 1000, self.pipeline_ms,
                      (time.monotonic() - t0) * 1000)
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

    def _shutdown(self) -> None:
        self.watch.stop()
        self.runner.shutdown(wait_s=10.0)
        if self.stream is not None:
            self.stream.close()

    # ------------------------------------------------------------------ passes

    def _health(self, *, ok: bool | None, error: str | None = None) -> None:
        """Advance the node state machine; report ``node_offline`` / ``node_online``.

        Called from the loop's thread and from the liveness watch's thread (each
        heartbeat, at its own time): ``node_offline`` is reported on time even while
        the loop waits for a frozen engine; the loop then drops the connection and
        runs the offline pass (the drift, one incident for the node)."""
        with self._health_lock:
            before = self.health
            self.health, t = step(self.health, now=utcnow(), offline_after_s=self.node_cfg.offline_after_s,
                                  ok=ok, error=error)
        if t == "offline":
            self._was_offline = True
            d = self._offline_drift()
            self._emit_safely(EventType.NODE_OFFLINE, d.reason, priority="P1", details=d.details)
            self.queue.put(_Offline(self.health.error))
        elif t == "online":
            down = (utcnow() - before.since).total_seconds() if before.since else None
            self._emit_safely(EventType.NODE_ONLINE, f"node {self.name} answers again"
                              + (f" after {down:.0f} s offline" if down is not None else "") + "; recovering its services",
                              details={"offline_s": round(down, 3) if down is not None else None})

    def _offline_drift(self) -> Drift:
        """The node's ``node_offline`` drift: its services and their intents, and
        the nodes that could take them (for the failover review)."""
        desired = self.base_desired
        intents = self.store.intents()
        services = [{"service": n, "intent": effective_intent(sp, intents.get(n)).value,
                     "failover_to": list(sp.failover_to), "failover": sp.failover}
                    for n, sp in sorted(desired.services.items())]
        candidates = self.shared.fleet.online_nodes(exclude=self.name) if self.shared.fleet is not None else []
        since = self.health.last_ok_at
        return Drift(
            DriftKind.OFFLINE_NODE, f"node:{self.name}",
            reason=f"node {self.name} is offline: its engine has not answered for "
                   f"{self.node_cfg.offline_after_s:g} s ({self.health.error or 'no answer'}); "
                   f"{len(services)} services pinned to it; nothing is attempted on it meanwhile",
            details={"node": self.name, "services": services, "candidates": candidates,
                     "last_answer": rfc3339(since) if since else None, "error": self.health.error},
        )

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
        out = [self._offline_drift()] if self.health.state is NodeState.OFFLINE else []
        dbs = [db for db in (self.store, self.incidents, self.shared.outbox) if db is not None]
        done = self.events.flush()
        for db in dbs:
            done = db.flush_held() and done
        if done:
            return out
        held = self.events.held + sum(db.held_count for db in dbs)
        dropped = self.events.dropped + sum(db.held_dropped for db in dbs)
        error = next((db.write_error for db in dbs if db.write_error), None) or "cannot append"
        return out + [state_write_drift(str(self.settings.state_dir), held=held, dropped=dropped, error=error)]

    def _pass(self, world: WorldState, full_pass: bool = True) -> PassResult:
        t0 = time.monotonic()
        self.world = world
        self.last_pass_monotonic = time.monotonic()
        now = utcnow()
        state = self._state_drifts()
        if world.engine_ok:
            self.protocol.close_interrupted(now)
        result = self.reconciler.run_pass(world, now=now,
                                          extra_drifts=self._worker_drifts() + self.spike_drifts + state,
                                          full_pass=full_pass, held=self.intent_reader.held(now),
                                          recovering=self.recovery.active)
        self.pipeline_ms = (time.monotonic() - t0) * 1000
        desired = result.evaluation.desired
        if world.engine_ok:
            if full_pass:
                self.store.set_checkpoint("watched_until", rfc3339(world.observed_at) or "")
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
        self.last_result = result
        # One document a pass, with the mode in force: status.json, the API's snapshot and
        # the fleet's view of this node say the same.
        self.status_doc = status_document(result.evaluation, mode=self.reconciler.mode,
                                          policy=self.reconciler.policy, daemon_running=True,
                                          written_by="daemon", stale_after_s=max(3 * self.resync_s, 10.0))
        api = self.shared.api() if self.primary else None
        if api is not None:
            api.publish(self.status_doc, time.monotonic() - t0, self.passes)  # swap in the API's snapshot
        try:  # what `status` and `drift` show while the daemon runs: after every pass
            if self.shared.fleet is not None:
                self.shared.fleet.publish_status()
            else:
                write_status(self.status_doc, self.settings.state_dir)
        except OSError as e:
            log.error("status.json: cannot write: %s", e)
        if full_pass:
            # world.json (every container, for people and jq) is about 1 MB and 100 ms at 1 000
            # containers: written by the resync passes only, never on the way from a crash to its
            # restart (event-driven passes; status.json says what they saw).
            try:
                name = f"world-{self.name}.json" if self.shared.several else "world.json"
                write_world(world, self.settings.state_dir / name, docs=self._world_docs)
            except OSError as e:
                log.error("world.json: cannot write: %s", e)
        return result
