"""``once``, ``status`` and ``drift``: observe, evaluate, render."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dockwarden.cli_common import (SUMMARY_STYLES, InventoryOpt, JsonOpt, ModeOpt, NodeOpt, PolicyOpt, StateDirOpt,
                                   err, fail, human_bytes, out, settings_from)
from dockwarden.model import Mode, utcnow

if TYPE_CHECKING:
    from dockwarden.settings import Settings
    from dockwarden.store import Store


#: Seconds at least between the two samples of the CPU counters of ``once``/``status
#: --fresh``: the first is taken before anything else (``CgroupStatsReader.prime``,
#: the host sampler's baseline), so the interval covers the imports, the set-up and
#: the engine calls instead of a sleep after them (issue 9).
CPU_SAMPLE_S = 0.25


def _start_cpu_interval() -> tuple[float, Any, Any]:
    """The first CPU sample of the host and of every container with a cgroup, taken
    before the heavy imports (psutil and the cgroup files only).

    Returns:
        tuple: (monotonic time of the sample, ``HostSampler``, ``CgroupStatsReader``).
    """
    from dockwarden.observe.host import HostSampler
    from dockwarden.observe.stats import CgroupStatsReader

    primed = time.monotonic()
    sampler = HostSampler()
    cgroup = CgroupStatsReader()
    cgroup.prime()
    return primed, sampler, cgroup


def _evaluate(s: Settings, *, mode: Mode | None, act: bool, interval: tuple[float, Any, Any] | None = None):
    """Observe once and evaluate; with ``act`` also record and execute (needs the lock).

    ``interval``: from :func:`_start_cpu_interval` when the caller started it first.
    """
    primed, sampler, cgroup = interval or _start_cpu_interval()
    from dockwarden.config import load_policy
    from dockwarden.execute import Executor
    from dockwarden.incidents import IncidentBook
    from dockwarden.inventory import load_inventory
    from dockwarden.lock import AlreadyRunning, acquire_lock
    from dockwarden.model import WorldState
    from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver, connect
    from dockwarden.observe.world import observe_world, resample, write_world
    from dockwarden.pipeline import Reconciler
    from dockwarden.sinks.events import EventLog
    from dockwarden.sinks.notify import Notifier, NotifyWorker, Outbox
    from dockwarden.store import Store
    from dockwarden.worker import WorkerContext

    pol = load_policy(s.policy_path)
    desired = load_inventory(s.inventory, s.node)
    store = Store(s.state_dir / "dockwarden.db", desired.node)
    lock = None
    if act:
        try:
            lock = acquire_lock(s.state_dir)
        except AlreadyRunning:
            act = False  # the daemon acts; we only look
    try:
        client = connect(s.docker_host)
        observer = ContainerObserver(client, cgroup=cgroup)
        root = observer.engine_info().get("root_dir")
    except ENGINE_ERRORS as e:
        client = observer = None
        root, error = None, str(e)
    events = EventLog(s.state_dir / "events.jsonl", store) if act else None
    executor = Executor(client, stop_timeout_s=pol.guardrails.stop_timeout_s) if (act and client) else None
    book = IncidentBook(s.state_dir / "dockwarden.db", desired.node) if act else None
    protocol = None
    if act and events is not None:
        from dockwarden.actions import ActionProtocol
        from dockwarden.model import ActionBy

        protocol = ActionProtocol(store, events.send, desired.node, by=ActionBy.CLI,
                                  stop_timeout_s=pol.guardrails.stop_timeout_s)
        protocol.close_interrupted()
    rec = Reconciler(store=store, events=events, executor=executor, policy=pol, desired=desired,
                     mode=mode or pol.guardrails.mode, incidents=book, protocol=protocol)
    if observer is not None:
        time.sleep(max(0.0, CPU_SAMPLE_S - (time.monotonic() - primed)))
        world = observe_world(observer, sampler, node=desired.node, now=utcnow(), with_stats=True,
                              docker_root_dir=root, sparse=_must_inspect(desired, pol, store))
        if world.engine_ok and any(c.running and c.cpu_percent is None for c in world.containers):
            # Started since the first sample, or read through the engine's stats API (a
            # remote engine): a second read CPU_SAMPLE_S after this one gives their CPU %.
            time.sleep(CPU_SAMPLE_S)
            world = resample(world, observer, sampler, now=utcnow())
    else:
        world = WorldState(node=desired.node, observed_at=utcnow(), host=sampler.sample(["/"]), engine_ok=False,
                           engine_error=error)
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


def _must_inspect(desired, pol, store):
    """For a sparse observation (``ContainerObserver.observe``): the running
    containers built from the list that must be inspected all the same, given
    those list-built states: a tracked service's container whose creation spec
    was not recorded since it was created (``recreate`` needs it) or that has an
    action waiting for its verdict (judged by its start time)."""
    from dockwarden.inventory import merge_labelled
    from dockwarden.model import WorldState
    from dockwarden.reconcile.resolve import find_container

    seen = store.spec_times()
    pending = set(store.pending_actions())

    def plan(light):
        world = WorldState(node=desired.node, observed_at=utcnow(), host=None, containers=tuple(light))
        merged, _ = merge_labelled(desired, world.containers, pol.labels)
        out = []
        for name, spec in merged.services.items():
            c = find_container(spec, world)
            if c is None:
                continue
            t = seen.get(name)
            if name in pending or t is None or c.created_at is None or t < c.created_at:
                out.append(c.id)
        return out

    return plan


def _evaluation_json(ev, s: Settings, store: Store, *, mode: Mode | None = None, policy=None) -> dict[str, Any]:
    """The status document (``report.status_document``: the same document the
    daemon's status.json and ``GET /api/v1/status`` hold)."""
    from dockwarden.config import load_policy
    from dockwarden.lock import lock_held
    from dockwarden.report import status_document

    pol = policy if policy is not None else load_policy(s.policy_path)
    return status_document(ev, mode=mode or pol.guardrails.mode, policy=pol, daemon_running=lock_held(s.state_dir))


def _needs_attention(sv: dict[str, Any], subjects: set[str]) -> bool:
    """A service worth a line by default: it has a finding, is not running while
    it should, is unhealthy, or its guard is not clear."""
    g = sv.get("guard") or {}
    down = sv["intent"] == "running" and sv["state"] != "running"
    return (sv["service"] in subjects or down or sv.get("health") == "unhealthy" or bool(g.get("paused"))
            or g.get("circuit") == "open" or bool(g.get("attempts")))


def _guard_text(sv: dict[str, Any]) -> str:
    g = sv.get("guard") or {}
    out_ = []
    if g.get("paused"):
        out_.append("paused")
    if g.get("circuit") == "open":
        out_.append("circuit open")
    if g.get("attempts"):
        out_.append(f"attempts {g['attempts']}")
    return ", ".join(out_) or "ok"


def _render_status(data: dict[str, Any], *, show_all: bool = False) -> None:
    """Summary, host, counts by state, then the services that need attention
    (``show_all``: every service). A Rich table on a terminal; plain columns,
    never truncated, when stdout is a pipe or a file (issue 9: readable at scale)."""
    import sys

    from rich.table import Table
    from rich.text import Text

    summ = data["summary"]
    src = " (from the running daemon's last pass)" if data.get("source") == "daemon" else ""
    out.print(f"[{SUMMARY_STYLES.get(summ, '')}]{summ.upper()}[/]  node [bold]{data['node']}[/]  "
              f"observed {data['observed_at']}{src}  daemon {'running' if data['daemon_running'] else 'not running'}",
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
    services = data["services"]
    counts: dict[str, int] = {}
    for sv in services:
        key = sv["state"] if sv["intent"] == "running" else f"{sv['state']} (stopped on purpose)"
        if sv.get("health") == "unhealthy":
            key = "unhealthy"
        counts[key] = counts.get(key, 0) + 1
    bad_untracked = [u for u in data["untracked"] if u["health"] == "unhealthy"
                     or (u["state"] in ("exited", "dead") and u["exit_code"] not in (None, 0, 137, 143))]
    out.print(f"services: {len(services)} — " + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none")
              + f"; untracked containers: {len(data['untracked'])} ({len(bad_untracked)} failing)", highlight=False)
    subjects = {f["subject"] for f in data["findings"]}
    shown = services if show_all else [sv for sv in services if _needs_attention(sv, subjects)]
    cols = ("service", "container", "state", "health", "intent", "mode", "guard", "cpu", "mem")
    rows = [(sv["service"], sv["container"], sv["state"], sv["health"] or "-",
             f"{sv['intent']} ({sv['intent_source']})", sv["remediation"], _guard_text(sv),
             f"{sv['cpu_percent']:.1f}%" if sv["cpu_percent"] is not None else "-", human_bytes(sv["memory_bytes"]))
            for sv in shown]
    if not shown:
        out.print("[green]every service is as it should be[/]" + ("" if show_all else " (--all lists them)"))
    elif sys.stdout.isatty():
        title = "services" if show_all else "services that need attention (--all lists every one)"
        t = Table(title=title, title_justify="left")
        for col in cols:
            t.add_column(col, overflow="fold")
        for r in rows:
            style = "green" if r[2] == "running" else "red"
            t.add_row(*[Text(x) for x in r[:2]], Text(r[2], style=style),
                      Text(r[3], style="red" if r[3] == "unhealthy" else ""), *[Text(x) for x in r[4:]])
        out.print(t)
    else:  # a pipe or a file: plain columns, whole names
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        for r in (cols, *rows):
            print("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())
    listed = data["untracked"] if show_all else bad_untracked
    if listed:
        out.print(("untracked containers: " if show_all else "failing untracked containers (recommend only): ")
                  + ", ".join(f"{u['container']} ({u['state']})" for u in listed), highlight=False,
                  soft_wrap=True)
    for p in data["label_problems"]:
        out.print(f"[yellow]label problem:[/] {p}", highlight=False, soft_wrap=True)


def _render_drift(data: dict[str, Any]) -> None:
    from rich.table import Table

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
    interval = _start_cpu_interval()
    from dockwarden.config import ConfigError
    from dockwarden.store import StoreError

    s = settings_from(inventory, state_dir, policy, node)
    try:
        ev, store = _evaluate(s, mode=mode, act=True, interval=interval)
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


def _look(inventory, state_dir, policy, node, fresh: bool = False) -> dict[str, Any]:
    """The status document: with ``--url``, the daemon's snapshot (``GET
    /api/v1/status``); with a daemon running on the state dir, its latest
    document (what it saw on its last pass); else observe and evaluate
    read-only. ``fresh`` always observes. Exits 3 on bad configuration or store."""
    from dockwarden import cli_remote

    s = settings_from(inventory, state_dir, policy, node)
    remote = cli_remote.target(s)
    if remote is not None:
        return cli_remote.get(remote, "/api/v1/status")
    if not fresh:
        from dockwarden.lock import lock_held
        from dockwarden.status_file import read_fresh

        if lock_held(s.state_dir):
            doc = read_fresh(s.state_dir)
            if doc is not None:
                return _with_recorded_intents(doc, s)
    interval = _start_cpu_interval()
    from dockwarden.config import ConfigError  # only now: the paths above need no pydantic models
    from dockwarden.store import StoreError

    try:
        ev, store = _evaluate(s, mode=None, act=False, interval=interval)
    except (ConfigError, StoreError) as e:
        fail(str(e), 3)
    return _evaluation_json(ev, s, store)


def _with_recorded_intents(doc: dict[str, Any], s: Settings) -> dict[str, Any]:
    """The daemon's document with the intents recorded since its last pass (a
    `dockwarden stop` a moment ago shows at once)."""
    from dockwarden.store import Store, StoreError

    if "nodes" in doc:
        for d in doc["nodes"]:
            _with_recorded_intents(d, s)
        return doc
    try:
        intents = Store(s.state_dir / "dockwarden.db", str(doc.get("node") or "")).intents()
    except StoreError:
        return doc
    for svc in doc.get("services", []):
        rec = intents.get(svc.get("service"))
        if rec is not None:
            svc["intent"], svc["intent_source"] = rec.intent.value, rec.source.value
    return doc


FreshOpt = Annotated[bool, typer.Option("--fresh", help="Observe the engine now instead of reading what a "
                                                          "running daemon last saw.")]


def status(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False, fresh: FreshOpt = False,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="List every service, not only those that "
                                                                 "need attention.")] = False,
) -> None:
    """The host's summary state, counts by state, and the services that need attention (read-only).

    With a daemon running on the state dir, this is what it saw on its last pass."""
    data = _look(inventory, state_dir, policy, node, fresh)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    elif "nodes" in data:  # a daemon supervising several nodes: the fleet, then each node
        summ = data["summary"]
        offline = data.get("offline") or []
        out.print(f"fleet: [{SUMMARY_STYLES.get(summ, '')}]{summ.upper()}[/]  {len(data['nodes'])} nodes"
                  + (f", offline: {', '.join(offline)}" if offline else ""), highlight=False)
        for doc in data["nodes"]:
            out.print()
            out.print(f"[bold]node {doc['node']}[/] ({doc.get('node_state', 'online')})", highlight=False)
            _render_status(doc, show_all=show_all)
    else:
        _render_status(data, show_all=show_all)


def drift(
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False, fresh: FreshOpt = False,
) -> None:
    """Current drift with priorities and recommendations (read-only)."""
    data = _look(inventory, state_dir, policy, node, fresh)
    docs = data["nodes"] if "nodes" in data else [data]
    if as_json:
        views = [{k: d[k] for k in ("node", "summary", "observed_at", "findings", "recommendations")} for d in docs]
        print(json.dumps(views[0] if "nodes" not in data else {"summary": data["summary"], "nodes": views},
                         indent=2, default=str))
    else:
        for d in docs:
            if "nodes" in data:
                out.print(f"[bold]node {d['node']}[/]", highlight=False)
            _render_drift(d)
