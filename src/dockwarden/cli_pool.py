"""``dockwarden pool ...``: the container pool from the command line.

Thin: parses, calls :class:`dockwarden.pool.manager.Pool`, renders (Rich, or
JSON with ``--json``). Every command takes ``--state-dir``, ``--inventory``,
``--policy`` and ``--node`` like the others (settings from flags, then
environment, then defaults); the pool's settings are the policy's ``[pool]``
table, which ``spawn`` and ``ensure-min`` override with flags of the same names.

Exit codes: 0 done; 1 refused by the rules (pool full, busy, nothing
available, already completed); 2 bad input (names the field); 3 the engine or
the database failed. ``dispatch`` exits with the command's own exit code, or
125 when dockwarden could not run it (``docker run``'s convention).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer

from dockwarden.cli_common import JsonOpt, NodeOpt, StateDirOpt, err, out
from dockwarden.model import to_jsonable
from dockwarden.settings import Settings

if TYPE_CHECKING:
    from dockwarden.config_pool import PoolSettings

app = typer.Typer(no_args_is_help=True, help="The container pool: worker containers, tasks dispatched to them.")
InventoryOpt = Annotated[Optional[Path], typer.Option("--inventory", "-i", help="Inventory \\[env DOCKWARDEN_INVENTORY]; gives the node name.")]
PolicyOpt = Annotated[Optional[Path], typer.Option("--policy", "-p", help="Policy TOML with a \\[pool] table \\[env DOCKWARDEN_POLICY].")]
Repeat = Optional[list[str]]


def pool_workers(settings: Settings) -> list:
    """The daemon's pool worker when the policy sets ``[pool].image`` (see
    :func:`dockwarden.pool.worker.pool_workers`); imported on use, so the CLI
    starts without the docker SDK."""
    from dockwarden.pool.worker import pool_workers as make

    return make(settings)


def _node(s: Settings) -> str:
    """``--node``, else the inventory's node (its only one), else the hostname."""
    import socket

    if s.node:
        return s.node
    if s.inventory is not None:
        from dockwarden.config import ConfigError
        from dockwarden.inventory import load_inventory

        try:
            return load_inventory(s.inventory, None).node
        except ConfigError:
            return socket.gethostname()  # a broken inventory is reported by the commands that use it
    return socket.gethostname()


def _open(state_dir, inventory, policy, node, settings: PoolSettings | None = None):
    """The pool of these settings, its events going to ``events.jsonl`` and SQLite."""
    from dockwarden.config import load_policy
    from dockwarden.pool.manager import Pool
    from dockwarden.sinks.events import EventLog
    from dockwarden.store import Store

    s = Settings.resolve(state_dir=state_dir, inventory=inventory, policy=policy, node=node)
    pool_settings = settings or load_policy(s.policy_path).pool
    events = EventLog(s.state_dir / "events.jsonl", Store(s.state_dir / "dockwarden.db"))
    return Pool(s.state_dir, pool_settings, node=_node(s), emit=events.send, docker_host=s.docker_host)


def _call(as_json: bool, fn: Callable[[], Any], render: Callable[[Any], None], *, refused_if_none: str = "") -> None:
    """Run ``fn``, print its result (JSON or ``render``), map errors to exit codes."""
    import sqlite3

    from dockwarden.config import ConfigError
    from dockwarden.pool.errors import PoolError
    from dockwarden.store import StoreError

    try:
        result = fn()
    except PoolError as e:
        _fail(str(e), e.exit_code, as_json)
    except ConfigError as e:
        _fail(f"invalid configuration:\n{e}", 2, as_json)
    except (StoreError, sqlite3.Error) as e:
        _fail(f"database: {e}", 3, as_json)
    if result is None and refused_if_none:
        _fail(refused_if_none, 1, as_json)
    if as_json:
        print(json.dumps(_jsonable(result), indent=2, default=str))
    else:
        render(result)


def _fail(msg: str, code: int, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps({"ok": False, "error": msg, "exit_code": code}))
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _jsonable(obj: Any) -> Any:
    from dockwarden.pool.schema import PoolContainer

    if isinstance(obj, PoolContainer):
        return {**to_jsonable(obj), "busy": obj.busy}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    return to_jsonable(obj)


def _pairs(values: Repeat, flag: str) -> dict[str, str]:
    outp = {}
    for v in values or []:
        k, sep, val = v.partition("=")
        if not sep or not k:
            _fail(f"{flag.strip('-')}: expected KEY=VALUE, got {v!r}", 2)
        outp[k] = val
    return outp


def _overridden(base: PoolSettings, **flags: Any) -> PoolSettings:
    """The policy's [pool] with the given flags on top (labels/env merged, mounts added).

    Exits 2 naming the field when a value is invalid.
    """
    import shlex

    from pydantic import ValidationError

    from dockwarden.config import format_validation_error
    from dockwarden.config_pool import PoolSettings

    data = base.model_dump()
    for key, value in flags.items():
        if value is None or value == [] or value == {}:
            continue
        if key in ("labels", "env"):
            data[key] = {**data[key], **value}
        elif key == "mounts":
            data[key] = [*data[key], *value]
        elif key == "command":
            data[key] = json.loads(value) if value.lstrip().startswith("[") else shlex.split(value)
        else:
            data[key] = value
    try:
        return PoolSettings.model_validate(data)
    except ValidationError as e:
        _fail(format_validation_error("flags", e), 2)
    raise AssertionError("unreachable")


def _print_container(c) -> None:
    flags = [c.status] + (["busy"] if c.busy else []) + ([f"until {c.rate_limit_until:%H:%M:%S}Z"] if
                                                           c.status == "rate_limited" and c.rate_limit_until else [])
    out.print(f"{c.name} ({', '.join(flags)}) id {(c.docker_id or '-')[:12]}"
              + (f" — {c.error}" if c.error else ""), highlight=False)


def _overrides(image, command, prefix, min_, max_, idle_timeout, rate_limit_cooldown, label, env, mount, cpus,
               memory) -> dict[str, Any]:
    return dict(image=image, command=command, prefix=prefix, min=min_, max=max_, idle_timeout=idle_timeout,
                rate_limit_cooldown=rate_limit_cooldown, labels=_pairs(label, "--label"), env=_pairs(env, "--env"),
                mounts=mount, cpus=cpus, memory=memory)


ImageOpt = Annotated[Optional[str], typer.Option("--image", help="Image (no pull).")]
CommandOpt = Annotated[Optional[str], typer.Option("--command", help="Command: 'sleep 3600' or a JSON list.")]
PrefixOpt = Annotated[Optional[str], typer.Option("--prefix", help="Name prefix: <prefix>-<n>.")]
MinOpt = Annotated[Optional[int], typer.Option("--min", help="Containers to keep.")]
MaxOpt = Annotated[Optional[int], typer.Option("--max", help="Most live containers.")]
IdleOpt = Annotated[Optional[int], typer.Option("--idle-timeout", help="Seconds idle before cleanup.")]
CooldownOpt = Annotated[Optional[int], typer.Option("--rate-limit-cooldown", help="Seconds a rate limit lasts.")]
LabelOpt = Annotated[Repeat, typer.Option("--label", help="KEY=VALUE, repeatable.")]
EnvOpt = Annotated[Repeat, typer.Option("--env", help="KEY=VALUE, repeatable (never secrets: see \\[pool].secrets).")]
MountOpt = Annotated[Repeat, typer.Option("--mount", help="SOURCE:TARGET[:ro|rw], repeatable.")]
CpusOpt = Annotated[Optional[float], typer.Option("--cpus", help="CPU limit in CPUs; 0 none.")]
MemoryOpt = Annotated[Optional[str], typer.Option("--memory", help="Memory limit: bytes or 512m; 0 none.")]


@app.command()
def spawn(
    name: Annotated[Optional[str], typer.Argument(help="Name (default <prefix>-<n>).")] = None,
    image: ImageOpt = None, command: CommandOpt = None, prefix: PrefixOpt = None, min_: MinOpt = None,
    max_: MaxOpt = None, idle_timeout: IdleOpt = None, rate_limit_cooldown: CooldownOpt = None,
    label: LabelOpt = None, env: EnvOpt = None, mount: MountOpt = None, cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    state_dir: StateDirOpt = None, inventory: InventoryOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create and start one container; refuses beyond max."""
    def run():
        p = _open(state_dir, inventory, policy, node)
        s = _overridden(p.settings, **_overrides(image, command, prefix, min_, max_, idle_timeout,
                                                 rate_limit_cooldown, label, env, mount, cpus, memory))
        p.settings = s
        return p.spawn(name, s)
    _call(as_json, run, _print_container)


@app.command("ensure-min")
def ensure_min(
    image: ImageOpt = None, command: CommandOpt = None, prefix: PrefixOpt = None, min_: MinOpt = None,
    max_: MaxOpt = None, idle_timeout: IdleOpt = None, rate_limit_cooldown: CooldownOpt = None,
    label: LabelOpt = None, env: EnvOpt = None, mount: MountOpt = None, cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    state_dir: StateDirOpt = None, inventory: InventoryOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Spawn containers until min are live."""
    def run():
        p = _open(state_dir, inventory, policy, node)
        p.settings = _overridden(p.settings, **_overrides(image, command, prefix, min_, max_, idle_timeout,
                                                          rate_limit_cooldown, label, env, mount, cpus, memory))
        return p.ensure_min()
    _call(as_json, run, lambda cs: [_print_container(c) for c in cs] or out.print("min already met"))


@app.command()
def destroy(
    ref: Annotated[str, typer.Argument(metavar="NAME|ID", help="Name, pool id or docker id prefix.")],
    force: Annotated[bool, typer.Option("--force", help="Also when busy (its open dispatches fail).")] = False,
    state_dir: StateDirOpt = None, inventory: InventoryOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a container (refuses a busy one unless --force); the row stays as stopped."""
    _call(as_json, lambda: _open(state_dir, inventory, policy, node).destroy(ref, force=force), _print_container)


@app.command("list")
def list_(
    status: Annotated[Optional[str], typer.Option("--status", help="Only this status (stopped: destroyed ones).")] = None,
    state_dir: StateDirOpt = None, inventory: InventoryOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The pool's containers."""
    def render(cs) -> None:
        from rich.table import Table

        t = Table(title=f"pool ({len(cs)})", title_justify="left")
        t.add_column("name", no_wrap=True)
        for col in ("status", "busy", "dispatches", "last dispatch", "rate limit until", "host", "error"):
            t.add_column(col)
        for c in cs:
            t.add_row(c.name, c.status, "yes" if c.busy else "", str(c.dispatch_count),
                      str(to_jsonable(c.last_dispatch_at) or "-"), str(to_jsonable(c.rate_limit_until) or "-"),
                      c.host, c.error or "")
        out.print(t)
    _call(as_json, lambda: _open(state_dir, inventory, policy, node).list(status), render)


@app.command()
def status(
    state_dir: StateDirOpt = None, inventory: InventoryOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Counts by status, busy, available, dispatches and outcomes (one query)."""
    def render(st) -> None:
        out.print(f"pool {st['prefix']} ({st['image'] or 'no image'}): {st['live']} live of min {st['min']} / "
                  f"max {st['max']}; {st['available']} available, {st['busy']} busy; healthy {st['healthy']}, "
                  f"starting {st['starting']}, unhealthy {st['unhealthy']}, rate-limited {st['rate_limited']}, "
                  f"failed {st['failed']}, destroyed {st['destroyed']}", highlight=False)
        out.print(f"dispatches {st['dispatches']} ({st['open_dispatches']} open): ok {st['outcome_ok']}, failed "
                  f"{st['outcome_failed']}, rate_limited {st['outcome_rate_limited']}", highlight=False)
    _call(as_json, lambda: _open(state_dir, inventory, policy, node).status(), render)


@app.command()
def health(
    state_dir: StateDirOpt = None, inventory: InventoryOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check every container: engine state, health command or HTTP probe; expired rate limits return to healthy."""
    def render(rs) -> None:
        for r in rs:
            change = f"{r.before} -> {r.status}" if r.before != r.status else r.status
            out.print(f"{r.name}: {change} ({r.reason})", highlight=False)
        if not rs:
            out.print("no pool containers")
    _call(as_json, lambda: _open(state_dir, inventory, policy, node).health(), render)


@app.command()
def select(
    host: Annotated[Optional[str], typer.Option("--host", help="Only containers on this node.")] = None,
    task: Annotated[Optional[str], typer.Option("--task", help="Task id recorded with the dispatch.")] = None,
    state_dir: StateDirOpt = None, inventory: InventoryOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Select a container and record the dispatch (run it yourself; then `complete`). Exit 1 when none is free."""
    def run():
        p = _open(state_dir, inventory, policy, node)
        picked = p.select(host=host, task_id=task)
        if picked is None:
            _fail(p.unavailable_reason(), 1, as_json)
        return {"container": picked[0], "dispatch": picked[1]}
    _call(as_json, run, lambda r: out.print(f"{r['container'].name} dispatch {r['dispatch'].id}", highlight=False))


@app.command()
def complete(
    dispatch_id: Annotated[str, typer.Argument(metavar="DISPATCH_ID")],
    outcome: Annotated[str, typer.Option("--outcome", help="OK | failed | rate_limited")],
    exit_code: Annotated[Optional[int], typer.Option("--exit-code", help="The task's exit code.")] = None,
    state_dir: StateDirOpt = None, inventory: InventoryOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a dispatch's completion; rate_limited starts the container's cooldown."""
    _call(as_json, lambda: _open(state_dir, inventory, policy, node).complete(dispatch_id, outcome, exit_code=exit_code),
          lambda d: out.print(f"dispatch {d.id} on {d.container}: {d.outcome}", highlight=False))


@app.command("rate-limit")
def rate_limit(
    ref: Annotated[str, typer.Argument(metavar="NAME|ID")],
    action: Annotated[str, typer.Argument(metavar="set|clear")],
    seconds: Annotated[Optional[str], typer.Argument(metavar="SECONDS", help="Default: rate_limit_cooldown.")] = None,
    state_dir: StateDirOpt = None, inventory: InventoryOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set (for SECONDS, a positive integer) or clear a container's rate limit."""
    _call(as_json, lambda: _open(state_dir, inventory, policy, node).rate_limit(ref, action, seconds), _print_container)


@app.command()
def cleanup(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be destroyed.")] = False,
    state_dir: StateDirOpt = None, inventory: InventoryOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Destroy containers idle longer than idle_timeout, keeping min; never busy or fresh ones."""
    verb = "would destroy" if dry_run else "destroyed"
    _call(as_json, lambda: _open(state_dir, inventory, policy, node).cleanup(dry_run=dry_run),
          lambda cs: out.print(f"{verb}: {', '.join(c.name for c in cs) or 'nothing'}", highlight=False))


@app.command(context_settings={"allow_interspersed_args": False})
def dispatch(
    command: Annotated[list[str], typer.Argument(metavar="-- CMD...", help="The command, after --.")],
    task: Annotated[Optional[str], typer.Option("--task", help="Task id recorded with the dispatch.")] = None,
    host: Annotated[Optional[str], typer.Option("--host", help="Only containers on this node.")] = None,
    rate_limited_exit: Annotated[Optional[int], typer.Option(
        "--rate-limited-exit", help="This exit code records outcome rate_limited.")] = None,
    state_dir: StateDirOpt = None, inventory: InventoryOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Select a container, run CMD in it (docker exec), stream its output, record the outcome.
    Exits with CMD's exit code (125: could not run it). With --json the output is captured into the JSON."""
    import sqlite3

    from dockwarden.config import ConfigError
    from dockwarden.pool.errors import PoolError
    from dockwarden.store import StoreError

    captured: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def sink(name: str, stream) -> Callable[[bytes], None]:
        if as_json:
            return captured[name].extend
        return lambda b: (stream.buffer.write(b), stream.flush())

    try:
        p = _open(state_dir, inventory, policy, node)
        d = p.dispatch(list(command), task_id=task, host=host, on_stdout=sink("stdout", sys.stdout),
                       on_stderr=sink("stderr", sys.stderr), rate_limited_exit=rate_limited_exit)
    except PoolError as e:
        _fail(str(e), 125, as_json)
    except (ConfigError, StoreError, sqlite3.Error) as e:
        _fail(str(e), 125, as_json)
    if as_json:
        print(json.dumps({**_jsonable(d), **{k: v.decode("utf-8", "replace") for k, v in captured.items()}},
                         indent=2, default=str))
    raise typer.Exit(d.exit_code if d.exit_code is not None and 0 <= d.exit_code <= 255 else 125)
