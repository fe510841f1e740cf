"""Commands for disk pressure: ``storage [--json]``, ``prune [--dry-run]``, ``journal [--date]``.

Thin: parse, call ``observe/storage.py``, ``storage/`` and ``sinks/journal.py``,
render. Options are taken the same way as every other command
(``--state-dir``/``--inventory``/``--policy``/``--node`` and their environment
variables); the engine is ``DOCKER_HOST`` or the local socket.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from dockwarden.cli_common import (
    InventoryOpt, JsonOpt, NodeOpt, PolicyOpt, StateDirOpt, err, fail as _fail, out, settings_from,
)
from dockwarden.model import utcnow

if TYPE_CHECKING:
    from dockwarden.config import Policy
    from dockwarden.reconcile.usage import StorageReport
    from dockwarden.settings import Settings
    from dockwarden.storage import StorageMonitor


def register(app: typer.Typer) -> None:
    """Add ``storage``, ``prune`` and ``journal`` to the main app."""
    app.command("storage")(storage)
    app.command("prune")(prune)
    app.command("journal")(journal)


def storage_worker() -> StorageMonitor:
    """The storage worker `dockwarden run` starts (``cli.daemon_workers``)."""
    from dockwarden.storage import StorageMonitor

    return StorageMonitor()


def _observe(s: Settings, pol: Policy) -> tuple[Any, StorageReport]:
    from dockwarden.observe.docker import ENGINE_ERRORS, connect
    from dockwarden.observe.storage import StorageObserver

    try:
        client = connect(s.docker_host, timeout_s=pol.storage.df_timeout_s)
    except ENGINE_ERRORS as e:
        _fail(f"Docker engine unreachable: {e}", 3)
        raise  # unreachable
    report = StorageObserver(client, command_timeout_s=pol.storage.command_timeout_s).collect(utcnow())
    if report.engine_error:
        _fail(f"Docker engine failed: {report.engine_error}", 3)
    return client, report


def _trend_json(s: Settings, pol: Policy, report: StorageReport) -> dict[str, Any] | None:
    from dockwarden.reconcile.trends import disk_trend
    from dockwarden.storage.samples import SampleStore

    db = s.state_dir / "dockwarden.db"
    if report.filesystem is None or not db.exists():
        return None
    samples = SampleStore(db)
    try:
        now = utcnow()
        rows = samples.samples(report.filesystem.path, now - timedelta(seconds=pol.storage.long_window_s))
        t = disk_trend(rows, now=now, policy=pol)
        return None if t is None else {**t.to_json(), "line": t.line()}
    finally:
        samples.close()


def _render(data: dict[str, Any]) -> None:
    from rich.table import Table

    from dockwarden.reconcile.usage import human_bytes

    fs = data["filesystem"]
    where = (f"{fs['path']} on {fs['device']} ({fs['fstype']}, mounted at {fs['mount_point']}): "
             f"{fs['percent']:.1f}% used, {human_bytes(fs['used_bytes'])} of {human_bytes(fs['total_bytes'])}, "
             f"{human_bytes(fs['free_bytes'])} free") if fs else f"filesystem unavailable: {data['filesystem_error']}"
    out.print(f"[bold]driver[/] {data['driver']}  [bold]root dir[/] {data['root_dir']}", highlight=False)
    out.print(where, highlight=False)
    t = Table(title="Docker storage", title_justify="left")
    for col in ("type", "total", "active", "size", "reclaimable"):
        t.add_column(col, justify="left" if col == "type" else "right")
    for key, label in (("images", "images"), ("containers", "containers (writable layers)"),
                       ("volumes", "local volumes"), ("build_cache", "build cache")):
        v = data[key]
        t.add_row(label, str(v["count"]), str(v["active"]), human_bytes(v["bytes"]), human_bytes(v["reclaimable_bytes"]))
    out.print(t)
    im = data["images"]
    out.print(f"dangling images: {im['dangling_count']}, {human_bytes(im['dangling_bytes'])}", highlight=False)
    top = data["top"]
    for key, label in (("images", "largest images"), ("volumes", "largest volumes"),
                       ("containers", "largest writable layers")):
        items = ", ".join(f"{x['name']} {human_bytes(x['bytes'])}" for x in top[key] if x["bytes"] > 0)
        if items:
            out.print(f"{label}: {items}", highlight=False)
    b = data["btrfs"]
    if b["available"]:
        prof = ", ".join(f"{k} {human_bytes(v['used_bytes'])} used of {human_bytes(v['total_bytes'])}"
                         for k, v in b["profiles"].items())
        out.print(f"btrfs: {prof}; device {human_bytes(b['device_size_bytes'])}, unallocated "
                  f"{human_bytes(b['device_unallocated_bytes'])}; {b['subvolume_count']} subvolumes", highlight=False)
        if b["exclusive_available"]:
            subs = ", ".join(f"{x['path']} {human_bytes(x['exclusive_bytes'])} exclusive / "
                             f"{human_bytes(x['referenced_bytes'])} referenced" for x in b["subvolumes"][:5])
            out.print(f"btrfs subvolumes: {subs}", highlight=False)
        else:
            out.print(f"btrfs exclusive sizes unavailable: {b['exclusive_reason']}", highlight=False)
        out.print(f"[dim]{b['caveat']}[/]", highlight=False)
    else:
        out.print(f"btrfs: unavailable — {b['reason']}", highlight=False)
    if data.get("trend"):
        out.print(f"trend: {data['trend']['line']}", highlight=False)


def storage(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where the disk goes: images, writable layers, volumes, build cache (humanised; --json in bytes).

    Also the filesystem holding the Docker root dir, btrfs data/metadata/system and
    subvolumes when it applies, and the growth trend when the daemon stored samples.
    """
    from dockwarden.config import ConfigError, load_policy
    from dockwarden.store import StoreError

    s = settings_from(inventory, state_dir, policy, node)
    try:
        pol = load_policy(s.policy_path)
    except ConfigError as e:
        _fail(str(e), 2)
        raise
    _, report = _observe(s, pol)
    data = report.to_json(pol.storage.top_n)
    data["thresholds"] = {"warn_percent": pol.thresholds.disk_warn_percent,
                          "critical_percent": pol.thresholds.disk_critical_percent}
    try:
        data["trend"] = _trend_json(s, pol, report)
    except (OSError, StoreError, ValueError) as e:  # the figures above still stand
        data["trend"] = None
        err.print(f"[yellow]trend unavailable: {e}[/]", highlight=False)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        _render(data)


def prune(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what each tier would remove and free; remove nothing.")] = False,
    all_tiers: Annotated[bool, typer.Option("--all", help="Run every enabled tier, even below the threshold.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Free disk space in safe tiers; --dry-run shows what each tier would remove and free.

    Tiers: (1) dangling images and build cache, (2) stopped containers neither
    tracked nor intent-stopped, (3) unused images no tracked service references.
    Re-measures after each tier and stops at or below thresholds.disk_critical_percent
    (--all: every tier). Never removes volumes. Exit code 0 when at or below the
    threshold at the end, else 1.
    """
    from dockwarden.config import ConfigError, load_policy
    from dockwarden.inventory import load_inventory
    from dockwarden.observe.storage import StorageObserver
    from dockwarden.prune import Pruner
    from dockwarden.reconcile.prune_plan import plan_recipe, tiers_needed, volume_advice
    from dockwarden.reconcile.usage import human_bytes
    from dockwarden.sinks.events import EventLog
    from dockwarden.storage import keep_for_report, run_recipe
    from dockwarden.store import Store, StoreError

    s = settings_from(inventory, state_dir, policy, node)
    try:
        pol = load_policy(s.policy_path)
        desired = load_inventory(s.inventory, s.node)
        store = Store(s.state_dir / "dockwarden.db", desired.node)  # the node's specs and intents: what to keep
    except (ConfigError, StoreError) as e:
        _fail(str(e), 2)
        raise
    client, report = _observe(s, pol)
    crit = pol.thresholds.disk_critical_percent

    def keep_for(r: StorageReport):
        return keep_for_report(r, desired=desired, store=store, policy=pol)

    if dry_run:
        plans = plan_recipe(report, keep_for(report), pol, now=utcnow())
        need = len(plans) if all_tiers else tiers_needed(plans, report.filesystem, crit)
        vols = volume_advice(report, pol.storage.top_n)
        data = {"threshold_percent": crit, "filesystem": report.to_json()["filesystem"],
                "tiers_needed": need, "tiers": [p.to_json() for p in plans],
                "volumes_never_removed": [{"name": v.name, "bytes": v.size_bytes, "ref_count": v.ref_count}
                                          for v in vols]}
        if as_json:
            print(json.dumps(data, indent=2, default=str))
            return
        fs = report.filesystem
        out.print(f"threshold {crit:g}%; now " + (f"{fs.percent:.1f}%" if fs else "unknown")
                  + f"; the recipe would run {need} of {len(plans)} tier(s) (dry run: nothing removed)",
                  highlight=False)
        for p in plans:
            out.print(f"[bold]{p.summary()}[/]", highlight=False)
            for c in p.candidates:
                out.print(f"  remove {c.kind} {c.name} (~{human_bytes(c.bytes)})", highlight=False)
            for n, why in p.kept:
                out.print(f"  [dim]keep {n}: {why}[/]", highlight=False)
        if vols:
            out.print("volumes (never removed automatically; review them): "
                      + ", ".join(f"{v.name} {human_bytes(v.size_bytes)}" + (" unused" if v.ref_count == 0 else "")
                                  for v in vols), highlight=False)
        return
    events = EventLog(s.state_dir / "events.jsonl", store)
    run = run_recipe(StorageObserver(client, command_timeout_s=pol.storage.command_timeout_s), Pruner(client),
                     keep_for=keep_for, policy=pol, threshold_percent=crit, clock=utcnow, node=desired.node,
                     emit=events.send, all_tiers=all_tiers, report=report)
    if as_json:
        print(json.dumps({"threshold_percent": crit, "stopped": run.stopped, "below": run.below,
                          "bytes_freed": run.bytes_freed, "tiers": [t.line() for t in run.tiers],
                          "escalation": None if run.below else run.escalation(pol.storage.top_n)},
                         indent=2, default=str))
    else:
        for t in run.tiers:
            out.print(t.line(), highlight=False)
        out.print(f"stopped: {run.stopped}", highlight=False)
        if not run.below:
            out.print(f"[yellow]{run.escalation(pol.storage.top_n)}[/]", highlight=False)
    raise typer.Exit(0 if run.below else 1)


def journal(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    day: Annotated[Optional[str], typer.Option("--date", help="UTC day, YYYY-MM-DD (default today).")] = None,
) -> None:
    """Print the journal of one UTC day (default today); exit 1 when there is none.

    The file is <state-dir>/journal/YYYY-MM-DD.md, written by `dockwarden run`.
    """
    from dockwarden.sinks.journal import Journal

    s = settings_from(inventory, state_dir, policy, node)
    try:
        d = date.fromisoformat(day) if day else datetime.now(timezone.utc).date()
    except ValueError:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {day!r}", param_hint="--date")
    text = Journal(s.state_dir / "journal").read(d)
    if text is None:
        err.print(f"no journal for {d:%Y-%m-%d} in {s.state_dir / 'journal'}", highlight=False)
        raise typer.Exit(1)
    print(text, end="")
