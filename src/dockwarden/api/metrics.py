"""Prometheus metrics: a custom collector over the snapshot, plus counters and
histograms fed by the event log.

Names follow Prometheus practice (client_python docs; prometheus.io naming):
one prefix ``dockwarden_``, base units (seconds, bytes), ``_total`` on counters,
``_timestamp_seconds`` for times, bounded labels: inventory service names,
enums, channel names from the policy — never container ids or error text.
Untracked containers are counted (``dockwarden_untracked_containers``), not
labelled. Series known to exist are exported as 0.

Gauges are computed at scrape time (``Collector.collect``) from the latest
snapshot and a few indexed reads through the API's own database connection;
the reconcile loop is never asked. Per-service CPU and memory are in the JSON
API (``/api/v1/status``), not here: container resource series are cAdvisor's
job, and 100 services would add 200 series to every scrape. Each :class:`ApiMetrics` has its own
``CollectorRegistry`` (tests make as many as they like).

Source for counting: the events the daemon records anyway
(``action_started``/``action_succeeded``/``action_failed``/``action_interrupted``,
``recovered`` with ``downtime_s``, ``notification_*`` with the channel), so
the counters agree with ``events.jsonl`` by construction.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from dockwarden import __version__
from dockwarden.api.snapshot import SUMMARY_STATES, Snapshot
from dockwarden.model import DriftKind, Event, EventType

# The ``*_created`` series double the output and no rule of ours reads them.
disable_created_metrics()

#: Action kinds that change containers (the label set of the action metrics).
ACTION_KINDS = ("start", "stop", "restart", "recreate", "compose_up")
ACTION_RESULTS = ("succeeded", "failed", "interrupted")
PRIORITIES = ("P0", "P1", "P2", "P3", "P4")
NOTIFY_RESULTS = ("delivered", "failed", "dropped")
POOL_STATES = ("starting", "healthy", "unhealthy", "rate_limited", "stopping", "failed")
STORAGE_KINDS = ("images", "containers", "volumes", "build_cache")
#: Actions remembered between ``action_started`` and their verdict (bounded).
OPEN_ACTIONS_KEPT = 4096
#: Histogram buckets, seconds: actions (docker start ~0.2 s, compose up up to
#: minutes), recovery (crash-to-running ~0.3 s up to the 300 s backoff), passes.
ACTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
RECOVERY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)
PASS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

log = logging.getLogger(__name__)


class _SnapshotCollector(Collector):
    def __init__(self, owner: "ApiMetrics"):
        self.owner = owner

    def collect(self) -> Iterable[Any]:
        return self.owner.collect_gauges()


class ApiMetrics:
    """The daemon's metrics.

    Args:
        snapshot: returns the latest snapshot (or None before the first pass).
        reads: returns scrape-time figures read from the database:
            ``{"incidents_open": {priority: n}, "notifications_queued": n,
            "pool": {state: n} | None}``; may raise (then those are left out).
        resync_s: the daemon's resync interval, seconds (exported, for the
            "dockwarden stale" alert).
        channels: returns the notification channel names of the policy.
    """

    def __init__(self, *, snapshot: Callable[[], Snapshot | None], reads: Callable[[], dict[str, Any]],
                 resync_s: float, channels: Callable[[], list[str]] = lambda: [],
                 other_nodes: Callable[[], list[dict[str, Any]]] = lambda: []):
        self.snapshot = snapshot
        self.other_nodes = other_nodes  # the other nodes' status documents (several nodes)
        self.reads = reads
        self.resync_s = resync_s
        self.channels = channels
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.actions = Counter("dockwarden_actions", "Actions carried out, by kind and verdict.",
                               ["action", "result"], registry=r)
        self.action_duration = Histogram("dockwarden_action_duration_seconds",
                                         "From an action's start to its verdict, seconds.", ["action"],
                                         buckets=ACTION_BUCKETS, registry=r)
        self.recovery = Histogram("dockwarden_recovery_seconds",
                                  "From a service's drift (down) to running again, seconds.",
                                  buckets=RECOVERY_BUCKETS, registry=r)
        self.notifications = Counter("dockwarden_notifications", "Notification deliveries, by channel and result.",
                                     ["channel", "result"], registry=r)
        self.pass_duration = Histogram("dockwarden_pass_duration_seconds", "Duration of one reconcile pass, seconds.",
                                       buckets=PASS_BUCKETS, registry=r)
        self.events = Counter("dockwarden_events", "Events recorded, by type.", ["type"], registry=r)
        for a in ACTION_KINDS:
            self.action_duration.labels(a)
            for res in ACTION_RESULTS:
                self.actions.labels(a, res)
        for t in EventType:
            self.events.labels(t.value)
        r.register(_SnapshotCollector(self))
        self._open: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._generation = 0  # bumped by every counted event and pass (render's cache key)
        self._last_key: Any = None
        self._last_text = b""
        self._reads_now: dict[str, Any] | None = None

    # ------------------------------------------------------------------ fed by the event log

    def on_event(self, ev: Event) -> None:
        """Count one recorded event (an ``EventLog`` subscriber; never raises)."""
        try:
            self._count(ev)
        except Exception:  # a sink never fails a pass  # noqa: BLE001
            log.debug("metrics: cannot count %s event", getattr(ev, "type", "?"), exc_info=True)

    def _count(self, ev: Event) -> None:
        self._generation += 1
        self.events.labels(ev.type.value).inc()
        d = ev.details or {}
        t = ev.type
        if t == EventType.ACTION_STARTED and ev.action in ACTION_KINDS:
            with self._lock:
                self._open[str(d.get("action_id"))] = (ev.action, ev.ts.timestamp())
                while len(self._open) > OPEN_ACTIONS_KEPT:
                    self._open.popitem(last=False)
        elif t in (EventType.ACTION_SUCCEEDED, EventType.ACTION_FAILED, EventType.ACTION_INTERRUPTED):
            with self._lock:
                opened = self._open.pop(str(d.get("action_id")), None)
            if opened is None:
                return  # not started by this daemon (or already counted)
            action, started = opened
            result = {EventType.ACTION_SUCCEEDED: "succeeded", EventType.ACTION_FAILED: "failed",
                      EventType.ACTION_INTERRUPTED: "interrupted"}[t]
            self.actions.labels(action, result).inc()
            self.action_duration.labels(action).observe(max(0.0, ev.ts.timestamp() - started))
        elif t == EventType.RECOVERED and isinstance(d.get("downtime_s"), (int, float)):
            self.recovery.observe(float(d["downtime_s"]))
        elif t in (EventType.NOTIFICATION_DELIVERED, EventType.NOTIFICATION_FAILED, EventType.NOTIFICATION_DROPPED):
            channel = str(d.get("channel") or "")
            if channel in self.channels():
                self.notifications.labels(channel, t.value.removeprefix("notification_")).inc()

    def observe_pass(self, seconds: float) -> None:
        self._generation += 1
        self.pass_duration.observe(seconds)

    # ------------------------------------------------------------------ scrape

    def render(self) -> bytes:
        """The Prometheus text format (version 0.0.4).

        Rendered again only when something it shows changed: a new snapshot,
        a counted event or pass, or the database figures (read each scrape);
        otherwise the last text is served (formatting ~600 lines costs ~10 ms)."""
        try:
            reads: dict[str, Any] | None = self.reads()
        except Exception:  # a scrape reports what it can  # noqa: BLE001
            reads = None
        key = (id(self.snapshot()), self._generation, repr(sorted((reads or {}).items())), len(self.channels()))
        with self._render_lock:
            if key != self._last_key:
                self._reads_now = reads
                self._last_text = generate_latest(self.registry)
                self._last_key = key
            return self._last_text

    def collect_gauges(self) -> Iterable[Any]:
        info = InfoMetricFamily("dockwarden_build", "dockwarden's version.")
        info.add_metric([], {"version": __version__})
        yield info
        resync = GaugeMetricFamily("dockwarden_resync_interval_seconds", "Seconds between full observations.")
        resync.add_metric([], self.resync_s)
        yield resync
        for ch in self.channels():
            for res in NOTIFY_RESULTS:
                self.notifications.labels(ch, res)
        snap = self.snapshot()
        yield from self._from_snapshot(snap)
        yield from self._from_reads()

    def _from_snapshot(self, snap: Snapshot | None) -> Iterable[Any]:
        summary = GaugeMetricFamily("dockwarden_summary_state", "1 for the host's current summary state.",
                                    labels=["state"])
        current = snap.status["summary"] if snap else None
        for s in SUMMARY_STATES:
            summary.add_metric([s], 1.0 if s == current else 0.0)
        yield summary
        if snap is None:
            return
        st = snap.status
        up = GaugeMetricFamily("dockwarden_service_up", "1 when a tracked service runs (and is not unhealthy).",
                               labels=["node", "service"])
        circuit = GaugeMetricFamily("dockwarden_circuit_open", "1 while a service's circuit breaker is open.",
                                    labels=["node", "service"])
        wanted = GaugeMetricFamily("dockwarden_service_intent_running", "1 when the service should run (intent).",
                                   labels=["node", "service"])
        docs = [st, *self.other_nodes()]
        for doc in docs:
            for s in doc["services"]:
                lv = [doc["node"], s["name"]]
                up.add_metric(lv, 1.0 if s["up"] else 0.0)
                circuit.add_metric(lv, 1.0 if s["circuit_open"] else 0.0)
                wanted.add_metric(lv, 1.0 if s["intent"] == "running" else 0.0)
        yield from (up, circuit, wanted)
        untracked = GaugeMetricFamily("dockwarden_untracked_containers",
                                      "Containers neither in the inventory nor labelled (counted, not labelled).")
        untracked.add_metric([], float(len(st["untracked"])))
        yield untracked
        drifts = GaugeMetricFamily("dockwarden_drifts", "Current drifts (findings), by kind and priority.",
                                   labels=["kind", "priority"])
        counts = {(k.value, p): 0 for k in DriftKind for p in PRIORITIES}
        for f in st["findings"]:
            key = (f["drift"], f["priority"])
            counts[key] = counts.get(key, 0) + 1
        for (k, p), n in sorted(counts.items()):
            drifts.add_metric([k, p], float(n))
        yield drifts
        engine = GaugeMetricFamily("dockwarden_engine_up", "1 when the Docker engine answered the last pass.",
                                   labels=["node"])
        for doc in docs:
            engine.add_metric([doc["node"]], 1.0 if doc["engine_ok"] else 0.0)
        yield engine
        last = GaugeMetricFamily("dockwarden_last_pass_timestamp_seconds", "When the last pass finished (Unix time).")
        last.add_metric([], snap.published_at)
        yield last
        yield from self._host(st.get("host"))
        yield from self._storage(snap.storage)

    @staticmethod
    def _host(host: dict[str, Any] | None) -> Iterable[Any]:
        if not host:
            return
        size = GaugeMetricFamily("dockwarden_filesystem_size_bytes", "Size of a watched filesystem, bytes.",
                                 labels=["path"])
        free = GaugeMetricFamily("dockwarden_filesystem_free_bytes", "Free bytes of a watched filesystem.",
                                 labels=["path"])
        for d in host.get("disks") or []:
            size.add_metric([d["path"]], float(d["total_bytes"]))
            free.add_metric([d["path"]], float(d["free_bytes"]))
        yield from (size, free)
        avail = GaugeMetricFamily("dockwarden_host_memory_available_bytes", "Host RAM available, bytes.")
        avail.add_metric([], float(host.get("mem_available_bytes") or 0))
        yield avail

    @staticmethod
    def _storage(storage: dict[str, Any] | None) -> Iterable[Any]:
        sb = GaugeMetricFamily("dockwarden_docker_storage_bytes", "Docker's disk use by kind, bytes.",
                               labels=["kind"])
        rb = GaugeMetricFamily("dockwarden_docker_reclaimable_bytes", "Reclaimable Docker data by kind, bytes.",
                               labels=["kind"])
        for k in STORAGE_KINDS:
            v = (storage or {}).get(k) or {}
            sb.add_metric([k], float(v.get("bytes") or 0))
            rb.add_metric([k], float(v.get("reclaimable_bytes") or 0))
        yield from (sb, rb)
        trend = (storage or {}).get("trend")
        eta = GaugeMetricFamily("dockwarden_disk_full_eta_seconds",
                                "Seconds until the Docker root dir's filesystem is full at the trend's rate "
                                "(absent when it is not growing).", labels=["path"])
        eta_p1 = GaugeMetricFamily("dockwarden_disk_p1_eta_seconds",
                                   "Seconds until the critical (P1) level at the trend's rate.", labels=["path"])
        if trend:
            if trend.get("eta_full_s") is not None:
                eta.add_metric([trend["path"]], float(trend["eta_full_s"]))
            if trend.get("eta_p1_s") is not None:
                eta_p1.add_metric([trend["path"]], float(trend["eta_p1_s"]))
        yield from (eta, eta_p1)

    def _from_reads(self) -> Iterable[Any]:
        r = self._reads_now
        if r is None:
            return
        inc = GaugeMetricFamily("dockwarden_incidents_open", "Open or acknowledged incidents, by priority.",
                                labels=["priority"])
        for p in PRIORITIES:
            inc.add_metric([p], float(r.get("incidents_open", {}).get(p, 0)))
        yield inc
        q = GaugeMetricFamily("dockwarden_notifications_queued", "Notifications waiting for delivery.")
        q.add_metric([], float(r.get("notifications_queued", 0)))
        yield q
        oldest = GaugeMetricFamily("dockwarden_notifications_oldest_queued_age_seconds",
                                   "Age of the oldest notification waiting for delivery, seconds (0: none).")
        oldest.add_metric([], float(r.get("notifications_oldest_age_s", 0.0)))
        yield oldest
        pool = GaugeMetricFamily("dockwarden_pool_containers", "Pool containers by state.", labels=["state"])
        ps = r.get("pool") or {}
        for s in POOL_STATES:
            pool.add_metric([s], float(ps.get(s, 0)))
        yield pool

