"""Thin Typer app: parse, call, render (Rich). ``--json`` where a machine reads it.

Every command takes ``--inventory``/``DOCKWARDEN_INVENTORY``,
``--state-dir``/``DOCKWARDEN_STATE_DIR`` and ``--policy``/``DOCKWARDEN_POLICY``
the same way (plus ``--node``/``DOCKWARDEN_NODE``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from dockwarden import __version__
from dockwarden.config import ConfigError, Settings, load_policy
from dockwarden.inventory import load_inventory
from dockwarden.model import EventType, Mode, parse_time, to_jsonable, utcnow
from dockwarden.sinks.events import EventLog
from dockwarden.store import Store, StoreError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="dockwarden: keeps a Docker host in its desired state, and says so when it can't.")
inventory_app = typer.Typer(no_args_is_help=True, help="Work with inventories (hosts/<node>/services.yaml).")
app.add_typer(inventory_app, name="inventory")
# Feature command groups register here, one line each (e.g. `pool`, `storage`).
from dockwarden import cli_notify  # noqa: E402

app.command("incidents")(cli_notify.incidents)
app.command("ack")(cli_notify.ack)
app.add_typer(cli_notify.notify_app, name="notify")
from dockwarden.cli_pool import app as pool_app, pool_workers  # noqa: E402
app.add_typer(pool_app, name="pool")
from dockwarden import cli_storage  # noqa: E402
cli_storage.register(app)  # storage [--json], prune [--dry-run], journal [--date]

out = Console()
err = Console(stderr=True)

InventoryOpt = Annotated[Optional[Path], typer.Option("--inventory", "-i", help="Inventory dir or services.yaml [env DOCKWARDEN_INVENTORY].")]
StateDirOpt = Annotated[Optional[Path], typer.Option("--state-dir", "-s", help="State dir [env DOCKWARDEN_STATE_DIR; /var/lib/dockwarden as root, else ~/.local/state/dockwarden].")]
PolicyOpt = Annotated[Optional[Path], typer.Option("--policy", "-p", help="Policy TOML [env DOCKWARDEN_POLICY; built-in defaults].")]
NodeOpt = Annotated[Optional[str], typer.Option("--node", help="Which hosts/<node> of the inventory [env DOCKWARDEN_NODE].")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
ModeOpt = Annotated[Optional[Mode], typer.Option("--mode", "-m", help="observe | recommend | auto (default: the policy's, auto).")]

EVENT_STYLES = {
    "drift_detected": "yellow", "drift_resolved": "green", "reconcile_required": "magenta",
    "reconcile_recommended": "cyan", "reconcile_blocked": "bold red", "action_started": "blue",
    "action_succeeded": "green", "action_failed": "red", "recovered": "bold green",
    "summary_changed": "bold", "intent_changed": "bold cyan", "engine_lost": "bold red",
    "engine_reconnected": "bold green", "config_rejected": "bold red",
}
SUMMARY_STYLES = {"nominal": "bold green", "degraded": "bold yellow", "unstable": "bold red",
                  "reconciling": "bold blue", "unknown": "bold red"}


def _settings(inventory, state_dir, policy, node) -> Settings:
    return Settings.resolve(state_dir=state_dir, inventory=inventory, policy=policy, node=node)


def _fail(msg: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def daemon_workers(s: Settings) -> list:
    """The background workers `dockwarden run` starts beside the reconcile loop
    (see dockwarden.worker); features add theirs here, one line each."""
    workers: list = []
    workers += pool_workers(s)  # the container pool, when the policy sets [pool].image
    workers.append(cli_storage.storage_worker())  # storage samples, trends, disk-pressure recipe, housekeeping, journal
    return workers


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def echo_event(ev_dict: dict[str, Any]) -> None:
    """Print one event as a readable console line."""
    ts = (ev_dict.get("ts") or "")[11:23]
    t = ev_dict.get("type", "")
    style = EVENT_STYLES.get(t, "")
    who = ev_dict.get("service") or ""
    extra = []
    if ev_dict.get("priority"):
        extra.append(ev_dict["priority"])
    if ev_dict.get("action"):
        extra.append(ev_dict["action"])
    tag = f" [{' '.join(extra)}]" if extra else ""
    out.print(f"[dim]{ts}[/] [{style}]{t:<22}[/] [bold]{who}[/]{tag} {ev_dict.get('reason', '')}",
              highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- run / once


@app.command()
def run(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    mode: ModeOpt = None,
    resync: Annotated[float, typer.Option("--resync", min=1.0, help="Seconds between full resyncs.")] = 30.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Supervise the host in the foreground: events + resync -> reconcile -> act."""
    from dockwarden.daemon import Daemon
    from dockwarden.lock import AlreadyRunning

    _setup_logging(verbose)
    s = _settings(inventory, state_dir, policy, node)
    d = Daemon(s, mode=mode, resync_s=resync, echo=lambda e: echo_event(e.to_dict()), workers=daemon_workers(s))
    d.install_signal_handlers()
    out.print(f"[bold]dockwarden {__version__}[/] state dir {s.state_dir}, inventory {s.inventory or '(labels only)'}, "
              f"resync every {resync:g} s. Ctrl-C stops.", highlight=False)
    try:
        code = d.run()
    except AlreadyRunning as e:
        _fail(str(e), 2)
    except ConfigError as e:
        _fail(f"invalid configuration:\n{e}", 2)
    except StoreError as e:
        _fail(str(e), 2)
    raise typer.Exit(code)


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


def _evaluation_json(ev, s: Settings, store: Store) -> dict[str, Any]:
    from dockwarden.lock import lock_held
    from dockwarden.reconcile.drift import effective_intent, find_container

    services = []
    for name, spec in sorted(ev.desired.services.items()):
        c = find_container(spec, ev.world)
        h = ev.histories.get(name)
        intent = effective_intent(spec, ev.intents.get(name))
        rec_i = ev.intents.get(name)
        services.append({
            "service": name, "container": c.name if c else spec.container_name, "source": spec.source.value,
            "state": c.state if c else "missing", "health": c.health if c else None,
            "exit_code": c.exit_code if c else None, "restart_count": c.restart_count if c else None,
            "cpu_percent": c.cpu_percent if c else None, "memory_bytes": c.memory_bytes if c else None,
            "intent": intent.value, "intent_source": rec_i.source.value if rec_i else spec.source.value,
            "remediation": spec.remediation.value, "depends_on": list(spec.depends_on),
            "guard": to_jsonable(h.guard) if h else None,
        })
    tracked = {s_["container"] for s_ in services}
    untracked = [{"container": c.name, "state": c.state, "health": c.health, "exit_code": c.exit_code}
                 for c in ev.world.containers if c.name not in tracked]
    return {
        "node": ev.desired.node,
        "observed_at": to_jsonable(ev.world.observed_at),
        "summary": ev.summary.value if ev.world.engine_ok else "unknown",
        "exit_code": ev.exit_code,
        "engine_ok": ev.world.engine_ok,
        "engine_error": ev.world.engine_error,
        "daemon_running": lock_held(s.state_dir),
        "host": to_jsonable(ev.world.host),
        "services": services,
        "untracked": untracked,
        "findings": [
            {"priority": str(f.priority), "subject": f.subject, "drift": f.drift.kind.value,
             "container": f.drift.container, "tracked": f.drift.tracked, "reason": f.drift.reason,
             "details": to_jsonable(f.drift.details)}
            for f in ev.findings
        ],
        "recommendations": [
            {"subject": d.recommendation.subject, "type": d.event_type.value, "action": d.recommendation.action.value,
             "reason": d.recommendation.reason, "advice": list(d.recommendation.advice), "execute": d.execute,
             "decision": d.reason}
            for d in ev.decisions
        ],
        "label_problems": ev.label_problems,
    }


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    f = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if f < 1024 or unit == "TiB":
            return f"{f:.0f} {unit}" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1024
    return str(n)


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
                  f"{_human_bytes(h['mem_available_bytes'])} of {_human_bytes(h['mem_total_bytes'])}, swap used "
                  f"{_human_bytes(h['swap_used_bytes'])}, disk {disks}", highlight=False)
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
                  f"{sv['cpu_percent']:.1f}%" if sv["cpu_percent"] is not None else "-", _human_bytes(sv["memory_bytes"]))
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


@app.command()
def once(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    mode: ModeOpt = None, as_json: JsonOpt = False,
) -> None:
    """One reconcile pass. Exit code: 0 nominal, 1 degraded/reconciling, 2 unstable, 3 could not check."""
    s = _settings(inventory, state_dir, policy, node)
    try:
        ev, store = _evaluate(s, mode=mode, act=True)
    except (ConfigError, StoreError) as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(3)
    data = _evaluation_json(ev, s, store)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        _render_status(data)
        _render_drift(data)
    raise typer.Exit(ev.exit_code)


@app.command()
def status(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The host's summary state, resources and every tracked service (read-only)."""
    s = _settings(inventory, state_dir, policy, node)
    try:
        ev, store = _evaluate(s, mode=None, act=False)
    except (ConfigError, StoreError) as e:
        _fail(str(e), 3)
    data = _evaluation_json(ev, s, store)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        _render_status(data)


@app.command()
def drift(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Current drift with priorities and recommendations (read-only)."""
    s = _settings(inventory, state_dir, policy, node)
    try:
        ev, store = _evaluate(s, mode=None, act=False)
    except (ConfigError, StoreError) as e:
        _fail(str(e), 3)
    data = _evaluation_json(ev, s, store)
    if as_json:
        print(json.dumps({k: data[k] for k in ("node", "summary", "observed_at", "findings", "recommendations")},
                         indent=2, default=str))
    else:
        _render_drift(data)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_since(value: str | None) -> datetime | None:
    """``--since``: RFC 3339 time, or a duration ago like ``90s``, ``10m``, ``2h``, ``1d``.

    Raises:
        typer.BadParameter: neither form.
    """
    if value is None:
        return None
    m = _DURATION.match(value.strip())
    if m:
        n, unit = float(m.group(1)), m.group(2)
        return utcnow() - timedelta(seconds=n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])
    ts = parse_time(value)
    if ts is None:
        raise typer.BadParameter(f"expected an RFC 3339 time or a duration like 10m, got {value!r}", param_hint="--since")
    return ts


@app.command()
def events(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events.")] = False,
    since: Annotated[Optional[str], typer.Option("--since", help="RFC 3339 time or duration (10m, 2h).")] = None,
    service: Annotated[Optional[str], typer.Option("--service", help="Only this service.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 200,
    as_json: JsonOpt = False,
) -> None:
    """The event log (newest last); ``--follow`` keeps printing."""
    s = _settings(inventory, state_dir, policy, node)
    since_ts = parse_since(since)
    try:
        store = Store(s.state_dir / "dockwarden.db")
    except StoreError as e:
        _fail(str(e), 3)
    last_id = 0
    try:
        while True:
            rows = store.events(since=since_ts, after_id=last_id, service=service, limit=limit)
            for r in rows:
                last_id = max(last_id, r.pop("id"))
                if as_json:
                    print(json.dumps(r, default=str), flush=True)
                else:
                    echo_event(r)
            if not follow:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


# --------------------------------------------------------------------------- operator commands


def _operator_context(s: Settings, name: str):
    from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver, connect
    from dockwarden.inventory import merge_labelled

    pol = load_policy(s.policy_path)
    desired = load_inventory(s.inventory, s.node)
    try:
        client = connect(s.docker_host)
        containers = ContainerObserver(client, stats="none").observe(with_stats=False)
    except ENGINE_ERRORS as e:
        _fail(f"Docker engine unreachable: {e}", 3)
    merged, _ = merge_labelled(desired, containers)
    spec = merged.services.get(name)
    if spec is None:
        _fail(f"unknown service {name!r}; tracked services: {', '.join(sorted(merged.services)) or '(none)'}", 2)
    store = Store(s.state_dir / "dockwarden.db")
    log_ = EventLog(s.state_dir / "events.jsonl", store)
    return pol, merged, spec, store, log_, client, containers


def _emit(log_: EventLog, node: str, type_: EventType, service: str, reason: str, **kw: Any) -> None:
    from dockwarden.model import Event

    log_.send(Event(type=type_, ts=utcnow(), node=node, service=service, reason=reason, **kw))


def _act(store: Store, log_: EventLog, client, pol, node: str, spec, action, *, containers) -> bool:
    """Run one operator-requested action through execute, recorded as dockwarden's own."""
    from dockwarden.execute import Executor, compose_target_from_labels
    from dockwarden.model import ActionKind

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


@app.command()
def stop(
    service: Annotated[str, typer.Argument(help="Service name.")],
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
) -> None:
    """Record intent `stopped` and stop the service. dockwarden will not start it again."""
    from dockwarden.model import ActionKind, Intent, IntentSource

    s = _settings(inventory, state_dir, policy, node)
    try:
        pol, merged, spec, store, log_, client, containers = _operator_context(s, service)
    except (ConfigError, StoreError) as e:
        _fail(str(e), 2)
    store.set_intent(spec.name, Intent.STOPPED, IntentSource.CLI, utcnow(), "dockwarden stop")
    _emit(log_, merged.node, EventType.INTENT_CHANGED, spec.name, f"{spec.name}: operator stopped it (dockwarden stop)",
          details={"intent": "stopped", "source": "cli"})
    ok = True
    if any(c.name == spec.container_name and c.running for c in containers):
        ok = _act(store, log_, client, pol, merged.node, spec, ActionKind.STOP, containers=containers)
    else:
        out.print(f"{spec.name}: not running; intent recorded")
    raise typer.Exit(0 if ok else 1)


@app.command()
def start(
    service: Annotated[str, typer.Argument(help="Service name.")],
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
) -> None:
    """Record intent `running`, re-arm the guardrails and start the service."""
    from dockwarden.model import ActionKind, Intent, IntentSource
    from dockwarden.reconcile.policy import resume as resume_guard

    s = _settings(inventory, state_dir, policy, node)
    try:
        pol, merged, spec, store, log_, client, containers = _operator_context(s, service)
    except (ConfigError, StoreError) as e:
        _fail(str(e), 2)
    store.set_intent(spec.name, Intent.RUNNING, IntentSource.CLI, utcnow(), "dockwarden start")
    store.put_guard(resume_guard(store.guard(spec.name)))
    _emit(log_, merged.node, EventType.INTENT_CHANGED, spec.name, f"{spec.name}: operator started it (dockwarden start)",
          details={"intent": "running", "source": "cli"})
    down_deps = [d for d in spec.depends_on
                 if not any(c.name == merged.services[d].container_name and c.running for c in containers)]
    if down_deps:
        out.print(f"[yellow]{spec.name}: dependencies not running: {', '.join(down_deps)}[/]")
    ok = True
    if not any(c.name == spec.container_name and c.running for c in containers):
        ok = _act(store, log_, client, pol, merged.node, spec, ActionKind.START, containers=containers)
    else:
        out.print(f"{spec.name}: already running; intent recorded")
    raise typer.Exit(0 if ok else 1)


def _guard_command(service: str, s: Settings, *, pause_it: bool) -> None:
    from dockwarden.reconcile.policy import pause as pause_guard, resume as resume_guard

    try:
        pol, merged, spec, store, log_, client, containers = _operator_context(s, service)
    except (ConfigError, StoreError) as e:
        _fail(str(e), 2)
    g = store.guard(spec.name)
    g2 = pause_guard(g) if pause_it else resume_guard(g)
    store.put_guard(g2)
    what = "paused: no actions until `dockwarden resume`" if pause_it else "resumed: circuit closed, backoff and budget reset"
    _emit(log_, merged.node, EventType.GUARD_CHANGED, spec.name, f"{spec.name}: {what}",
          details={"paused": g2.paused, "circuit": g2.circuit.value})
    out.print(f"{spec.name}: {what}")


@app.command()
def pause(
    service: Annotated[str, typer.Argument(help="Service name.")],
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
) -> None:
    """Stop acting on a service (drift is still recorded) until `resume`."""
    _guard_command(service, _settings(inventory, state_dir, policy, node), pause_it=True)


@app.command()
def resume(
    service: Annotated[str, typer.Argument(help="Service name.")],
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
) -> None:
    """Unpause a service and re-arm it: close its circuit, reset backoff and budget."""
    _guard_command(service, _settings(inventory, state_dir, policy, node), pause_it=False)


@inventory_app.command("validate")
def inventory_validate(
    path: Annotated[Optional[Path], typer.Argument(help="Inventory dir or services.yaml (default: --inventory).")] = None,
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
) -> None:
    """Validate an inventory (every node) and the policy file, if one is given. Exit 1 when invalid."""
    from dockwarden.inventory import inventory_files, parse_services_file

    s = _settings(inventory, state_dir, policy, node)
    target = path or s.inventory
    if target is None:
        _fail("no inventory given (PATH, --inventory or DOCKWARDEN_INVENTORY)", 2)
    try:
        files = inventory_files(target)
        total = 0
        for n, f in files.items():
            total += len(parse_services_file(f, n))
        if s.policy_path is not None:
            load_policy(s.policy_path)
    except ConfigError as e:
        _fail(f"invalid configuration:\n{e}", 1)
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
