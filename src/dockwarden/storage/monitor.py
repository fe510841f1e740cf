"""The storage worker: samples Docker storage on its own cadence, keeps trends,
relieves disk pressure in tiers, does housekeeping, and writes the journal.

Runs beside the reconcile loop as a :class:`~dockwarden.worker.PeriodicWorker`
(``GET /system/df`` can take seconds; it never blocks the event-driven loop).
Every ``storage.interval_s`` (300 s; ``pressure_interval_s``, 60 s, while the
Docker root dir's filesystem is above the warn level) one tick:

1. observes storage (``observe/storage.py``) and stores a sample (SQLite, 30 days);
2. fits the growth rate over 6 h and 24 h and the ETA to P1 and to full;
3. above ``thresholds.disk_critical_percent`` in ``auto`` mode, outside
   maintenance windows and once the daemon has made a pass (so recorded specs
   are current), runs the tiered recipe (``storage/recipe.py``), one
   ``prune_tier`` event per tier; when it cannot get below the threshold it
   escalates once with a ``reconcile_blocked`` event naming volumes to review;
4. probes lock files and worktrees and, when ``[housekeeping]`` allows it in
   ``auto`` mode, removes the stale ones (``housekeeping`` events);
5. publishes its standing drifts, read by every reconcile pass:
   ``host:storage:<root>`` (P1, with the breakdown and what each tier would
   free or freed), ``host:disk-trend:<path>`` (P2 when P1 is less than
   ``storage.eta_warn_s`` away) and ``host:housekeeping:*`` (P4).

The host's own ``host:disk:<path>`` drift (reconcile/drift.py) is not repeated.
:meth:`after_pass` (called by the daemon after each pass) writes the journal.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from dockwarden.config import ConfigError, Policy
from dockwarden.inventory import load_inventory, merge_labelled
from dockwarden.model import DesiredState, Drift, DriftKind, Event, EventType, Mode
from dockwarden.observe.docker import ENGINE_ERRORS, connect
from dockwarden.observe.storage import StorageObserver, containers_as_states, filesystem_of
from dockwarden.prune import Pruner
from dockwarden.reconcile.housekeeping import housekeeping_drifts, stale_locks, stale_worktrees
from dockwarden.reconcile.policy import in_maintenance
from dockwarden.reconcile.prune_plan import KeepSet, keep_set, plan_recipe, volume_advice
from dockwarden.reconcile.trends import DiskTrend, churn, disk_trend, trend_drift
from dockwarden.reconcile.usage import StorageReport, human_bytes
from dockwarden.sinks.journal import Journal
from dockwarden.storage import housekeeping as hk
from dockwarden.storage.recipe import RecipeRun, run_recipe, subject_of
from dockwarden.storage.samples import SampleStore
from dockwarden.store import Store
from dockwarden.worker import PeriodicWorker, now_utc

log = logging.getLogger(__name__)

#: Seconds between retention/downsampling runs.
RETENTION_EVERY_S = 3600.0
#: After a recipe run whose removals all failed, seconds before the next try.
RECIPE_BACKOFF_S = 3600.0


def keep_for_report(report: StorageReport, *, desired: DesiredState, store: Store, policy: Policy) -> KeepSet:
    """The keep set for one report: tracked services (inventory + labels on the
    report's containers), recorded specs and intents from the store."""
    merged, _ = merge_labelled(desired, containers_as_states(report), policy.labels)
    return keep_set(desired=merged, intents=store.intents(), specs=store.specs(),
                    containers=report.containers, policy=policy)


class StorageMonitor(PeriodicWorker):
    """The storage worker (see the module docstring).

    Args:
        which: finds ``btrfs`` on PATH (injectable for tests).
        clock: aware UTC now (injectable for tests).
    """

    name = "storage"
    # `docker system df` and an inspect per exited container load the engine that a
    # recovery is starting containers on: the first report of a daemon started with
    # its engine waits for the services to be back (bench/recovery.py).
    defer_while_recovering = True

    def __init__(self, *, which: Callable[[str], str | None] = shutil.which,
                 clock: Callable[[], datetime] = now_utc):
        super().__init__()
        self.which = which
        self.clock = clock
        self._client: Any = None
        self.samples: SampleStore | None = None
        self.store: Store | None = None
        self.journal: Journal | None = None
        self.last_report: StorageReport | None = None
        self.last_trend: DiskTrend | None = None
        self.last_churn: list = []
        self.last_run: RecipeRun | None = None
        self._desired: DesiredState | None = None
        self._notes: list[str] = []
        self._escalations: list[str] = []
        self._last_escalation: str | None = None
        self._pressure = False
        self._retention_at = 0.0
        self._futile_until = 0.0
        self._state = threading.Lock()

    # ------------------------------------------------------------------ worker interface

    def interval_s(self) -> float:
        st = self.ctx.policy().storage if self.ctx else None
        if st is None:
            return 300.0
        return st.pressure_interval_s if self._pressure else st.interval_s

    def start(self, ctx) -> None:  # type: ignore[override]
        db = ctx.state_dir / "dockwarden.db"
        self.samples = SampleStore(db)
        self.store = Store(db, ctx.node)
        self.journal = Journal(ctx.state_dir / "journal", ctx.node)
        super().start(ctx)

    def stop(self) -> None:
        super().stop()
        for closeable in (self.samples, self.store, self._client):
            try:
                if closeable is not None:
                    closeable.close()
            except Exception as e:  # closing must go on for the others
                log.debug("storage: close failed: %s", e)

    def after_pass(self, result: Any) -> None:
        """Write the journal for a reconcile pass (called by the daemon after each
        pass). Never raises."""
        ctx = self.ctx
        if ctx is None or self.journal is None:
            return
        try:
            with self._state:
                notes, self._notes = self._notes, []
                escalations, self._escalations = self._escalations, []
                trends = self.trend_lines()
            self.journal.record_pass(result.evaluation, result, trends, self.clock(), actions=notes,
                                     escalations=escalations, policy=ctx.policy().journal)
        except Exception:  # a sink never fails a pass
            log.exception("storage: journal write failed")

    def trend_lines(self) -> list[str]:
        """Trend lines for the journal: the disk trend, reclaimable growth, churn."""
        out = []
        t = self.last_trend
        if t is not None:
            out.append(t.line())
            r = t.reclaimable.rate_bytes_per_s
            if r is not None:
                out.append(f"reclaimable Docker data {'+' if r >= 0 else ''}{human_bytes(r * 86400)}/day (24 h)")
        out.extend(c.line() for c in self.last_churn[:3])
        return out

    # ------------------------------------------------------------------ tick

    def _observer(self, policy: Policy) -> StorageObserver | None:
        if self._client is None:
            try:
                self._client = connect(self.ctx.settings.docker_host, timeout_s=policy.storage.df_timeout_s)
            except ENGINE_ERRORS as e:
                log.warning("storage: engine unreachable: %s", e)
                return None
        return StorageObserver(self._client, command_timeout_s=policy.storage.command_timeout_s, which=self.which)

    def _load_desired(self) -> DesiredState | None:
        s = self.ctx.settings
        try:
            self._desired = load_inventory(s.inventory, s.node)
        except ConfigError as e:  # keep the last good one; without one, no recipe
            log.error("storage: inventory unreadable, %s: %s", "keeping the last good one" if self._desired
                      else "the recipe will not run", e)
        return self._desired

    def tick(self) -> None:
        ctx = self.ctx
        assert ctx is not None and self.samples is not None and self.store is not None
        policy = ctx.policy()
        now = self.clock()
        observer = self._observer(policy)
        report = observer.collect(now) if observer is not None else StorageReport(
            now, None, None, engine_error="Docker engine unreachable")
        if report.engine_error:
            self._client = None  # reconnect next tick
            report = self._filesystem_only(report)
        world = ctx.world()
        host = world.host if world is not None else None
        self.samples.add(report, host)  # also records image tags, before the recipe may remove them
        if time.monotonic() - self._retention_at > RETENTION_EVERY_S:
            self._retention_at = time.monotonic()
            self.samples.apply_retention(now, policy)
        report, status = self._relieve(report, policy, now, observer)
        if self.last_run is not None and self.last_run.ran:
            self.samples.add(report, host)  # the state after the recipe is a sample too
        trend = None
        if report.filesystem is not None:
            since = now - timedelta(seconds=policy.storage.long_window_s)
            trend = disk_trend(self.samples.samples(report.filesystem.path, since), now=report.observed_at,
                               policy=policy)
        day = datetime(now.year, now.month, now.day, tzinfo=timezone.utc)
        churned = churn(self.samples.images_seen(), report.images, day_start=day) if not report.engine_error else []
        drifts: list[Drift] = []
        storage_drift = self._storage_drift(report, policy, now, status)
        if storage_drift is not None:
            drifts.append(storage_drift)
        td = trend_drift(trend, policy)
        if td is not None:
            drifts.append(td)
        drifts.extend(self._housekeeping(policy, now))
        before = {d.key for d in self.drifts()}
        with self._state:
            self.last_report, self.last_trend, self.last_churn = report, trend, churned
        self.set_drifts(drifts)
        fs = report.filesystem
        self._pressure = fs is not None and fs.percent > policy.thresholds.disk_warn_percent
        if {d.key for d in drifts} != before or (self.last_run is not None and self.last_run.ran):
            ctx.wake()

    def _filesystem_only(self, report: StorageReport) -> StorageReport:
        """Without the engine, still measure the last known root dir's filesystem
        (samples and the trend go on; the Docker breakdown is unknown)."""
        last = self.last_report
        if last is None or not last.root_dir:
            return report
        try:
            fs = filesystem_of(last.root_dir)
        except OSError:
            return report
        return dataclasses.replace(report, driver=last.driver, root_dir=last.root_dir, filesystem=fs)

    def _may_act(self, policy: Policy, now: datetime) -> str | None:
        """None when the worker may act now, else why not."""
        mode = self.ctx.mode()
        if mode is not Mode.AUTO:
            return f"mode {mode.value}"
        if in_maintenance(policy.guardrails.maintenance, now):
            return "maintenance window"
        return None

    def _relieve(self, report: StorageReport, policy: Policy, now: datetime,
                 observer: StorageObserver) -> tuple[StorageReport, str]:
        """Run the recipe when due. Returns the newest report and a status text for the drift."""
        self.last_run = None
        fs = report.filesystem
        crit = policy.thresholds.disk_critical_percent
        if report.engine_error or fs is None or fs.percent <= crit:
            self._last_escalation = None
            return report, ""
        desired = self._load_desired()
        if desired is None:
            return report, "recipe not run: the inventory cannot be read"
        keep = keep_for_report(report, desired=desired, store=self.store, policy=policy)
        plans = plan_recipe(report, keep, policy, now=now)
        would = "; ".join(f"tier {p.tier} ~{human_bytes(p.bytes)}" for p in plans)
        why_not = self._may_act(policy, now)
        if why_not is None and self.ctx.world() is None:
            why_not = "waiting for the first reconcile pass"
        if why_not is None and time.monotonic() < self._futile_until:
            why_not = "the last run removed nothing; retrying within the hour"
        if why_not is not None or not policy.storage.tiers:
            why_not = why_not or "no tiers enabled (storage.tiers)"
            total = sum(p.bytes for p in plans)
            return report, f"{why_not}: the recipe would free ~{human_bytes(total)} ({would or 'no tiers'})"
        run = run_recipe(observer, Pruner(self._client), policy=policy, threshold_percent=crit, clock=self.clock,
                         node=self.ctx.node, emit=self.ctx.emit, report=report,
                         keep_for=lambda r: keep_for_report(r, desired=desired, store=self.store, policy=policy))
        self.last_run = run
        if run.ran and not any(t.result.removed for t in run.tiers if t.result is not None):
            self._futile_until = time.monotonic() + RECIPE_BACKOFF_S  # do not retry failures every minute
        with self._state:
            self._notes.extend(t.line() for t in run.tiers if t.result is not None)
        if run.below:
            self._last_escalation = None
            return run.after, ""
        text = run.escalation(policy.storage.top_n)
        key = "|".join(sorted(v.name for v in volume_advice(run.after)))
        if run.ran or self._last_escalation != key:
            self._last_escalation = key
            with self._state:
                self._escalations.append(f"[P1] {subject_of(run.after)}: {text}")
            self.ctx.emit(Event(
                type=EventType.RECONCILE_BLOCKED, ts=self.clock(), node=self.ctx.node, service=subject_of(run.after),
                drift=DriftKind.RESOURCE_PRESSURE.value, priority="P1", action="prune", reason=text,
                details={"tiers": [t.line() for t in run.tiers], "bytes_freed": run.bytes_freed,
                         "volumes": [{"name": v.name, "bytes": v.size_bytes, "ref_count": v.ref_count}
                                     for v in volume_advice(run.after)],
                         "stopped": run.stopped}))
        return run.after, f"the recipe freed {human_bytes(run.bytes_freed)} and stopped ({run.stopped})"

    def _storage_drift(self, report: StorageReport, policy: Policy, now: datetime, status: str) -> Drift | None:
        """The P1 breakdown drift, while the root dir's filesystem is above P1."""
        return storage_drift(report, policy, status)

    def _housekeeping(self, policy: Policy, now: datetime) -> list[Drift]:
        h = policy.housekeeping
        if not h.lock_globs and not h.worktree_globs:
            return []
        ts = now.timestamp()
        stale = stale_locks(hk.probe_locks(h.lock_globs, ts), h.lock_ttl_s)
        stale += stale_worktrees(hk.probe_worktrees(h.worktree_globs, ts, h.worktree_ttl_s), h.worktree_ttl_s)
        if stale and (h.remove_locks or h.remove_worktrees) and self._may_act(policy, now) is None:
            protected = [str(self.ctx.state_dir)] + ([self.last_report.root_dir] if self.last_report
                                                     and self.last_report.root_dir else [])
            done = hk.remove_stale(stale, locks=h.remove_locks, worktrees=h.remove_worktrees, now_ts=ts,
                                   lock_ttl_s=h.lock_ttl_s, worktree_ttl_s=h.worktree_ttl_s, protected=protected)
            for r in done:
                what = f"{r.item.kind} {r.item.path} ({r.item.why})"
                self.ctx.emit(Event(type=EventType.HOUSEKEEPING, ts=self.clock(), node=self.ctx.node,
                                    service=f"host:housekeeping:{r.item.kind}s", priority="P4",
                                    reason=f"removed stale {what}" if r.ok else f"stale {what}: {r.error}",
                                    details={"path": r.item.path, "kind": r.item.kind, "ok": r.ok,
                                             "error": r.error}))
                if r.ok:
                    with self._state:
                        self._notes.append(f"removed stale {what}")
            gone = {r.item.path for r in done if r.ok}
            stale = [s for s in stale if s.path not in gone]
        return housekeeping_drifts(stale)


def storage_drift(report: StorageReport, policy: Policy, status: str = "") -> Drift | None:
    """The storage worker's P1 breakdown drift, while the root dir's filesystem
    is above ``thresholds.disk_critical_percent``; None otherwise.

    Subject ``host:storage:<root dir>``, kind ``resource_pressure``; details
    ``resource`` "disk", ``level`` "critical", ``path`` (the root dir),
    ``mountpoint`` (its filesystem's mount point, as the host's
    ``host:disk:<path>`` drift names it: ``merge_disk_drifts`` and the incident
    key match the two on it), ``percent``, the breakdown, the top consumers,
    the volumes to review and ``recipe`` (``status``: what the recipe did or why not).
    """
    fs = report.filesystem
    crit = policy.thresholds.disk_critical_percent
    if report.engine_error or fs is None or fs.percent <= crit:
        return None
    full = report.to_json(policy.storage.top_n)
    reason = f"Docker storage: {fs.path} {fs.percent:.1f}% full (> {crit:g}%): {report.breakdown_line()}"
    if status:
        reason += f"; {status}"
    return Drift(DriftKind.RESOURCE_PRESSURE, subject_of(report), reason=reason, details={
        "resource": "disk", "level": "critical", "path": fs.path, "percent": fs.percent,
        "mountpoint": fs.mount_point, "threshold_percent": crit, "driver": report.driver,
        "root_dir": report.root_dir,
        "breakdown": {k: full[k] for k in ("images", "containers", "volumes", "build_cache")},
        "top": full["top"], "recipe": status,
        "volumes": [{"name": v.name, "bytes": v.size_bytes, "ref_count": v.ref_count}
                    for v in volume_advice(report, policy.storage.top_n)],
    })
