"""A node's engine connection and its events: connect (and what happened while
dockwarden was not watching), lose, observe, refresh, and read each event.

The half of :class:`dockwarden.node_loop.NodeLoop` that talks to the engine,
kept apart so the loop's module holds the loop and its passes. A mixin: its
methods use the loop's state (``client``, ``observer``, ``stream``, ``store``,
``intent_reader``, ``recovery``, ``health``...), set up by ``NodeLoop``.

On connect, before the first pass may act (issue 8):

- stops remembered from before the loss are reconsidered on the evidence of an
  engine restart (``OperatorIntent.reconsider_stops``);
- with that evidence, the engine's own start-up window is marked (its restore
  stops containers before its API answers; those stops are not intent) and
  kills still waiting for their ``die`` stop holding their services;
- without it, the events missed are replayed, and stops Docker marks
  ``HasBeenManuallyStopped`` since the last event seen are adopted.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from dockwarden.execute import Executor
from dockwarden.inventory import merge_labelled
from dockwarden.model import EngineEvent, EventType, WorldState, parse_time, utcnow
from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver, connect, connect_node, engine_is_local
from dockwarden.observe.events import EventStream, replay_window
from dockwarden.observe.liveness import EventMark, engine_remembers, manually_stopped
from dockwarden.observe.plan import event_key, stream_complete
from dockwarden.observe.world import observe_world, replace_containers, resample, unreported_changes
from dockwarden.operator_intent import ENGINE_SHUTDOWN_WINDOW_S
from dockwarden.reconcile.node_health import NodeState
from dockwarden.reconcile.resolve import ServiceIndex

log = logging.getLogger(__name__)

#: Container event actions that can change what the pipeline decides.
TRIGGER_ACTIONS = frozenset(
    {"die", "oom", "kill", "stop", "start", "restart", "health_status", "destroy", "create", "pause", "unpause", "rename",
     "update"}  # `docker update`: a new restart policy or memory limit, for the spec and the figures
)
#: A container change older than this, seen by a full observation with no event
#: for it, means the event stream missed it (seconds).
STALE_STREAM_AFTER_S = 3.0
#: Events remembered to drop duplicates of a replay and to check the stream
#: against the engine's replay (bounded memory).
RECENT_EVENTS_KEPT = 1024
#: A cached resync checks the stream up to this long ago: an event younger than
#: this may still be on its way to the queue (seconds; the stream adds 1-2 ms).
STREAM_SETTLE_S = 1.0
#: A cached resync's replay of recent events waits this long for the engine (seconds):
#: the liveness watch notices a frozen engine in ``heartbeat_s``; the loop must not
#: hang meanwhile.
REPLAY_TIMEOUT_S = 2.0


class NodeEngine:
    """The engine half of a node's loop (module docstring); mixed into ``NodeLoop``."""

    # ------------------------------------------------------------------ engine

    def _connect(self) -> bool:
        was_lost = self.store.checkpoint("engine") == "lost"
        first = not self._connected_once
        try:
            client = (connect_node(self.node_cfg) if self.node_cfg.docker_host
                      else connect(self.settings.docker_host))
            client.ping()
            observer = ContainerObserver(client)
            info = observer.engine_info()
            answered = utcnow()
        except ENGINE_ERRORS as e:
            log.warning("node %s: engine unreachable: %s", self.name, e)
            self._health(ok=False, error=str(e))
            if self.world is None or self.world.engine_ok:
                self._guarded_pass(self._offline_world(str(e)))
                self._mark_engine_lost(str(e))
            return False
        self.client, self.observer = client, observer
        # Offline since the last connection (the watch may have seen it answer first): its recovery runs.
        came_back, self._was_offline = self._was_offline or self.health.state is NodeState.OFFLINE, False
        self._health(ok=True)
        self._connected_once = True
        self.docker_root_dir = info.get("root_dir")
        self.reconciler.executor = Executor(client, stop_timeout_s=self.reconciler.policy.guardrails.stop_timeout_s)
        self._last_mark = EventMark.from_json(self.store.checkpoint("last_event"))
        restarted = self._engine_restarted(client)
        rebooted = self.recovery.host_rebooted() if (first and self.recovery.local) else False
        # Before the first pass may act: what happened while we were not watching.
        world = observe_world(observer, self.sampler, node=self.desired_node, now=utcnow(), with_stats=False,
                              docker_root_dir=self.docker_root_dir)
        if not world.engine_ok:
            self._on_engine_lost(world.engine_error or "observation failed")
            return False
        merged, _ = merge_labelled(self.reconciler.desired, world.containers, self.reconciler.policy.labels)
        self.services = ServiceIndex(merged)
        self.world = world
        if self.shared.fleet is not None:
            # Failed over while this node was away: stop its copies here before anything starts.
            self.shared.fleet.node_back(self, world)
        if first or was_lost:
            decided = self.intent_reader.reconsider_stops(
                engine_restarted=restarted or rebooted,
                last_seen=self._last_mark.time if self._last_mark else None,
                manually_stopped=lambda cid: manually_stopped(self.docker_root_dir, cid))
            if decided["taken_back"] or decided["kept"]:
                log.info("remembered stops: taken back %s, kept %s", decided["taken_back"], decided["kept"])
        engine_now = parse_time(info.get("system_time"))
        until = engine_now or utcnow()
        # A cached resync checks the stream against the engine's replay up to a time of our clock.
        self._clock_shared = (engine_is_local(client) and engine_now is not None
                              and abs((answered - engine_now).total_seconds()) < STREAM_SETTLE_S / 2)
        if restarted or rebooted:
            self.intent_reader.engine_started_up(self._engine_start(until), until)
            released = self.intent_reader.end_holds()
            if released:
                log.info("engine restarted: kills that waited for their die no longer hold %s", released)
        if self._last_mark is not None and not restarted:
            self._replay(client, self._last_mark.time, until)
        watched = [t for t in (self._last_mark.time if self._last_mark else None,
                               parse_time(self.store.checkpoint("watched_until"))) if t is not None]
        # dockwarden watched this engine before: what stopped since is the operator's to explain. Not after
        # an engine restart: a dockerd restarted after a crash stops the containers that survived it and
        # marks them HasBeenManuallyStopped itself (seen on Engine 20.10), so the flag says nothing then.
        if watched and not restarted:
            self.intent_reader.adopt_unseen_stops(merged, world, since=max(watched),
                                                  manually_stopped=lambda cid: manually_stopped(
                                                      self.docker_root_dir, cid))
        self.stream = EventStream(client, self.queue, since=until)
        self.stream.start()
        self.watch.set_up(True)
        self.recovery.on_connect(host_rebooted=rebooted, engine_restarted=restarted or came_back,
                                 cause="node_online" if came_back and not (restarted or rebooted) else None)
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
            _, replayed = replay_window(client, int(since.timestamp()) * 10**9,
                                        (int(until.timestamp()) + 1) * 10**9)
        except (*ENGINE_ERRORS, ValueError) as e:
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

    def _engine_start(self, answered: datetime) -> datetime:
        """When the restarted engine started: its process's start time (recorded by
        ``recovery.engine_start_changed``) on a local engine, else the last event
        seen before the loss, else :data:`ENGINE_SHUTDOWN_WINDOW_S` before it answered."""
        recorded = self.store.checkpoint("engine_started_at") if self.recovery.local else None
        if recorded is not None:
            return datetime.fromtimestamp(float(recorded), timezone.utc)
        if self._last_mark is not None:
            return self._last_mark.time
        return answered - timedelta(seconds=ENGINE_SHUTDOWN_WINDOW_S)

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
        self._stream_checked_ns = None
        self.reconciler.executor = None
        self._mark_engine_lost(error)

    def _offline_world(self, error: str | None = None) -> WorldState:
        host = (self.sampler.sample(["/"] + ([self.docker_root_dir] if self.docker_root_dir else []))
                if self.sampler is not None else None)
        return WorldState(node=self.desired_node, observed_at=utcnow(), host=host, containers=(),
                          engine_ok=False, engine_error=error or "Docker engine unreachable",
                          docker_root_dir=self.docker_root_dir)

    def _observe(self, *, with_stats: bool, incremental: bool = False,
                 named: set[str] | frozenset[str] = frozenset()) -> WorldState | None:
        assert self.observer is not None
        world = observe_world(self.observer, self.sampler, node=self.desired_node, now=utcnow(),
                              with_stats=with_stats, docker_root_dir=self.docker_root_dir,
                              incremental=incremental, named=named)
        if not world.engine_ok:
            self._on_engine_lost(world.engine_error or "observation failed")
            self._guarded_pass(world)
            return None
        return world

    def _listed(self, started_ns: int) -> None:
        """A list call started at ``started_ns`` (wall clock): what happened before
        it is in the world; the stream is checked from there on. Not for an engine
        whose clock is not ours (remote, or more than half the settle time apart
        at connect): its resyncs always list."""
        self._stream_checked_ns = started_ns if self._clock_shared else None

    def _stream_verified(self) -> bool:
        """Whether the event stream delivered every event the engine logged since
        it was last checked (or since the last list call), so that a resync may
        start from the world the events kept current (:func:`observe.plan.stream_complete`).

        Only for a local engine (the window's end is the engine's clock); False
        when the stream was never checked since the last list, when the engine
        cannot replay, or when it replays an event the stream did not deliver.
        """
        since = self._stream_checked_ns
        if since is None or self.client is None or self.stream is None or not self.stream.alive:
            return False
        until = time.time_ns() - int(STREAM_SETTLE_S * 1e9)
        if until <= since:
            return True  # nothing old enough to check yet; the next resync checks it
        try:
            total, replayed = replay_window(self.client, since, until, timeout_s=REPLAY_TIMEOUT_S)
        except (*ENGINE_ERRORS, ValueError) as e:
            log.debug("node %s: cannot replay events to check the stream: %s", self.name, e)
            return False
        if not stream_complete(total, replayed, self._recent_events):
            log.info("node %s: the event stream cannot be vouched for (%d events replayed); listing",
                     self.name, total)
            return False
        self._stream_checked_ns = until
        return True

    def _cached(self, dirty: set[str]) -> WorldState | None:
        """A resync from the world the events kept current: the containers events
        named re-inspected, fresh CPU/memory and host figures; no list call."""
        assert self.observer is not None
        world = self._refresh(dirty) if dirty else self.world
        if world is None:
            return None
        world = resample(world, self.observer, self.sampler, now=utcnow())
        if not world.engine_ok:
            self._on_engine_lost(world.engine_error or "stats read failed")
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
        key = event_key(ev)
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
