"""One reconcile pass: world state -> drift -> assess -> recommend -> decide ->
execute -> record.

:meth:`Reconciler.evaluate` is side-effect free (it reads the store but writes
nothing) and backs ``status``/``drift``; :meth:`Reconciler.run_pass` also
records events, judges earlier actions (the closed loop), updates guard
records and executes what the guardrails allow. The pure decisions live in
``reconcile/``; this module only wires them to the store, the event log and
the executor.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import AbstractSet, Any, Sequence

from dockwarden.actions import ActionProtocol, ActionRunner
from dockwarden.config import Policy
from dockwarden.db import is_storage_error
from dockwarden.execute import Executor, compose_target
from dockwarden.incidents import IncidentBook, Transition
from dockwarden.inventory import LabelledSpecs, merge_labelled
from dockwarden.model import (
    MUTATING_ACTIONS,
    ActionKind,
    ActionRecord,
    CircuitState,
    ContainerState,
    Decision,
    DesiredState,
    Drift,
    DriftKind,
    Event,
    EventType,
    Finding,
    GuardRecord,
    IntentRecord,
    Mode,
    Outcome,
    RecommendationType,
    ServiceHistory,
    SummaryState,
    WorldState,
    parse_time,
    utcnow,
)
import dockwarden.reconcile.policy as policy_mod
from dockwarden.reconcile.assess import assess, summarize
from dockwarden.reconcile.drift import detect_drift, effective_intent, merge_disk_drifts
from dockwarden.reconcile.resolve import find_container
from dockwarden.reconcile.recommend import recommend_all
from dockwarden.sinks.events import EventLog
from dockwarden.store import Store

log = logging.getLogger(__name__)

#: At most this many actions of one pass run at once.
MAX_PARALLEL_ACTIONS = 8

#: Drift kinds that mean "the service is not serving"; their resolution is a recovery.
DOWN_KINDS = frozenset(
    {DriftKind.MISSING, DriftKind.STOPPED, DriftKind.UNHEALTHY, DriftKind.CRASH_LOOP, DriftKind.FAILED_DEPLOYMENT}
)


def _HOST_OR_NODE(subject: str) -> bool:
    """Subjects that can be judged without seeing the engine: the host and the node."""
    return subject.startswith(("host:", "node:"))


@dataclass
class Evaluation:
    """What one evaluation of the world found and would do (no side effects)."""

    world: WorldState
    desired: DesiredState
    intents: dict[str, IntentRecord]
    histories: dict[str, ServiceHistory]
    findings: list[Finding]
    decisions: list[Decision]
    summary: SummaryState
    label_problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """Nagios plugin convention: 0 nominal, 1 degraded/reconciling, 2 unstable,
        3 could not check (engine unreachable)."""
        if not self.world.engine_ok:
            return 3
        return {
            SummaryState.NOMINAL: 0,
            SummaryState.DEGRADED: 1,
            SummaryState.RECONCILING: 1,
            SummaryState.UNSTABLE: 2,
        }[self.summary]


@dataclass
class PassResult:
    evaluation: Evaluation
    executed: list[tuple[Decision, Any]] = field(default_factory=list)
    requeue_after_s: float | None = None


class Reconciler:
    """Wires the pure core to the store, the event log and the executor.

    Args:
        store: the SQLite store.
        events: the event log sink.
        executor: carries out actions (None: never act, e.g. read-only status).
        policy: thresholds and guardrails.
        desired: the inventory's desired state (labelled containers are merged
            in each pass).
        mode: the global mode (``--mode`` or the policy's).
    """

    def __init__(
        self,
        *,
        store: Store,
        events: EventLog | None,
        executor: Executor | None,
        policy: Policy,
        desired: DesiredState,
        mode: Mode,
        incidents: IncidentBook | None = None,
        protocol: ActionProtocol | None = None,
        runner: ActionRunner | None = None,
    ):
        self.incidents = incidents
        self.store = store
        self.events = events
        self.executor = executor
        self.policy = policy
        self.desired = desired
        self.mode = mode
        # The action protocol (record, carry out, judge); without one nothing is acted on.
        self.protocol = protocol
        # Runs actions off the caller's thread (the daemon); None runs them in the pass.
        self.runner = runner
        # Last recommendation event per subject, so a standing recommendation is
        # recorded once, not once per pass. Bounded: subjects of the last pass only.
        self._last_rec: dict[str, tuple[str, str, bool, bool]] = {}
        self._spec_cache: dict[str, dict[str, Any]] | None = None
        self._labelled: LabelledSpecs = {}  # merge_labelled's memo
        self._spec_seen: dict[str, datetime] = {}  # service -> when its spec was last seen (Store.spec_times)

    # ------------------------------------------------------------------ evaluate (read-only)

    def _histories(self, desired: DesiredState) -> dict[str, ServiceHistory]:
        guards = self.store.guards()
        pending = self.store.pending_actions()
        specs = self._specs()
        stats = self.store.action_stats()
        out = {}
        for name in desired.services:
            failed, last = stats.get(name, (0, None))
            out[name] = ServiceHistory(
                guard=guards.get(name, GuardRecord(service=name)),
                pending=pending.get(name),
                recorded_spec=specs.get(name),
                last_failure=last,
                failed_actions_in_row=failed,
            )
        return out

    def evaluate(self, world: WorldState, *, now: datetime, extra_drifts: Sequence[Drift] = (),
                 held: AbstractSet[str] = frozenset(), desired: DesiredState | None = None,
                 label_problems: list[str] | None = None) -> Evaluation:
        """Compute drift, findings, recommendations and guardrail decisions.

        Args:
            world: the observed world state.
            now: the pass's time (UTC).
            extra_drifts: drifts found by background workers (storage, housekeeping,
                pool...) to assess and recommend on with the rest.
            held: services whose operator stop is under way (``OperatorIntent.held``).
            desired: the desired state with labelled services merged, when the
                caller has it already (one merge per pass).
        Reads the store (intents, guard records, specs); writes nothing.
        """
        if desired is None:
            desired, problems = merge_labelled(self.desired, world.containers, self.policy.labels, self._labelled)
        else:
            problems = list(label_problems or [])
        intents = self.store.intents()
        histories = self._histories(desired)
        drifts = detect_drift(desired, world, intents, histories, self.policy, now=now) + list(extra_drifts)
        if self.incidents is not None:
            drifts += self.incidents.unresolved_drifts(now=now, policy=self.policy)
        drifts = merge_disk_drifts(drifts)
        findings = assess(drifts, self.policy)
        recs = recommend_all(findings, world=world, desired=desired, histories=histories)
        decisions = []
        for rec in recs:
            spec = desired.services.get(rec.subject)
            hist = histories.get(rec.subject)
            intent = effective_intent(spec, intents.get(rec.subject)) if spec else None
            mode = policy_mod.service_mode(self.mode, spec, self.policy)
            decisions.append(
                policy_mod.decide(
                    rec, mode=mode, intent=intent, guard=hist.guard if hist else None,
                    spec=spec, policy=self.policy, now=now, pending=hist.pending if hist else None,
                    held=rec.subject in held,
                )
            )
        blocked = {
            n for n, h in histories.items() if h.guard.circuit == CircuitState.OPEN
        } | {d.recommendation.subject for d in decisions if d.blocked}
        in_flight = {n for n, h in histories.items() if h.pending is not None}
        summary = summarize(findings, blocked=blocked, in_flight=in_flight)
        return Evaluation(world, desired, intents, histories, findings, decisions, summary, problems)

    # ------------------------------------------------------------------ run_pass (records and acts)

    def _emit(self, type_: EventType, *, now: datetime, **kw: Any) -> None:
        if self.events is None:
            return
        self.events.send(Event(type=type_, ts=now, node=self.desired.node, **kw))

    def run_pass(self, world: WorldState, *, now: datetime, extra_drifts: Sequence[Drift] = (),
                 full_pass: bool = True, held: AbstractSet[str] = frozenset(),
                 recovering: bool = False) -> PassResult:
        """One full reconcile pass over a world snapshot.

        ``recovering``: a recovery session runs (engine restart, node back): the
        services' down-drifts open no incidents until it ends.

        Order: record specs; judge pending actions against this observation;
        reset guard records of stable services; evaluate; record drift
        transitions and recoveries; record recommendations (once per change);
        start what the guardrails allow (off the loop when a runner is set);
        update incidents; record the summary when it changes.
        Returns the evaluation, what was started and when to look again.
        """
        desired, problems = merge_labelled(self.desired, world.containers, self.policy.labels, self._labelled)
        if world.engine_ok:
            self._record_specs(desired, world, now)
            self._judge_pending(desired, world, now)
        ev = self.evaluate(world, now=now, extra_drifts=extra_drifts, held=held, desired=desired,
                           label_problems=problems)
        held_drifts: set[tuple[str, str]] = set()
        if world.engine_ok:
            self._update_stability(ev, now)
            held_drifts = self._record_drift_transitions(ev, now)
        else:
            # The engine cannot be seen: host and node drifts (a full disk, the node
            # offline) are recorded; the services' drifts are unknown, not resolved.
            held_drifts = self._record_drift_transitions(ev, now, scope=_HOST_OR_NODE)
            if self.incidents is not None:
                held_drifts |= {k for k in self.incidents.active() if not _HOST_OR_NODE(k[0])}
        result = PassResult(evaluation=ev)
        requeue: list[float] = []
        to_run: list[Decision] = []
        for decision in ev.decisions:
            self._record_recommendation(decision, now)
            if decision.open_circuit:
                g = ev.histories.get(decision.recommendation.subject)
                if g is not None and g.guard.circuit != CircuitState.OPEN:
                    self.store.put_guard(policy_mod.open_circuit(g.guard, now=now, message=decision.reason))
            if decision.execute and world.engine_ok and self.executor is not None and self.protocol is not None:
                to_run.append(decision)
            if decision.requeue_after_s is not None:
                requeue.append(decision.requeue_after_s)
        subjects = {d.recommendation.subject for d in ev.decisions}
        for gone in [k for k in self._last_rec if k not in subjects]:
            del self._last_rec[gone]  # bounded by the subjects of this pass
        # Actions of one pass are independent: a service whose dependency is down
        # got `delay`, not an action. So they run concurrently (a recovery of 30
        # services is not 30 sequential `docker start`s).
        started = [(d, self._begin(d, ev, now)) for d in to_run]
        started = [(d, x) for d, x in started if x is not None]
        if self.runner is not None:
            for decision, (rec, call) in started:
                self.runner.submit(rec, call, context=decision)
                result.executed.append((decision, None))
        else:
            def run(item):
                decision, (rec, call) = item
                return self.protocol.carry_out(rec, call)  # type: ignore[union-attr]

            if len(started) == 1:
                outcomes = [run(started[0])]
            elif started:
                with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_ACTIONS, len(started))) as pool:
                    outcomes = list(pool.map(run, started))
            else:
                outcomes = []
            for (decision, (rec, _)), outcome in zip(started, outcomes):
                self.on_action_done(rec, outcome, decision)
                result.executed.append((decision, outcome))
                if not outcome.ok and not outcome.permanent:
                    requeue.append(max(self.policy.backoff.initial_delay_s, 0.5))
        if self.incidents is not None:
            try:
                seen = ev.findings if world.engine_ok else [f for f in ev.findings if _HOST_OR_NODE(f.subject)]
                if recovering:
                    # A recovery session brings the services back and reports once (recovery_completed,
                    # with what failed): no incident, no message per service meanwhile (no storm).
                    seen = [f for f in seen if not (f.drift.tracked and (f.drift.kind in DOWN_KINDS or f.drift.kind
                                                                         is DriftKind.DEPENDENCY_UNAVAILABLE))]
                if held:
                    # An operator's stop under way (its `kill` seen, its `die` not yet read): the
                    # pass may see the container down before the `die` says whose stop it was
                    # (a SIGTERM-deaf process killed after `docker stop`'s timeout). Nobody is
                    # told of an incident that the next event turns into the operator's intent.
                    seen = [f for f in seen if not (f.subject in held and f.drift.kind in DOWN_KINDS)]
                transitions = self.incidents.update(seen, now=now, policy=self.policy, full_pass=full_pass,
                                                    hold=held_drifts)
            except sqlite3.OperationalError as e:
                if not is_storage_error(e):
                    raise
                # Incidents are level-based: the next pass that can write opens them.
                log.error("incidents: cannot write (%s); they follow once the state dir is writable", e)
                transitions = []
            for t in transitions:
                self._record_incident(t, ev, now)
        # An unjudged action wants another look even if no event arrives.
        if any(h.pending for h in ev.histories.values()):
            requeue.append(2.0)
        result.requeue_after_s = min(requeue) if requeue else None
        summary = ev.summary
        if result.executed:
            summary = SummaryState.RECONCILING if summary != SummaryState.UNSTABLE else summary
        self._record_summary(summary, ev, now)
        ev.summary = summary
        return result

    # ------------------------------------------------------------------ steps

    def _record_specs(self, desired: DesiredState, world: WorldState, now: datetime) -> None:
        """Record each tracked container's creation spec when it changed (a write
        transaction only then: this runs on every pass)."""
        specs = self._specs()
        seen = self._spec_seen
        for gone in [k for k in specs if k not in desired.services]:
            del specs[gone]  # in memory only; the table keeps them (retention bounds it)
        for spec in desired.services.values():
            c = find_container(spec, world)
            if c is None or not c.spec:
                continue
            if specs.get(spec.name) != c.spec:
                self.store.put_spec(spec.name, c.name, c.spec, now)
                specs[spec.name] = c.spec
                seen[spec.name] = now
            elif c.created_at is not None and (spec.name not in seen or seen[spec.name] < c.created_at):
                # The same spec on a newer container (a recreate with the same options):
                # one write, so a sparse `once` need not inspect it again.
                self.store.touch_spec(spec.name, c.name, now)
                seen[spec.name] = now

    def invalidate_specs(self) -> None:
        """Read the recorded specs from the store again at the next pass (another
        thread recorded one: a failover to this node)."""
        self._spec_cache = None

    def _specs(self) -> dict[str, dict[str, Any]]:
        """Recorded specs, read from the store once and then kept up to date here
        (the daemon is their only writer)."""
        if self._spec_cache is None:
            self._spec_cache = self.store.specs()
            self._spec_seen = self.store.spec_times()
        return self._spec_cache

    def _judge_pending(self, desired: DesiredState, world: WorldState, now: datetime) -> None:
        for service, pending in self.store.pending_actions().items():
            spec = desired.services.get(service)
            container = find_container(spec, world) if spec else None
            verdict = policy_mod.judge(pending, container, now=now, policy=self.policy)
            if verdict == "pending":
                continue
            self.store.judge_action(pending.id, verdict, now)  # the action's uid
            details = {"action_id": pending.id, "seconds": round((now - pending.started_at).total_seconds(), 3)}
            if container is not None:
                details.update(state=container.state, health=container.health, exit_code=container.exit_code)
            if verdict == "succeeded":
                self._emit(EventType.ACTION_SUCCEEDED, now=now, service=service, container=pending.container,
                           action=pending.action.value, drift=pending.drift.value if pending.drift else None,
                           reason=f"{pending.action.value} brought {service} back to running", details=details)
            else:
                why = "still not running" if container is None or not container.running else "unhealthy"
                if container is None:
                    why = "container missing"
                self._emit(EventType.ACTION_FAILED, now=now, service=service, container=pending.container,
                           action=pending.action.value, drift=pending.drift.value if pending.drift else None,
                           reason=f"{pending.action.value} did not bring {service} back: {why}", details=details)

    def _update_stability(self, ev: Evaluation, now: datetime) -> None:
        drifting = {f.subject for f in ev.findings}
        for name, hist in ev.histories.items():
            spec = ev.desired.services[name]
            c = find_container(spec, ev.world)
            g2 = policy_mod.observe_stability(hist.guard, container=c, drifting=name in drifting, now=now, policy=self.policy)
            if g2 != hist.guard:
                self.store.put_guard(g2)
                if hist.guard.circuit == CircuitState.OPEN and g2.circuit == CircuitState.CLOSED:
                    self._emit(EventType.RECOVERED, now=now, service=name, container=c.name if c else None,
                               reason=f"{name} ran stable; circuit closed and backoff reset")
                ev.histories[name] = dataclasses.replace(hist, guard=g2)

    def _record_drift_transitions(self, ev: Evaluation, now: datetime,
                                  scope: Any = None) -> set[tuple[str, str]]:
        """Record drift_detected/drift_resolved/recovered; returns the drifts held
        open because their service is up but not yet healthy. With ``scope`` (a
        predicate on the subject), only drifts of subjects in scope are opened or
        resolved."""
        open_before = self.store.open_drifts()
        if scope is not None:
            open_before = {k: v for k, v in open_before.items() if scope(k[0])}
        current: dict[tuple[str, str], Finding] = {f.drift.key: f for f in ev.findings
                                                   if scope is None or scope(f.subject)}
        for key, f in current.items():
            if key not in open_before:
                d = f.drift
                self.store.open_drift(d.subject, d.kind.value, d.container, str(f.priority), d.reason, now)
                self._emit(EventType.DRIFT_DETECTED, now=now, service=d.subject, container=d.container,
                           drift=d.kind.value, priority=str(f.priority), reason=d.reason,
                           details={**d.details, "tracked": d.tracked})
        recovered_subjects: dict[str, list[dict[str, Any]]] = {}
        held: set[tuple[str, str]] = set()
        world_by_name = ev.world.by_name()
        for key, row in open_before.items():
            if key in current:
                continue
            if key[1] in DOWN_KINDS and self._health_starting(key[0], ev, world_by_name):
                held.add(key)
                continue  # back up, but not yet proven healthy: resolve on the health_status event
            self.store.resolve_drift(*key)
            since = row.get("since")
            self._emit(EventType.DRIFT_RESOLVED, now=now, service=key[0], container=row.get("container"),
                       drift=key[1], priority=row.get("priority"), reason=f"{key[1]} resolved",
                       details={"since": since})
            if key[1] in DOWN_KINDS:
                recovered_subjects.setdefault(key[0], []).append(row)
        # A service is recovered when its down-drifts are gone and nothing else keeps it down.
        still_down = {f.subject for f in ev.findings if f.drift.kind in DOWN_KINDS}
        for subject, rows in recovered_subjects.items():
            if subject in still_down:
                continue
            spec = ev.desired.services.get(subject)
            c = find_container(spec, ev.world) if spec else world_by_name.get(subject)
            if c is None or not c.running:
                continue
            starts = [t for t in (parse_time(r.get("since")) for r in rows) if t]
            downtime = (now - min(starts)).total_seconds() if starts else None
            self._emit(EventType.RECOVERED, now=now, service=subject, container=c.name,
                       drift=",".join(sorted(r["kind"] for r in rows)),
                       reason=f"{subject} is running again" + (f" after {downtime:.1f} s" if downtime is not None else ""),
                       details={"downtime_s": round(downtime, 3) if downtime is not None else None,
                                "health": c.health})
        return held

    @staticmethod
    def _health_starting(subject: str, ev: Evaluation, world_by_name: dict[str, ContainerState]) -> bool:
        spec = ev.desired.services.get(subject)
        c = find_container(spec, ev.world) if spec else world_by_name.get(subject)
        return c is not None and c.running and c.health == "starting"

    def _record_recommendation(self, d: Decision, now: datetime) -> None:
        rec = d.recommendation
        key = (d.event_type.value, rec.action.value, d.execute, d.blocked)
        if self._last_rec.get(rec.subject) == key and not d.execute:
            return
        self._last_rec[rec.subject] = key
        etype = {
            RecommendationType.REQUIRED: EventType.RECONCILE_REQUIRED,
            RecommendationType.RECOMMENDED: EventType.RECONCILE_RECOMMENDED,
            RecommendationType.BLOCKED: EventType.RECONCILE_BLOCKED,
        }[d.event_type]
        reason = rec.reason if (d.execute or d.reason == rec.reason) else f"{rec.reason} — {d.reason}"
        extra: dict[str, Any] = {}
        if etype == EventType.RECONCILE_BLOCKED:
            extra = {"tried": self.store.tried_since(rec.subject, now - timedelta(hours=1)),
                     "todo": "; ".join([d.reason, *rec.advice])}
        self._emit(etype, now=now, service=rec.subject, container=rec.container, drift=rec.finding.drift.kind.value,
                   priority=str(rec.finding.priority), action=rec.action.value, reason=reason,
                   details={"advice": list(rec.advice), "execute": d.execute, "decision": d.reason,
                            "requeue_after_s": d.requeue_after_s, **rec.details, **extra})

    def _begin(self, d: Decision, ev: Evaluation, now: datetime):
        """Record one action (guard attempt, action record, ``action_started``) and
        return ``(record, call)``; None when it cannot be recorded or has nothing to run."""
        rec = d.recommendation
        name = rec.subject
        spec = ev.desired.services.get(name)
        hist = ev.histories.get(name)
        if (rec.action not in MUTATING_ACTIONS or spec is None or hist is None or self.executor is None
                or self.protocol is None):
            return None
        c = find_container(spec, ev.world)
        container = c.name if c is not None else (rec.container or spec.container_name)
        compose = compose_target(spec) if rec.action == ActionKind.COMPOSE_UP else None
        guard = policy_mod.record_attempt(hist.guard, now=now, policy=self.policy, spec=spec)
        try:
            self.store.put_guard(guard)
            action = self.protocol.begin(
                service=name, container=container, container_id=c.id if c is not None else None,
                action=rec.action, drift=rec.finding.drift.kind, priority=str(rec.finding.priority),
                reason=rec.reason, now=now, stop_timeout_s=spec.stop_timeout_s,
                details={"attempt": guard.attempts,
                         "next_attempt_not_before": guard.next_attempt.isoformat() if guard.next_attempt else None})
        except Exception as e:  # no record, no action: an unrecorded action would read as the operator's
            log.error("%s: cannot record %s, not acting: %s", name, rec.action.value, e)
            return None
        call = functools.partial(self.executor.run, rec.action, service=name, container=container,
                                 spec=hist.recorded_spec, compose=compose, stop_timeout_s=spec.stop_timeout_s)
        return action, call

    def on_action_done(self, action: ActionRecord, outcome: Outcome, d: Decision | None) -> None:
        """An action finished (in the pass, or reported by the runner to the loop):
        a permanent failure opens the circuit and asks a person to look."""
        if outcome.ok or not outcome.permanent:
            return
        name = action.service
        done = utcnow()
        msg = (f"{action.action.value} failed with a configuration error: {outcome.error}; "
               f"fix it, then `dockwarden resume {name}`")
        self.store.put_guard(policy_mod.open_circuit(self.store.guard(name), now=done, message=msg))
        self._last_rec[name] = (EventType.RECONCILE_BLOCKED.value, ActionKind.DIAGNOSTICS.value, False, True)
        self._emit(EventType.RECONCILE_BLOCKED, now=done, service=name, container=action.container,
                   drift=action.drift.value if action.drift else None, priority="P2",
                   action=ActionKind.DIAGNOSTICS.value, reason=msg,
                   details={"error": outcome.error, "action_id": action.uid})

    def _record_incident(self, t: Transition, ev: Evaluation, now: datetime) -> None:
        inc = t.incident
        tried = self.store.tried_since(inc.subject, inc.opened_at)
        todo = None
        for d in ev.decisions:
            if d.recommendation.subject in (inc.subject, t.finding and t.finding.subject):
                rec = d.recommendation
                todo = "; ".join([rec.reason, *rec.advice]) if d.execute or not d.blocked else d.reason
                if d.execute:
                    todo = f"dockwarden is acting: {rec.action.value} ({rec.reason})"
        details: dict[str, Any] = {"incident_id": inc.id, "since": inc.opened_at.isoformat().replace("+00:00", "Z"),
                                   "tried": tried, "todo": todo}
        if inc.details.get("top_consumers"):
            details["top_consumers"] = inc.details["top_consumers"]
        common = dict(service=inc.subject, container=inc.container, drift=inc.kind, priority=inc.priority)
        if t.kind == "opened":
            self._emit(EventType.INCIDENT_OPENED, now=now, reason=f"incident #{inc.id}: {inc.reason}",
                       details=details, **common)
        elif t.kind == "reopened":
            self._emit(EventType.INCIDENT_REOPENED, now=now,
                       reason=f"incident #{inc.id} reopened (flap {inc.flaps}): {inc.reason}; it resolves after "
                              f"{self.policy.incidents.flap_window_s:g} s without the drift",
                       details={**details, "flaps": inc.flaps}, **common)
        elif t.kind == "escalated":
            self._emit(EventType.INCIDENT_ESCALATED, now=now,
                       reason=f"incident #{inc.id} escalated {t.previous_priority} -> {inc.priority}: {inc.reason}",
                       details={**details, "previous_priority": t.previous_priority}, **common)
        elif t.kind == "reminder":
            age = (now - inc.opened_at).total_seconds()
            self._emit(EventType.INCIDENT_REMINDER, now=now,
                       reason=f"incident #{inc.id} still open after {age / 3600:.1f} h: {inc.reason}",
                       details=details, **common)
        else:
            dur = ((inc.resolved_at or now) - inc.opened_at).total_seconds()
            details["duration_s"] = round(dur, 3)
            details["todo"] = None
            self._emit(EventType.INCIDENT_RESOLVED, now=now,
                       reason=f"incident #{inc.id} resolved after {dur:.0f} s: {inc.subject} {inc.kind} is gone",
                       details=details, **common)

    def _record_summary(self, summary: SummaryState, ev: Evaluation, now: datetime) -> None:
        state = summary.value if ev.world.engine_ok else "unknown"
        before = self.store.checkpoint("summary")
        if before == state:
            return
        self.store.set_checkpoint("summary", state)
        counts: dict[str, int] = {}
        for f in ev.findings:
            counts[str(f.priority)] = counts.get(str(f.priority), 0) + 1
        self._emit(EventType.SUMMARY_CHANGED, now=now, reason=f"summary {before or 'none'} -> {state}",
                   details={"from": before, "to": state, "findings": counts,
                            "engine_error": ev.world.engine_error})

