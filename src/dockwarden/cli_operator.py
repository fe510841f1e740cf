"""``stop``, ``start``, ``pause`` and ``resume``: the operator's commands.

Thin: parse, call :mod:`dockwarden.operator` (the one implementation, shared
with the API), render. With ``--url`` (or ``DOCKWARDEN_URL``) the command is
sent to a daemon's HTTP API instead (``cli_remote``).
"""

from __future__ import annotations

from typing import Annotated, Callable

import typer

from dockwarden import cli_remote
from dockwarden.cli_common import InventoryOpt, NodeOpt, PolicyOpt, StateDirOpt, err, fail, settings_from
from dockwarden.config import ConfigError, Settings, load_policy
from dockwarden.inventory import load_inventory
from dockwarden.store import Store, StoreError


def _run(verb: str, service: str, s: Settings) -> None:
    """Run one operator command locally (or remotely with ``--url``), print its
    result, exit 0 (done), 1 (the action failed), 2 (bad input), 3 (engine)."""
    remote = cli_remote.target(s, for_write=True)
    if remote is not None:
        cli_remote.operator_command(remote, verb, service)
        return
    from dockwarden.model import ActionBy
    from dockwarden.observe.docker import ENGINE_ERRORS, connect
    from dockwarden.operator import (OperatorError, load_context, pause_service, resume_service, start_service,
                                     stop_service)
    from dockwarden.sinks.events import EventLog

    commands: dict[str, Callable] = {"stop": stop_service, "start": start_service, "pause": pause_service,
                                     "resume": resume_service}
    try:
        pol = load_policy(s.policy_path)
        desired = load_inventory(s.inventory, s.node)
        store = Store(s.state_dir / "dockwarden.db", desired.node)
    except (ConfigError, StoreError) as e:
        fail(str(e), 2)
        return
    try:
        client = connect(s.docker_host)
        ctx = load_context(policy=pol, desired=desired, name=service, store=store,
                           emit=EventLog(s.state_dir / "events.jsonl", store).send, client=client, by=ActionBy.CLI)
        res = commands[verb](ctx)
    except ENGINE_ERRORS as e:
        fail(f"Docker engine unreachable: {e}", 3)
        return
    except OperatorError as e:
        fail(str(e), e.code)
        return
    except KeyboardInterrupt:
        err.print(f"{service}: interrupted; the intent is recorded, the action closed as interrupted",
                  highlight=False)
        raise typer.Exit(130)
    cli_remote.render_result(res.to_json())


ServiceArg = Annotated[str, typer.Argument(help="Service name.")]


def stop(service: ServiceArg, inventory: InventoryOpt = None, state_dir: StateDirOpt = None,
         policy: PolicyOpt = None, node: NodeOpt = None) -> None:
    """Record intent `stopped` and stop the service. dockwarden will not start it again."""
    _run("stop", service, settings_from(inventory, state_dir, policy, node))


def start(service: ServiceArg, inventory: InventoryOpt = None, state_dir: StateDirOpt = None,
          policy: PolicyOpt = None, node: NodeOpt = None) -> None:
    """Record intent `running`, re-arm the guardrails and start the service."""
    _run("start", service, settings_from(inventory, state_dir, policy, node))


def pause(service: ServiceArg, inventory: InventoryOpt = None, state_dir: StateDirOpt = None,
          policy: PolicyOpt = None, node: NodeOpt = None) -> None:
    """Stop acting on a service (drift is still recorded) until `resume`."""
    _run("pause", service, settings_from(inventory, state_dir, policy, node))


def resume(service: ServiceArg, inventory: InventoryOpt = None, state_dir: StateDirOpt = None,
           policy: PolicyOpt = None, node: NodeOpt = None) -> None:
    """Unpause a service and re-arm it: close its circuit, reset backoff and budget."""
    _run("resume", service, settings_from(inventory, state_dir, policy, node))
