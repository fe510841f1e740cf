"""Several nodes in one dockwarden: the fleet's view and the opt-in failover.

One :class:`~dockwarden.node_loop.NodeLoop` per node supervises that node alone.
This module holds what needs more than one node (issue 11):

* the fleet status document (``status.json``: the worst summary, then one
  document per node), and who is online (failover candidates);
* **failover, opt-in**: a service with ``failover: auto`` whose node has been
  offline for ``failover_after_s``, that has a recorded spec and whose image is
  present on the target, is created on the first online node of its
  ``failover_to`` (``failed_over``; intent ``running``, source ``failover``, on
  the target). When the original node answers again, the original container is
  stopped there *before* anything else is started on it (its intent there
  becomes ``stopped``, source ``failover``), so the service never runs twice;
  moving it back is a person's decision (``failback_review``), never automatic.

Failovers are recorded in ``dockwarden.db`` (component ``fleet``) so a daemon
restart keeps them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockwarden.db import FeatureDB
from dockwarden.execute import Executor
from dockwarden.model import (ActionKind, Event, EventType, Intent, IntentSource, ServiceSpec, SummaryState,
                              WorldState, rfc3339, utcnow)
from dockwarden.observe.docker import ENGINE_ERRORS, image_present
from dockwarden.reconcile.drift import effective_intent
from dockwarden.reconcile.resolve import find_container
from dockwarden.report import write_status

if TYPE_CHECKING:  # the loops are passed in; no import cycle at run time
    from dockwarden.node_loop import NodeLoop

log = logging.getLogger(__name__)

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE failovers (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            service TEXT NOT NULL,
            origin TEXT NOT NULL,
            target TEXT NOT NULL,
            at TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('active', 'origin_stopped')),
            spec TEXT NOT NULL
        )""",
        "CREATE UNIQUE INDEX failovers_service ON failovers (origin, service)",
    ),
}

#: Summary states from best to worst, for the fleet's summary (the worst node's).
_ORDER = {SummaryState.NOMINAL.value: 0, SummaryState.RECONCILING.value: 1, SummaryState.DEGRADED.value: 2,
          "unknown": 3, SummaryState.UNSTABLE.value: 4}


class FailoverBook(FeatureDB):
    """The failovers in force (``dockwarden.db``, component ``fleet``)."""

    COMPONENT = "fleet"
    MIGRATIONS = _MIGRATIONS

    def add(self, service: str, origin: str, target: str, spec: ServiceSpec, now: datetime) -> None:
        self._x("INSERT OR REPLACE INTO failovers (service, origin, target, at, state, spec) "
                "VALUES (?, ?, ?, ?, 'active', ?)",
                (service, origin, target, rfc3339(now), json.dumps(dataclasses.asdict(spec), default=str)))

    def all(self) -> list[dict[str, Any]]:
        """Every failover: service, origin, target, at, state, spec (dict)."""
        out = []
        for r in self._q("SELECT * FROM failovers ORDER BY id"):
            d = dict(r)
            d["spec"] = json.loads(d["spec"])
            out.append(d)
        return out

    def mark(self, origin: str, service: str, state: str) -> None:
        self._x("UPDATE failovers SET state = ? WHERE origin = ? AND service = ?", (state, origin, service))


def _spec_from_dict(d: dict[str, Any]) -> ServiceSpec:
    fields = {f.name for f in dataclasses.fields(ServiceSpec)}
    d = {k: v for k, v in d.items() if k in fields}
    d["depends_on"] = tuple(d.get("depends_on") or ())
    d["failover_to"] = tuple(d.get("failover_to") or ())
    d["desired"] = Intent(d.get("desired", "running"))
    d["source"] = IntentSource(d.get("source", "inventory"))
    from dockwarden.model import Remediation

    d["remediation"] = Remediation(d.get("remediation", "auto"))
    return ServiceSpec(**d)


class Fleet:
    """The nodes of one daemon, seen together.

    Args:
        loops: the node loops, by node name.
        events: records events (``EventLog.send``).
        state_dir: where ``status.json`` goes.
        book: the failovers in force.
    """

    def __init__(self, loops: dict[str, "NodeLoop"], events: Any, state_dir: Path, book: FailoverBook):
        self.loops = loops
        self.events = events
        self.state_dir = state_dir
        self.book = book
        self._lock = threading.Lock()
        for f in book.all():  # failovers in force survive a daemon restart
            t = loops.get(f["target"])
            if t is not None:
                t.extra_services[f["service"]] = _spec_from_dict(f["spec"])

    def online_nodes(self, exclude: str | None = None) -> list[str]:
        """Nodes whose engine answers now (failover candidates), in inventory order."""
        return [n for n, lp in self.loops.items() if n != exclude and lp.online]

    # ------------------------------------------------------------------ status

    def document(self) -> dict[str, Any]:
        """The fleet's status: the worst node summary, each node's document, and
        the freshness fields ``report.read_fresh`` needs."""
        docs = [lp.status_doc for lp in self.loops.values() if lp.status_doc is not None]
        worst = max((d["summary"] for d in docs), key=lambda s: _ORDER.get(s, 3), default="unknown")
        stale = max((d.get("stale_after_s") or 0 for d in docs), default=30.0)
        return {"node": "fleet", "summary": worst, "source": "daemon", "written_at": rfc3339(utcnow()),
                "stale_after_s": stale, "daemon_running": True,
                "nodes": [{**d, "node_state": lp.health.state.value}
                          for lp in self.loops.values() for d in ([lp.status_doc] if lp.status_doc else [])],
                "offline": [n for n, lp in self.loops.items() if not lp.online]}

    def publish_status(self) -> None:
        """Write the fleet's ``status.json`` (called by each node after its pass).

        Raises:
            OSError: the state dir cannot be written.
        """
        with self._lock:
            write_status(self.document(), self.state_dir)

    # ------------------------------------------------------------------ failover

    def _emit(self, type_: EventType, node: str, reason: str, **kw: Any) -> None:
        self.events(Event(type=type_, ts=utcnow(), node=node, reason=reason, **kw))

    def tick(self, now: datetime) -> None:
        """Fail over what may be: services with ``failover: auto`` of nodes offline
        for their ``failover_after_s``. Called every second by the daemon."""
        active = {(f["origin"], f["service"]) for f in self.book.all()}
        for origin, lp in self.loops.items():
            h = lp.health
            if lp.online or h.state.value != "offline" or h.since is None:
                continue
            if (now - h.since).total_seconds() < lp.node_cfg.failover_after_s:
                continue
            for name, spec in sorted(lp.base_desired.services.items()):
                if spec.failover != "auto" or not spec.failover_to or (origin, name) in active:
                    continue
                self._fail_over(lp, spec, now)

    def _fail_over(self, lp: "NodeLoop", spec: ServiceSpec, now: datetime) -> None:
        name, origin = spec.name, lp.name
        if effective_intent(spec, lp.store.intents().get(name)) is not Intent.RUNNING:
            return
        recorded = lp.store.specs().get(name)
        if not recorded:
            return  # nothing to create it from; the node_offline review lists it
        for target in spec.failover_to:
            t = self.loops.get(target)
            if t is None or not t.online or t.client is None:
                continue
            try:
                if not image_present(t.client, str(recorded.get("image") or "")):
                    continue
            except ENGINE_ERRORS:
                continue
            moved = dataclasses.replace(spec, node=target, failover_to=(), source=IntentSource.FAILOVER,
                                        origin=f"failed over from node {origin}")
            t.store.put_spec(name, spec.container_name, recorded, now)
            t.reconciler.invalidate_specs()
            t.store.set_intent(name, Intent.RUNNING, IntentSource.FAILOVER, now,
                               f"failed over from node {origin} (offline since {rfc3339(lp.health.since)})")
            self.book.add(name, origin, target, moved, now)
            t.extra_services[name] = moved
            self._emit(EventType.FAILED_OVER, target, f"{name}: node {origin} offline for "
                       f"{(now - lp.health.since).total_seconds():.0f} s; creating it on {target} from its "
                       "recorded spec", service=name, container=spec.container_name, priority="P1",
                       details={"origin": origin, "target": target})
            t.wake()
            return

    def node_back(self, lp: "NodeLoop", world: WorldState) -> None:
        """A node answers again: before its first pass, stop here the services
        that failed over elsewhere meanwhile (never run twice), record intent
        ``stopped`` here, and recommend a failback review. Called by the node's
        loop when it reconnects."""
        for f in self.book.all():
            if f["origin"] != lp.name or f["state"] != "active":
                continue
            name = f["service"]
            spec = lp.base_desired.services.get(name)
            now = utcnow()
            why = f"runs on {f['target']} since {f['at']} (failover); failback is a person's decision"
            lp.store.set_intent(name, Intent.STOPPED, IntentSource.FAILOVER, now, why)
            self._emit(EventType.INTENT_CHANGED, lp.name, f"{name}: intent stopped on node {lp.name}: {why}",
                       service=name, details={"intent": "stopped", "source": "failover", "target": f["target"]})
            c = find_container(spec, world) if spec is not None else None
            if c is not None and c.running and lp.client is not None:
                rec = lp.protocol.begin(service=name, container=c.name, container_id=c.id, action=ActionKind.STOP,
                                        reason=f"{name} runs on {f['target']} now (failover): stop its copy here first")
                lp.protocol.carry_out(rec, lambda: Executor(lp.client, stop_timeout_s=lp.reconciler.policy
                                                            .guardrails.stop_timeout_s).run(
                    ActionKind.STOP, service=name, container=c.name))
            self.book.mark(lp.name, name, "origin_stopped")
            self._emit(EventType.RECONCILE_RECOMMENDED, lp.name,
                       f"{name}: node {lp.name} is back; {name} runs on {f['target']} since {f['at']} "
                       f"(failover). To move it back: `dockwarden stop {name} --node {f['target']}`, then "
                       f"`dockwarden start {name} --node {lp.name}`", service=name, action="failback_review",
                       priority="P3", details={"origin": lp.name, "target": f["target"], "since": f["at"]})
