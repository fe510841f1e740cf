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
    the service, the store and event log, the engine and its containers."""

    pol: Any
    merged: Any
    spec: Any
    store: Store
    log_: EventLog
    client: Any
    containers: list


def _operator_context(s: Settings, name: str) -> _Context:
    """Load everything for one service; exits 2 on bad configuration or an
    unknown service, 3 when the engine is unreachable."""
    from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver, connect
    from dockwarden.inventory import merge_labelled

    try:
        pol = load_policy(s.policy_path)
        desired = load_inventory(s.inventory, s.node)
        store = Store(s.state_dir / "dockwarden.db")
    except (ConfigError, StoreError) as e:
        fail(str(e), 2)
    try:
        client = connect(s.docker_host)
        containers = ContainerObserver(client, stats="none").observe(with_stats=False)
    except ENGINE_ERRORS as e:
        fail(f"Docker engine unreachable: {e}", 3)
    merged, _ = merge_labelled(desired, containers)
    spec = merged.services.get(name)
    if spec is None:
        fail(f"unknown service {name!r}; tracked services: {', '.join(sorted(merged.services)) or '(none)'}", 2)
    return _Context(pol, merged, spec, store, EventLog(s.state_dir / "events.jsonl", store), client, containers)


def _emit(log_: EventLog, node: str, type_: EventType, service: str, reason: str, **kw: Any) -> None:
    from dockwarden.model import Event

    log_.send(Event(type=type_, ts=utcnow(), node=node, service=service, reason=reason, **kw))


def _act(ctx: _Context, action) -> bool:
    """Run one operator-requested action through execute, recorded as dockwarden's own."""
    from dockwarden.execute import Executor, compose_target_from_labels
    from dockwarden.model import ActionKind

    store, log_, client, pol, spec, containers = ctx.store, ctx.log_, ctx.client, ctx.pol, ctx.spec, ctx.containers
    node = ctx.merged.node

    container = spec.container_name
    specs = store.specs()
    if action == ActionKind.START and not any(c.name == container for c in containers):
        if spec.compose_project:
            action = ActionKind.COMPOSE_UP
        elif spec.name in specs:
            action = ActionKind.RECREATE
        else:
            out.print(f"[yellow]{spec.name}: container {container} does not exist and no spec is recorded[/]")
            return False
    now = utcnow()
    aid = store.begin_action(spec.name, container, action, None, now)
    store.supersede_pending(spec.name, aid, now)
    _emit(log_, node, EventType.ACTION_STARTED, spec.name, f"operator asked to {action.value} {spec.name}",
          container=container, action=action.value, details={"action_id": aid, "by": "cli"})
    compose = None
    if action == ActionKind.COMPOSE_UP:
        compose = compose_target_from_labels((specs.get(spec.name) or {}).get("labels") or {}, spec.compose_project,
                                             spec.compose_service or spec.name)
    outcome = Executor(client, stop_timeout_s=pol.guardrails.stop_timeout_s).run(
        action, service=spec.name, container=container, spec=specs.get(spec.name), compose=compose)
    store.finish_action(aid, outcome, utcnow())
    if outcome.ok:
        store.judge_action(aid, "succeeded", utcnow())
        _emit(log_, node, EventType.ACTION_SUCCEEDED, spec.name, f"{action.value}: {outcome.result}",
              container=container, action=action.value, details={"action_id": aid, "by": "cli"})
        out.print(f"{spec.name}: {outcome.result}")
    else:
        _emit(log_, node, EventType.ACTION_FAILED, spec.name, f"{action.value} failed: {outcome.error}",
              container=container, action=action.value, details={"action_id": aid, "by": "cli"})
        err.print(f"[red]{spec.name}: {action.value} failed: {outcome.error}[/]", highlight=False)
    return outcome.ok


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
    if any(c.name == ctx.spec.container_name and c.running for c in ctx.containers):
        ok = _act(ctx, ActionKind.STOP)
    else:
        out.print(f"{ctx.spec.name}: not running; intent recorded")
    raise typer.Exit(0 if ok else 1)


def start(
    service: Annotated[str, typer.Argument(help="Service name.")],
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
) -> None:
    """Record intent `running`, re-arm the guardrails and start the service."""
    from dockwarden.model import ActionKind, Intent, IntentSource
    from dockwarden.reconcile.policy import resume as resume_guard

    s = settings_from(inventory, state_dir, policy, node)
    ctx = _operator_context(s, service)
    ctx.store.set_intent(ctx.spec.name, Intent.RUNNING, IntentSource.CLI, utcnow(), "dockwarden start")
    ctx.store.put_guard(resume_guard(ctx.store.guard(ctx.spec.name)))
    _emit(ctx.log_, ctx.merged.node, EventType.INTENT_CHANGED, ctx.spec.name,
          f"{ctx.spec.name}: operator started it (dockwarden start)", details={"intent": "running", "source": "cli"})
    down_deps = [d for d in ctx.spec.depends_on
                 if not any(c.name == ctx.merged.services[d].container_name and c.running for c in ctx.containers)]
    if down_deps:
        out.print(f"[yellow]{ctx.spec.name}: dependencies not running: {', '.join(down_deps)}[/]")
    ok = True
    if not any(c.name == ctx.spec.container_name and c.running for c in ctx.containers):
        ok = _act(ctx, ActionKind.START)
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
