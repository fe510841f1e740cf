"""Commands for telling people: ``incidents``, ``ack ID``, ``notify test``."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from dockwarden.cli_common import InventoryOpt, JsonOpt, NodeOpt, PolicyOpt, StateDirOpt, fail, out

from dockwarden.config import ConfigError, Settings, load_policy
from dockwarden.incidents import IncidentBook, IncidentError
from dockwarden.inventory import load_inventory
from dockwarden.model import Event, EventType, utcnow
from dockwarden.sinks.events import EventLog
from dockwarden.sinks.notify import send_test_messages
from dockwarden.store import Store, StoreError

notify_app = typer.Typer(no_args_is_help=True, help="Notification channels (the notify.channel tables of the policy).")


def _book(inventory, state_dir, policy, node) -> tuple[Settings, IncidentBook]:
    s = Settings.resolve(state_dir=state_dir, inventory=inventory, policy=policy, node=node)
    try:
        desired = load_inventory(s.inventory, s.node)
        Store(s.state_dir / "dockwarden.db").close()  # core schema first
        return s, IncidentBook(s.state_dir / "dockwarden.db", desired.node)
    except (ConfigError, StoreError) as e:
        fail(str(e), 2)
        raise  # unreachable


def incidents(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    show_all: Annotated[bool, typer.Option("--all", help="Include resolved incidents.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Open (and acknowledged) incidents, newest first; --all adds resolved ones."""
    from dockwarden import cli_remote
    from dockwarden.incidents import Incident
    from dockwarden.model import parse_time

    remote = cli_remote.target(Settings.resolve(state_dir=state_dir, inventory=inventory, policy=policy, node=node))
    if remote is not None:
        docs = cli_remote.get(remote, "/api/v1/incidents", all=str(show_all).lower())["incidents"]
        if as_json:
            print(json.dumps(docs, indent=2, default=str))
            return
        items = [Incident(id=d["id"], node=d["node"], subject=d["subject"], kind=d["kind"], priority=d["priority"],
                          state=d["state"], container=d["container"], reason=d["reason"],
                          opened_at=parse_time(d["opened_at"]), resolved_at=parse_time(d["resolved_at"]))
                 for d in docs]
    else:
        _, book = _book(inventory, state_dir, policy, node)
        items = book.list(include_resolved=show_all)
    if as_json:
        print(json.dumps([i.to_dict() for i in items], indent=2, default=str))
        return
    if not items:
        out.print("[green]no open incidents[/]" if not show_all else "no incidents")
        return
    t = Table(title="incidents", title_justify="left")
    for col in ("id", "prio", "state", "subject", "drift", "opened", "resolved", "reason"):
        t.add_column(col)
    for i in items:
        style = {"open": "red", "acknowledged": "yellow", "resolved": "green"}[i.state]
        t.add_row(str(i.id), i.priority, f"[{style}]{i.state}[/]", i.subject, i.kind,
                  i.to_dict()["opened_at"] or "", i.to_dict()["resolved_at"] or "-", i.reason)
    out.print(t)


def ack(
    incident_id: Annotated[int, typer.Argument(help="Incident id (dockwarden incidents).")],
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
) -> None:
    """Acknowledge an open incident: no more reminders; it still resolves by itself."""
    from dockwarden import cli_remote
    from dockwarden.model import ActionBy
    from dockwarden.operator import ack_incident

    remote = cli_remote.target(Settings.resolve(state_dir=state_dir, inventory=inventory, policy=policy, node=node),
                               for_write=True)
    if remote is not None:
        try:
            doc = remote.client.post(f"/api/v1/incidents/{incident_id}/ack")["incident"]
        except cli_remote.ApiError as e:
            fail(str(e), 1 if e.status in (404, 409) else 3)
            return
        out.print(f"incident #{doc['id']} ({doc['subject']} {doc['kind']}) acknowledged")
        return
    s, book = _book(inventory, state_dir, policy, node)
    events = EventLog(s.state_dir / "events.jsonl", Store(s.state_dir / "dockwarden.db"))
    try:
        inc = ack_incident(book, events.send, incident_id, by=ActionBy.CLI)
    except IncidentError as e:
        fail(str(e), 1)
        return
    out.print(f"incident #{inc.id} ({inc.subject} {inc.kind}) acknowledged")


@notify_app.command("test")
def notify_test(
    channel: Annotated[Optional[str], typer.Option("--channel", help="Only this channel.")] = None,
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a test message to each channel now and say which delivered (exit 1 if any failed)."""
    s = Settings.resolve(state_dir=state_dir, inventory=inventory, policy=policy, node=node)
    try:
        pol = load_policy(s.policy_path)
    except ConfigError as e:
        fail(str(e), 2)
        return
    chans = [c for c in pol.notify.channel if channel is None or c.name == channel]
    if not chans:
        fail(f"no channel {channel!r} in the policy" if channel else
              "no [[notify.channel]] in the policy (give --policy or DOCKWARDEN_POLICY)", 2)
    results = send_test_messages(chans, node=s.node or "local", timeout_s=pol.notify.timeout_s)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            mark = "[green]delivered[/]" if r["delivered"] else f"[red]failed[/] ({r['error']})"
            out.print(f"{r['channel']} {r['url']}: {mark}", highlight=False)
    raise typer.Exit(0 if all(r["delivered"] for r in results) else 1)
