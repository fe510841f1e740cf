"""``stop``, ``start``, ``pause`` and ``resume``: the operator's commands.

``stop``/``start`` record the operator's intent and act through ``execute`` (the
action is recorded first, so its Docker events are known as dockwarden's own);
``pause``/``resume`` change the guard record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from dockwarden.cli_common import InventoryOpt, NodeOpt, PolicyOpt, StateDirOpt, err, fail, out, settings_from
from dockwarden.config import ConfigError, Settings, load_policy
from dockwarden.inventory import load_inventory
from dockwarden.model import EventType, utcnow
from dockwarden.sinks.events import EventLog
from dockwarden.store import Store, StoreError


@dataclass
class _Context:
    """What an operator command works with: policy, desired state (labels merged),
    the service, the store and event log, the engine, the observed world and the
    service's container (resolved by ``reconcile.resolve``)."""

    pol: Any
    merged: Any
    spec: Any
    store: Store
    log_: EventLog
    client: Any
    world: Any
    container: Any  # ContainerState | None


def _operator_context(s: Settings, name: str) -> _Context:
    """Load everything for one service; exits 2 on bad configuration or an
    unknown service, 3 when the engine is unreachable."""
    from dockwarden.inventory import merge_labelled
    from dockwarden.model import WorldState
    from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver, connect
    from dockwarden.reconcile.resolve import find_container

    try:
        pol = load_policy(s.policy_path)
        desired = load_inventory(s.inventory, s.node)
        store = Store(s.state_dir / "dockwarden.db", desired.node)
    except (ConfigError, StoreError) as e:
        fail(str(e), 2)
    try:
        client = connect(s.docker_host)
        containers = ContainerObserver(client, stats="none").observe(with_stats=False)
    except ENGINE_ERRORS as e:
        fail(f"Docker engine unreachable: {e}", 3)
    merged, _ = merge_labelled(desired, containers, pol.labels)
    spec = merged.services.get(name)
    if spec is None:
        fail(f"unknown service {name!r}; tracked services: {', '.join(sorted(merged.services)) or '(none)'}", 2)
    world = WorldState(node=merged.node, observed_at=utcnow(), host=None, containers=tuple(containers))
    return _Context(pol, merged, spec, store, EventLog(s.state_dir / "events.jsonl", store), client, world,
                    find_container(spec, world))


def _emit(log_: EventLog, node: str, type_: EventType, service: str, reason: str, **kw: Any) -> None:
    from dockwarden.model import Event

    log_.send(Event(type=type_, ts=utcnow(), node=node, service=service, reason=reason, **kw))


def _act(ctx: _Context, action, reason: str) -> bool:
    """Run one operator-requested action through the action protocol (recorded
    first, so its engine events are known as dockwarden's own), then judge it
    at once by inspecting the container (the daemon judges it too if it runs).

    Ctrl-C closes the action as ``interrupted`` and exits 130."""
    import functools

    from dockwarden.actions import ActionProtocol
    from dockwarden.execute import Executor, compose_target
    from dockwarden.model import ActionBy, ActionKind, PendingAction
    from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver
    from dockwarden.reconcile.policy import judge
    from dockwarden.reconcile.recommend import compose_command_text

    spec, c = ctx.spec, ctx.container
    specs = ctx.store.specs()
    compose = None
    if action == ActionKind.START and c is None:
        if spec.compose_project:
            compose = compose_target(spec)
            if compose is None:
                err.print(f"{spec.name}: no container; dockwarden runs compose only with a compose_file from the "
                          f"inventory. Run: {compose_command_text(spec.compose_project, spec.compose_service or spec.name, [])}"
                          " (with your -f file), or add compose_file to the inventory entry", highlight=False)
                return False
            action = ActionKind.COMPOSE_UP
        elif spec.name in specs:
            action = ActionKind.RECREATE
        else:
            err.print(f"{spec.name}: container {spec.container_name} does not exist and no spec is recorded",
                      highlight=False)
            return False
    container = c.name if c is not None else spec.container_name
    protocol = ActionProtocol(ctx.store, ctx.log_.send, ctx.merged.node, by=ActionBy.CLI,
                              stop_timeout_s=ctx.pol.guardrails.stop_timeout_s)
    rec = protocol.begin(service=spec.name, container=container, container_id=c.id if c is not None else None,
                         action=action, reason=reason, stop_timeout_s=spec.stop_timeout_s)
    call = functools.partial(Executor(ctx.client, stop_timeout_s=ctx.pol.guardrails.stop_timeout_s).run, action,
                             service=spec.name, container=container, spec=specs.get(spec.name), compose=compose,
                             stop_timeout_s=spec.stop_timeout_s)
    try:
        outcome = protocol.carry_out(rec, call)
    except KeyboardInterrupt:
        err.print(f"{spec.name}: interrupted; the intent is recorded, the action closed as interrupted",
                  highlight=False)
        raise typer.Exit(130)
    if not outcome.ok:
        err.print(f"[red]{spec.name}: {action.value} failed: {outcome.error}[/]", highlight=False)
        return False
    try:
        now_c = ContainerObserver(ctx.client, stats="none").inspect_one(container)
    except ENGINE_ERRORS:
        now_c = None
    pending = PendingAction(id=rec.uid, service=spec.name, container=container, action=action,
                            started_at=rec.started_at, finished=True)
    verdict = judge(pending, now_c, now=utcnow(), policy=ctx.pol)
    if verdict != "pending":
        ctx.store.judge_action(rec.uid, verdict, utcnow())
        if verdict == "succeeded":
            _emit(ctx.log_, ctx.merged.node, EventType.ACTION_SUCCEEDED, spec.name, f"{action.value}: {outcome.result}",
                  container=container, action=action.value, details={"action_id": rec.uid, "by": "cli"})
    out.print(f"{spec.name}: {outcome.result}")
    return True


def stop(
    service: Annotated[str, typer.Argument(help="Service name.")],
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
) -> None:
    """Record intent `stopped` and stop the service. dockwarden will not start it again."""
    from dockwarden.model import ActionKind, Intent, IntentSource

    s = settings_from(inventory, state_dir, policy, node)
    ctx = _operator_context(s, service)
    ctx.store.set_intent(ctx.spec.name, Intent.STOPPED, IntentSource.CLI, utcnow(), "dockwarden stop")
    _emit(ctx.log_, ctx.merged.node, EventType.INTENT_CHANGED, ctx.spec.name,
          f"{ctx.spec.name}: operator stopped it (dockwarden stop)", details={"intent": "stopped", "source": "cli"})
    ok = True
    if ctx.container is not None and ctx.container.running:
        ok = _act(ctx, ActionKind.STOP, f"operator asked to stop {ctx.spec.name} (dockwarden stop)")
    else:
        out.print(f"{ctx.spec.name}: not running; intent recorded")
    raise typer.Exit(0 if ok else 1)


def start(
    service: Annotated[str, typer.Argument(help="Service name.")],
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
) -> None:
    """Record intent `running`, re-arm the guardrails and start the service."""
    from dockwarden.model import ActionKind, Intent, IntentSource
    from dockwarden.reconcile.drift import available
    from dockwarden.reconcile.policy import resume as resume_guard
    from dockwarden.reconcile.resolve import find_container

    s = settings_from(inventory, state_dir, policy, node)
    ctx = _operator_context(s, service)
    ctx.store.set_intent(ctx.spec.name, Intent.RUNNING, IntentSource.CLI, utcnow(), "dockwarden start")
    ctx.store.put_guard(resume_guard(ctx.store.guard(ctx.spec.name)))
    _emit(ctx.log_, ctx.merged.node, EventType.INTENT_CHANGED, ctx.spec.name,
          f"{ctx.spec.name}: operator started it (dockwarden start)", details={"intent": "running", "source": "cli"})
    down_deps = [d for d in ctx.spec.depends_on
                 if d not in ctx.merged.services or not available(find_container(ctx.merged.services[d], ctx.world))]
    if down_deps:
        out.print(f"[yellow]{ctx.spec.name}: dependencies not running: {', '.join(down_deps)}[/]")
    ok = True
    c = ctx.container
    if c is None or not c.running or c.state == "paused":
        ok = _act(ctx, ActionKind.START, f"operator asked to start {ctx.spec.name} (dockwarden start)")
    else:
        out.print(f"{ctx.spec.name}: already running; intent recorded")
    raise typer.Exit(0 if ok else 1)


def _guard_command(service: str, s: Settings, *, pause_it: bool) -> None:
    from dockwarden.reconcile.policy import pause as pause_guard, resume as resume_guard

    ctx = _operator_context(s, service)
    g = ctx.store.guard(ctx.spec.name)
    g2 = pause_guard(g) if pause_it else resume_guard(g)
    ctx.store.put_guard(g2)
    what = "paused: no actions until `dockwarden resume`" if pause_it else "resumed: circuit closed, backoff and budget reset"
    _emit(ctx.log_, ctx.merged.node, EventType.GUARD_CHANGED, ctx.spec.name, f"{ctx.spec.name}: {what}",
          details={"paused": g2.paused, "circuit": g2.circuit.value})
    out.print(f"{ctx.spec.name}: {what}")


def pause(
    service: Annotated[str, typer.Argument(help="Service name.")],
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
) -> None:
    """Stop acting on a service (drift is still recorded) until `resume`."""
    _guard_command(service, settings_from(inventory, state_dir, policy, node), pause_it=True)


def resume(
    service: Annotated[str, typer.Argument(help="Service name.")],
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
) -> None:
    """Unpause a service and re-arm it: close its circuit, reset backoff and budget."""
    _guard_command(service, settings_from(inventory, state_dir, policy, node), pause_it=False)
