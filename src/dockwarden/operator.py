"""The operator's commands, one implementation for the CLI and the API:
``stop_service``, ``start_service``, ``pause_service``, ``resume_service``.

``stop``/``start`` record the operator's intent first, then act through the
action protocol (:mod:`dockwarden.actions`: recorded with an id before the
engine is called, so its Docker events are known as dockwarden's own), and
judge the action at once by inspecting the container (the daemon judges it
again with its next observation). ``pause``/``resume`` change the guard record.

Who asks is an :class:`~dockwarden.model.ActionBy` (``cli`` or ``api``): it is
written in the action record, the events and the intent's source. The callers
render :class:`OperatorResult`; nothing here prints or exits.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

from dockwarden.actions import ActionProtocol
from dockwarden.config import Policy
from dockwarden.execute import Executor, compose_target
from dockwarden.inventory import merge_labelled
from dockwarden.model import (ActionBy, ActionKind, ActionRecord, ContainerState, DesiredState, Event, EventType,
                              Intent, IntentSource, PendingAction, ServiceSpec, WorldState, rfc3339, utcnow)
from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver
from dockwarden.reconcile.drift import available
from dockwarden.reconcile.policy import judge, pause as pause_guard, resume as resume_guard
from dockwarden.reconcile.recommend import compose_command_text
from dockwarden.reconcile.resolve import find_container
from dockwarden.store import Store


class OperatorError(Exception):
    """An operator command cannot run.

    Attributes:
        code: 2 for bad input (unknown service), 3 when the engine is unreachable.
    """

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


@dataclass
class OperatorContext:
    """What one operator command works with.

    Attributes:
        policy: the policy in force.
        desired: the desired state with labelled containers merged in.
        spec: the service.
        store: the SQLite store (intents, guards, actions).
        emit: records an event (``EventLog.send``); thread-safe.
        client: a docker client of the engine.
        world: the containers just observed (no stats, no host).
        container: the service's container (``reconcile.resolve``), or None.
        by: who asks (``cli`` or ``api``).
    """

    policy: Policy
    desired: DesiredState
    spec: ServiceSpec
    store: Store
    emit: Callable[[Event], Any]
    client: Any
    world: WorldState
    container: ContainerState | None
    by: ActionBy = ActionBy.CLI

    @property
    def node(self) -> str:
        return self.desired.node


@dataclass
class OperatorResult:
    """What an operator command did.

    Attributes:
        ok: False when the action failed (exit 1 / HTTP 502) or could not run.
        service: the service name.
        message: one sentence for a person.
        action: the action record (uid, action, container, by, started_at,
            verdict, result, error) when one ran, else None.
        intent: the recorded intent after the command (stop/start), else None.
        guard: ``{"paused", "circuit"}`` after pause/resume/start, else None.
        warnings: notes for a person (e.g. dependencies not running).
    """

    ok: bool
    service: str
    message: str
    action: dict[str, Any] | None = None
    intent: str | None = None
    guard: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "service": self.service, "message": self.message, "action": self.action,
                "intent": self.intent, "guard": self.guard, "warnings": self.warnings}


def load_context(*, policy: Policy, desired: DesiredState, name: str, store: Store, emit: Callable[[Event], Any],
                 client: Any, by: ActionBy, world: WorldState | None = None) -> OperatorContext:
    """Observe the engine's containers (no stats) and resolve the service.

    Args:
        policy, desired: the configuration in force (the inventory's desired state).
        name: the service name.
        store: the SQLite store.
        emit: records an event.
        client: a docker client (None with ``world``: pause/resume need no engine).
        by: ``ActionBy.CLI`` or ``ActionBy.API``.
        world: an observation to resolve the service from instead of observing
            (the daemon's last one, for pause/resume, which change only the guard).
    Raises:
        OperatorError: code 3 when the engine does not answer, code 2 for an
            unknown service (the message lists the tracked ones).
    """
    if world is not None:
        containers = list(world.containers)
    else:
        try:
            containers = ContainerObserver(client, stats="none").observe(with_stats=False)
        except ENGINE_ERRORS as e:
            raise OperatorError(f"Docker engine unreachable: {e}", 3) from e
    merged, _ = merge_labelled(desired, containers, policy.labels)
    spec = merged.services.get(name)
    if spec is None:
        raise OperatorError(f"unknown service {name!r}; tracked services: "
                            f"{', '.join(sorted(merged.services)) or '(none)'}", 2)
    world = WorldState(node=merged.node, observed_at=utcnow(), host=None, containers=tuple(containers))
    return OperatorContext(policy, merged, spec, store, emit, client, world, find_container(spec, world), by)


def _emit(ctx: OperatorContext, type_: EventType, reason: str, **kw: Any) -> None:
    ctx.emit(Event(type=type_, ts=utcnow(), node=ctx.node, service=ctx.spec.name, reason=reason, **kw))


def _record_json(rec: ActionRecord, verdict: str, result: str | None, error: str | None) -> dict[str, Any]:
    return {"id": rec.uid, "action": rec.action.value, "service": rec.service, "container": rec.container,
            "by": rec.by.value, "started_at": rfc3339(rec.started_at), "verdict": verdict, "result": result,
            "error": error}


def _act(ctx: OperatorContext, action: ActionKind, reason: str) -> OperatorResult:
    """Run one operator-requested action through the action protocol, then judge
    it at once by inspecting the container.

    Raises:
        KeyboardInterrupt: re-raised (the protocol closed the action as interrupted).
    """
    spec, c = ctx.spec, ctx.container
    specs = ctx.store.specs()
    compose = None
    if action == ActionKind.START and c is None:
        if spec.compose_project:
            compose = compose_target(spec)
            if compose is None:
                cmd = compose_command_text(spec.compose_project, spec.compose_service or spec.name, [])
                return OperatorResult(False, spec.name, (
                    f"{spec.name}: no container; dockwarden runs compose only with a compose_file from the "
                    f"inventory. Run: {cmd} (with your -f file), or add compose_file to the inventory entry"))
            action = ActionKind.COMPOSE_UP
        elif spec.name in specs:
            action = ActionKind.RECREATE
        else:
            return OperatorResult(False, spec.name,
                                  f"{spec.name}: container {spec.container_name} does not exist and no spec is recorded")
    container = c.name if c is not None else spec.container_name
    stop_timeout_s = ctx.policy.guardrails.stop_timeout_s
    protocol = ActionProtocol(ctx.store, ctx.emit, ctx.node, by=ctx.by, stop_timeout_s=stop_timeout_s)
    rec = protocol.begin(service=spec.name, container=container, container_id=c.id if c is not None else None,
                         action=action, reason=reason, stop_timeout_s=spec.stop_timeout_s)
    call = functools.partial(Executor(ctx.client, stop_timeout_s=stop_timeout_s).run, action,
                             service=spec.name, container=container, spec=specs.get(spec.name), compose=compose,
                             stop_timeout_s=spec.stop_timeout_s)
    outcome = protocol.carry_out(rec, call)
    if not outcome.ok:
        return OperatorResult(False, spec.name, f"{spec.name}: {action.value} failed: {outcome.error}",
                              action=_record_json(rec, "failed", outcome.result, outcome.error))
    try:
        now_c = ContainerObserver(ctx.client, stats="none").inspect_one(container)
    except ENGINE_ERRORS:
        now_c = None
    pending = PendingAction(id=rec.uid, service=spec.name, container=container, action=action,
                            started_at=rec.started_at, finished=True, by=ctx.by)
    verdict = judge(pending, now_c, now=utcnow(), policy=ctx.policy)
    if verdict != "pending":
        ctx.store.judge_action(rec.uid, verdict, utcnow())
        if verdict == "succeeded":
            _emit(ctx, EventType.ACTION_SUCCEEDED, f"{action.value}: {outcome.result}", container=container,
                  action=action.value, details={"action_id": rec.uid, "by": ctx.by.value})
    return OperatorResult(True, spec.name, f"{spec.name}: {outcome.result}",
                          action=_record_json(rec, verdict, outcome.result, None))


def _how(ctx: OperatorContext, verb: str) -> str:
    return f"dockwarden {verb}" if ctx.by == ActionBy.CLI else f"POST /api/v1/services/{ctx.spec.name}/{verb}"


def _source(ctx: OperatorContext) -> IntentSource:
    return IntentSource.API if ctx.by == ActionBy.API else IntentSource.CLI


def stop_service(ctx: OperatorContext) -> OperatorResult:
    """Record intent ``stopped`` (first), then stop the container if it runs.
    dockwarden will not start it again until the operator starts it.

    Returns:
        OperatorResult: ``intent`` "stopped"; ``action`` when a stop ran.
    Side effects: one row in ``intents``; ``intent_changed``; the action's
        record and events; a Docker stop (grace ``guardrails.stop_timeout_s``).
    """
    name, how = ctx.spec.name, _how(ctx, "stop")
    ctx.store.set_intent(name, Intent.STOPPED, _source(ctx), utcnow(), how)
    _emit(ctx, EventType.INTENT_CHANGED, f"{name}: operator stopped it ({how})",
          details={"intent": "stopped", "source": _source(ctx).value})
    if ctx.container is not None and ctx.container.running:
        res = _act(ctx, ActionKind.STOP, f"operator asked to stop {name} ({how})")
    else:
        res = OperatorResult(True, name, f"{name}: not running; intent recorded")
    res.intent = "stopped"
    return res


def start_service(ctx: OperatorContext) -> OperatorResult:
    """Record intent ``running`` (first), re-arm the guardrails (close the
    circuit, reset backoff and budget) and start the service: unpause a paused
    container, recreate a removed one from its recorded spec, or ``compose up
    --no-deps`` a compose service with a ``compose_file``.

    Returns:
        OperatorResult: ``intent`` "running", ``guard``; ``warnings`` names
        dependencies that are not running.
    """
    name, how = ctx.spec.name, _how(ctx, "start")
    ctx.store.set_intent(name, Intent.RUNNING, _source(ctx), utcnow(), how)
    g = resume_guard(ctx.store.guard(name))
    ctx.store.put_guard(g)
    _emit(ctx, EventType.INTENT_CHANGED, f"{name}: operator started it ({how})",
          details={"intent": "running", "source": _source(ctx).value})
    services = ctx.desired.services
    down = [d for d in ctx.spec.depends_on if d not in services or not available(find_container(services[d], ctx.world))]
    c = ctx.container
    if c is None or not c.running or c.state == "paused":
        res = _act(ctx, ActionKind.START, f"operator asked to start {name} ({how})")
    else:
        res = OperatorResult(True, name, f"{name}: already running; intent recorded")
    if down:
        res.warnings.append(f"{name}: dependencies not running: {', '.join(down)}")
    res.intent = "running"
    res.guard = {"paused": g.paused, "circuit": g.circuit.value}
    return res


def _guard(ctx: OperatorContext, *, pause_it: bool) -> OperatorResult:
    name = ctx.spec.name
    g = ctx.store.guard(name)
    g2 = pause_guard(g) if pause_it else resume_guard(g)
    ctx.store.put_guard(g2)
    what = ("paused: no actions until `dockwarden resume`" if pause_it
            else "resumed: circuit closed, backoff and budget reset")
    _emit(ctx, EventType.GUARD_CHANGED, f"{name}: {what}",
          details={"paused": g2.paused, "circuit": g2.circuit.value, "by": ctx.by.value})
    return OperatorResult(True, name, f"{name}: {what}", guard={"paused": g2.paused, "circuit": g2.circuit.value})


def pause_service(ctx: OperatorContext) -> OperatorResult:
    """Hands off: no actions on the service (drift is still recorded) until resumed."""
    return _guard(ctx, pause_it=True)


def resume_service(ctx: OperatorContext) -> OperatorResult:
    """Unpause and re-arm: close the circuit, reset backoff and budget."""
    return _guard(ctx, pause_it=False)


def ack_incident(book: Any, emit: Callable[[Event], Any], incident_id: int, *, by: ActionBy) -> Any:
    """Acknowledge an open incident (no more reminders; it still resolves by
    itself) and record ``incident_acknowledged``.

    Args:
        book: the :class:`~dockwarden.incidents.IncidentBook`.
        emit: records the event.
        incident_id: the incident's id.
        by: who asks (written in the event's details).
    Returns:
        Incident: the incident after the change.
    Raises:
        IncidentError: unknown id, or not open.
    """
    inc = book.ack(incident_id, utcnow())
    emit(Event(type=EventType.INCIDENT_ACKNOWLEDGED, ts=utcnow(), node=inc.node, service=inc.subject,
               container=inc.container, drift=inc.kind, priority=inc.priority,
               reason=f"incident #{inc.id} acknowledged", details={"incident_id": inc.id, "by": by.value}))
    return inc
