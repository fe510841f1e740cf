"""Thin Typer app: parse, call, render (Rich). ``--json`` where a machine reads it.

Every command takes ``--inventory``/``DOCKWARDEN_INVENTORY``,
``--state-dir``/``DOCKWARDEN_STATE_DIR`` and ``--policy``/``DOCKWARDEN_POLICY``
the same way (plus ``--node``/``DOCKWARDEN_NODE``); see ``cli_common``. The
commands live in ``cli_status`` (once, status, drift), ``cli_operator`` (stop,
start, pause, resume), ``cli_notify``, ``cli_storage`` and ``cli_pool``; this
module holds ``run``, ``events``, ``inventory validate`` and the registrations.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from dockwarden import __version__, cli_operator, cli_status
from dockwarden.cli_common import (InventoryOpt, JsonOpt, ModeOpt, NodeOpt, PolicyOpt, StateDirOpt, echo_event, fail,
                                   out, parse_since, settings_from)
from dockwarden.config import ConfigError, Settings, load_policy
from dockwarden.private import private_umask
from dockwarden.store import Store, StoreError

app = typer.Typer(add_completion=True, no_args_is_help=True,
                  help="dockwarden: keeps a Docker host in its desired state, and says so when it can't.")
inventory_app = typer.Typer(no_args_is_help=True, help="Work with inventories (hosts/<node>/services.yaml).")
app.add_typer(inventory_app, name="inventory")


@app.callback()
def _global_options(
    url: Annotated[Optional[str], typer.Option(
        "--url", envvar="DOCKWARDEN_URL",
        help="Talk to a daemon's HTTP API (http://HOST:PORT, unix:/path, or 'local': the state dir's daemon) "
             "for status, drift, events, incidents and the operator commands \\[env DOCKWARDEN_URL].")] = None,
    token: Annotated[Optional[str], typer.Option(
        "--token", envvar="DOCKWARDEN_TOKEN",
        help="Bearer token for --url (the write token for operator commands).")] = None,
) -> None:
    """dockwarden: keeps a Docker host in its desired state, and says so when it can't."""
    from dockwarden import cli_remote

    # Runs before every command, `run` included: files and dirs dockwarden creates
    # are 0600/0700 (design.md promise 3; see dockwarden.private).
    private_umask()
    cli_remote.GLOBAL["url"], cli_remote.GLOBAL["token"] = url, token


for _name, _fn in (("once", cli_status.once), ("status", cli_status.status), ("drift", cli_status.drift),
                   ("stop", cli_operator.stop), ("start", cli_operator.start), ("pause", cli_operator.pause),
                   ("resume", cli_operator.resume)):
    app.command(_name)(_fn)
# Feature command groups register here, one line each (e.g. `pool`, `storage`).
from dockwarden import cli_notify  # noqa: E402

app.command("incidents")(cli_notify.incidents)
app.command("ack")(cli_notify.ack)
app.add_typer(cli_notify.notify_app, name="notify")
from dockwarden.cli_pool import app as pool_app, pool_workers  # noqa: E402
app.add_typer(pool_app, name="pool")
from dockwarden import cli_storage  # noqa: E402
cli_storage.register(app)  # storage [--json], prune [--dry-run], journal [--date]
from dockwarden import cli_doctor, cli_inventory  # noqa: E402
inventory_app.command("init")(cli_inventory.init)
app.command("doctor")(cli_doctor.doctor)
from dockwarden.retention import RetentionWorker  # noqa: E402


def daemon_workers(s: Settings) -> list:
    """The background workers `dockwarden run` starts beside the reconcile loop
    (see dockwarden.worker); features add theirs here, one line each."""
    workers: list = []
    workers += pool_workers(s)  # the container pool, when the policy sets [pool].image
    workers.append(cli_storage.storage_worker())  # storage samples, trends, disk-pressure recipe, housekeeping, journal
    workers.append(RetentionWorker())  # [retention]: bounds every table and events.jsonl of the state dir
    return workers


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def run(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None,
    node: Annotated[Optional[list[str]], typer.Option(
        "--node", help="Which hosts/<node> of the inventory to supervise; repeat it, or `all` \\[env "
                       "DOCKWARDEN_NODE, commas for several].")] = None,
    mode: ModeOpt = None,
    resync: Annotated[float, typer.Option("--resync", min=1.0, help="Seconds between full resyncs.")] = 30.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    listen: Annotated[Optional[str], typer.Option(
        "--listen", envvar="DOCKWARDEN_LISTEN",
        help="HTTP API, metrics and dashboard: HOST:PORT, unix:/path or none \\[env DOCKWARDEN_LISTEN; "
             "policy \\[api] listen; 127.0.0.1:9321].")] = None,
) -> None:
    """Supervise the host in the foreground: events + resync -> reconcile -> act; serves the HTTP API."""
    from dockwarden.daemon import Daemon
    from dockwarden.lock import AlreadyRunning

    _setup_logging(verbose)
    import os

    wanted = [n for x in (node or [os.environ.get("DOCKWARDEN_NODE") or ""]) for n in x.split(",") if n.strip()]
    s = settings_from(inventory, state_dir, policy, wanted[0] if len(wanted) == 1 and wanted[0] != "all" else None)
    several = len(wanted) > 1 or "all" in wanted
    d = Daemon(s, mode=mode, resync_s=resync, echo=lambda e: echo_event(e.to_dict(), show_node=several),
               workers=daemon_workers(s), nodes=wanted or None, listen=listen)
    d.install_signal_handlers()
    out.print(f"[bold]dockwarden {__version__}[/] state dir {s.state_dir}, inventory {s.inventory or '(labels only)'}, "
              f"resync every {resync:g} s. Ctrl-C stops.", highlight=False)
    try:
        code = d.run()
    except AlreadyRunning as e:
        fail(str(e), 2)
    except ConfigError as e:
        fail(f"invalid configuration:\n{e}", 2)
    except StoreError as e:
        fail(str(e), 2)
    raise typer.Exit(code)


@app.command()
def events(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events.")] = False,
    since: Annotated[Optional[str], typer.Option(
        "--since", help="RFC 3339 time or duration (10m, 2h, 7d). Older than the database's oldest event "
                        "(\\[retention] events_max_age_s, 30 days): read from the event files when they reach "
                        "further back.")] = None,
    service: Annotated[Optional[str], typer.Option("--service", help="Only this service.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, the newest.")] = 200,
    files: Annotated[bool, typer.Option(
        "--files", help="Read events.jsonl and its rotated files (events.jsonl.1, .2, ...) instead of the "
                        "database: all the history the files keep.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The event log (newest last); ``--follow`` keeps printing.

    Events come from the database, which keeps ``\\[retention] events_max_age_s``
    (30 days) and at most ``events_max_rows``. ``events.jsonl`` and its rotated
    files may reach further back: ``--files`` reads them, and so does a
    ``--since`` older than the database's oldest event.
    """
    from dockwarden.sinks.events import oldest_event_time, oldest_stored_event, read_events

    s = settings_from(inventory, state_dir, policy, node)
    since_ts = parse_since(since)
    from dockwarden import cli_remote

    remote = cli_remote.target(s)
    if remote is not None:
        cli_remote.events(remote, since=since_ts, service=service, limit=limit, follow=follow, as_json=as_json)
        return
    try:
        store = Store(s.state_dir / "dockwarden.db")
    except StoreError as e:
        if not files or follow:
            fail(str(e), 3)
        store = None  # --files alone needs no database

    def show(r: dict) -> None:
        if as_json:
            print(json.dumps(r, default=str), flush=True)
        else:
            echo_event(r)

    if not files and since_ts is not None and store is not None:
        oldest_db = oldest_stored_event(store)
        if oldest_db is None or since_ts < oldest_db:
            oldest_file = oldest_event_time(s.state_dir)
            files = oldest_file is not None and (oldest_db is None or oldest_file < oldest_db)
    last_id = 0
    if files:
        if follow and store is not None:
            # The newest id before reading the files: an event recorded meanwhile may
            # print twice, none is missed.
            newest = store.events(limit=1)
            last_id = newest[0]["id"] if newest else 0
        for r in read_events(s.state_dir, since=since_ts, service=service, limit=limit):
            show(r)
        if not follow or store is None:
            return
    assert store is not None
    try:
        while True:
            rows = store.events(since=since_ts, after_id=last_id, service=service, limit=limit)
            for r in rows:
                last_id = max(last_id, r.pop("id"))
                show(r)
            if not follow:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        return  # Ctrl-C is how --follow ends


# --------------------------------------------------------------------------- operator commands


@inventory_app.command("validate")
def inventory_validate(
    path: Annotated[Optional[Path], typer.Argument(help="Inventory dir or services.yaml (default: --inventory).")] = None,
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
) -> None:
    """Validate an inventory (every node) and the policy file, if one is given. Exit 1 when invalid."""
    from dockwarden.inventory import inventory_files, parse_services_file

    s = settings_from(inventory, state_dir, policy, node)
    target = path or s.inventory
    if target is None:
        fail("no inventory given (PATH, --inventory or DOCKWARDEN_INVENTORY)", 2)
    try:
        files = inventory_files(target)
        total = 0
        for n, f in files.items():
            total += len(parse_services_file(f, n))
        if s.policy_path is not None:
            load_policy(s.policy_path)
    except ConfigError as e:
        fail(f"invalid configuration:\n{e}", 1)
    out.print(f"[green]ok[/]: {len(files)} node(s), {total} service(s) in {target}"
              + (f"; policy {s.policy_path} ok" if s.policy_path else ""), highlight=False)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
