"""``once``, ``status`` and ``drift``: observe, evaluate, render."""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.table import Table

from dockwarden.cli_common import (SUMMARY_STYLES, InventoryOpt, JsonOpt, ModeOpt, NodeOpt, PolicyOpt, StateDirOpt,
                                   err, fail, human_bytes, out, settings_from)
from dockwarden.config import ConfigError, Settings, load_policy
from dockwarden.inventory import load_inventory
from dockwarden.model import Mode, utcnow
from dockwarden.sinks.events import EventLog
from dockwarden.store import Store, StoreError


def _evaluate(s: Settings, *, mode: Mode | None, act: bool):
    """Observe once and evaluate; with ``act`` also record and execute (needs the lock)."""
    from dockwarden.lock import AlreadyRunning, acquire_lock
    from dockwarden.execute import Executor
    from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver, connect
    from dockwarden.observe.host import HostSampler
    from dockwarden.observe.world import observe_world, write_world
    from dockwarden.pipeline import Reconciler
    from dockwarden.model import WorldState

    pol = load_policy(s.policy_path)
    desired = load_inventory(s.inventory, s.node)
    store = Store(s.state_dir / "dockwarden.db")
    lock = None
    if act:
        try:
            lock = acquire_lock(s.state_dir)
        except AlreadyRunning:
            act = False  # the daemon acts; we only look
    sampler = HostSampler()
    try:
        client = connect(s.docker_host)
        observer = ContainerObserver(client)
        root = observer.engine_info().get("root_dir")
        observe_world(observer, sampler, node=desired.node, now=utcnow(), with_stats=True, docker_root_dir=root)
        time.sleep(0.25)  # a second sample gives CPU %
        world = observe_world(observer, sampler, node=desired.node, now=utcnow(), with_stats=True, docker_root_dir=root)
    except ENGINE_ERRORS as e:
        client = None
        world = WorldState(node=desired.node, observed_at=utcnow(), host=sampler.sample(["/"]), engine_ok=False,
                           engine_error=str(e))
    from dockwarden.incidents import IncidentBook
    from dockwarden.sinks.notify import Notifier, NotifyWorker, Outbox
    from dockwarden.worker import WorkerContext

    events = EventLog(s.state_dir / "events.jsonl", store) if act else None
    executor = Executor(client, stop_timeout_s=pol.guardrails.stop_timeout_s) if (act and client) else None
    book = IncidentBook(s.state_dir / "dockwarden.db", desired.node) if act else None
    rec = Reconciler(store=store, events=events, executor=executor, policy=pol, desired=desired,
                     mode=mode or pol.guardrails.mode, incidents=book)
    if act:
        outbox = Outbox(s.state_dir / "dockwarden.db")
        events.subscribers.append(Notifier(outbox, lambda: pol).on_event)  # type: ignore[union-attr]
        result = rec.run_pass(world, now=utcnow())
        write_world(world, s.state_dir / "world.json")
        ev = result.evaluation
        # Deliver what this pass queued (cron users have no daemon to do it).
        sender = NotifyWorker(outbox)
        sender.ctx = WorkerContext(settings=s, node=desired.node, policy=lambda: pol, mode=lambda: rec.mode,
                                   world=lambda: world, emit=events.send, wake=lambda: None)  # type: ignore[union-attr]
        sender.tick()
    else:
        ev = rec.evaluate(world, now=utcnow())
    if lock is not None:
        lock.close()
    return ev, store


def _evaluation_json(ev, s: Settings, store: Store, *, mode: Mode | None = None, policy=None) -> dict[str, Any]:
    """The status document (``api.snapshot.status_document``: the same document the
    daemon's ``GET /api/v1/status`` serves)."""
    from dockwarden.api.snapshot import status_document
    from dockwarden.lock import lock_held

    pol = policy if policy is not None else load_policy(s.policy_path)
    return status_document(ev, mode=mode or pol.guardrails.mode, policy=pol, daemon_running=lock_held(s.state_dir))


def _render_status(data: dict[str, Any]) -> None:
    summ = data["summary"]
    out.print(f"[{SUMMARY_STYLES.get(summ, '')}]{summ.upper()}[/]  node [bold]{data['node']}[/]  "
              f"observed {data['observed_at']}  daemon {'running' if data['daemon_running'] else 'not running'}",
              highlight=False)
    if not data["engine_ok"]:
        out.print(f"[red]Docker engine unreachable:[/] {data['engine_error']}", highlight=False)
    h = data.get("host")
    if h:
        disks = ", ".join(f"{d['path']} {d['percent']:.0f}%" for d in h.get("disks", []))
        cpu = f"{h['cpu_percent']:.0f}%" if h.get("cpu_percent") is not None else "-"
        out.print(f"host: CPU {cpu}, load {h['load1']:.2f} {h['load5']:.2f} {h['load15']:.2f}, RAM available "
                  f"{human_bytes(h['mem_available_bytes'])} of {human_bytes(h['mem_total_bytes'])}, swap used "
                  f"{human_bytes(h['swap_used_bytes'])}, disk {disks}", highlight=False)
    t = Table(title="services", title_justify="left")
    for col in ("service", "container", "state", "health", "intent", "mode", "guard", "cpu", "mem"):
        t.add_column(col)
    for sv in data["services"]:
        g = sv.get("guard") or {}
        guard = []
        if g.get("paused"):
            guard.append("paused")
        if g.get("circuit") == "open":
            guard.append("[red]circuit open[/]")
        if g.get("attempts"):
            guard.append(f"attempts {g['attempts']}")
        state_style = "green" if sv["state"] == "running" else "red"
        health = sv["health"] or "-"
        if health == "unhealthy":
            health = f"[red]{health}[/]"
        t.add_row(sv["service"], sv["container"], f"[{state_style}]{sv['state']}[/]", health,
                  f"{sv['intent']} ({sv['intent_source']})", sv["remediation"], ", ".join(guard) or "ok",
                  f"{sv['cpu_percent']:.1f}%" if sv["cpu_percent"] is not None else "-", human_bytes(sv["memory_bytes"]))
    out.print(t)
    if data["untracked"]:
        out.print("untracked containers (observed, recommend only): "
                  + ", ".join(f"{u['container']} ({u['state']})" for u in data["untracked"]), highlight=False)
    for p in data["label_problems"]:
        out.print(f"[yellow]label problem:[/] {p}", highlight=False)


def _render_drift(data: dict[str, Any]) -> None:
    if not data["findings"]:
        out.print(f"[green]no drift[/] ({data['summary']})")
        return
    recs = {r["subject"]: r for r in data["recommendations"]}
    t = Table(title=f"drift — {data['summary']}", title_justify="left")
    for col in ("prio", "subject", "drift", "reason", "recommendation"):
        t.add_column(col)
    for f in data["findings"]:
        r = recs.get(f["subject"])
        rtxt = f"{r['type']}: {r['action']} ({r['decision']})" if r else "-"
        t.add_row(f["priority"], f["subject"] + ("" if f["tracked"] else " [dim](untracked)[/]"), f["drift"],
                  f["reason"], rtxt)
    out.print(t)


def once(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    mode: ModeOpt = None, as_json: JsonOpt = False,
) -> None:
    """One reconcile pass. Exit code: 0 nominal, 1 degraded/reconciling, 2 unstable, 3 could not check."""
    s = settings_from(inventory, state_dir, policy, node)
    try:
        ev, store = _evaluate(s, mode=mode, act=True)
    except (ConfigError, StoreError) as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(3)
    data = _evaluation_json(ev, s, store, mode=mode)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        _render_status(data)
        _render_drift(data)
    raise typer.Exit(ev.exit_code)


def _look(inventory, state_dir, policy, node) -> dict[str, Any]:
    """Observe and evaluate read-only; exit 3 on bad configuration or store.
    With ``--url``: the daemon's snapshot (``GET /api/v1/status``), the same document."""
    from dockwarden import cli_remote

    s = settings_from(inventory, state_dir, policy, node)
    remote = cli_remote.target(s)
    if remote is not None:
        return cli_remote.get(remote, "/api/v1/status")
    try:
        ev, store = _evaluate(s, mode=None, act=False)
    except (ConfigError, StoreError) as e:
        fail(str(e), 3)
    return _evaluation_json(ev, s, store)


def status(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The host's summary state, resources and every tracked service (read-only)."""
    data = _look(inventory, state_dir, policy, node)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        _render_status(data)


def drift(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Current drift with priorities and recommendations (read-only)."""
    data = _look(inventory, state_dir, policy, node)
    if as_json:
        print(json.dumps({k: data[k] for k in ("node", "summary", "observed_at", "findings", "recommendations")},
                         indent=2, default=str))
    else:
        _render_drift(data)
