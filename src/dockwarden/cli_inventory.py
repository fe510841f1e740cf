"""``dockwarden inventory init``: write an inventory from what the engine runs now.

The mapping is pure (``adopt``); this module observes the engine, writes the
file (never over an existing one without ``--force``), checks it with the
inventory loader and tells the person what it wrote, what it skipped and why,
and what to confirm. Heavy imports live inside the command body.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from dockwarden.cli_common import InventoryOpt, NodeOpt, PolicyOpt, StateDirOpt, err, fail, out, settings_from

_NODE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")


def _label_filter(values: list[str] | None) -> dict[str, str | None]:
    """``--label KEY`` / ``--label KEY=VALUE`` -> {key: value or None}."""
    out_: dict[str, str | None] = {}
    for v in values or []:
        key, sep, value = v.partition("=")
        if not key:
            raise typer.BadParameter(f"expected KEY or KEY=VALUE, got {v!r}", param_hint="--label")
        out_[key] = value if sep else None
    return out_


def init(
    node: NodeOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Inventory directory to write hosts/<node>/services.yaml into "
                            "(default: --inventory / DOCKWARDEN_INVENTORY, else ./inventory).")] = None,
    include_stopped: Annotated[bool, typer.Option(
        "--all/--running", help="Adopt stopped containers too, as `desired: stopped` (--all, the default), "
                                "or running ones only.")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the YAML; write nothing.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing services.yaml (the old one is kept as services.yaml.bak).")] = False,
    label: Annotated[Optional[list[str]], typer.Option(
        "--label", "-l", help="Adopt only containers with this label (KEY or KEY=VALUE); repeatable.")] = None,
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None,
) -> None:
    """Write an inventory from what the engine runs now: one service per container or compose service.

    Compose services get their project, service and compose file (from the
    project's labels, for you to confirm: the inventory is the only source of
    compose paths dockwarden trusts) and depends_on where compose recorded it
    (compose v2). Containers stopped now are written `desired: stopped`. Pool
    containers, one-off jobs (docker run --rm, compose run) and dockwarden itself
    are skipped, each with the reason. The node is --node / DOCKWARDEN_NODE, else
    this machine's hostname. Exit 1 when the file exists (see --force), 3 when
    the engine does not answer.
    """
    import socket
    import tempfile

    from dockwarden.adopt import adopt, render
    from dockwarden.config import ConfigError
    from dockwarden.doctor import own_container_ids
    from dockwarden.inventory import parse_services_file
    from dockwarden.model import utcnow
    from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver, connect

    s = settings_from(inventory, state_dir, policy, node)
    name = s.node or socket.gethostname()
    if not _NODE.match(name):
        fail(f"node name {name!r}: expected letters, digits, then also '_', '.', '-' (a directory name); "
             f"give one with --node", 2)
    root = out_dir or s.inventory or Path("inventory")
    if root.suffix in (".yaml", ".yml"):
        fail(f"--out {root}: expected the inventory directory (hosts/{name}/services.yaml is written in it)", 2)
    target = root / "hosts" / name / "services.yaml"
    if target.exists() and not (force or dry_run):
        fail(f"{target} exists; not overwritten. --force replaces it (keeping the old one as services.yaml.bak); "
             f"--dry-run prints the new one", 1)
    match = _label_filter(label)
    try:
        client = connect(s.docker_host)
        observer = ContainerObserver(client, stats="none")
        try:
            containers = observer.observe(with_stats=False)
        finally:
            observer.close()
    except ENGINE_ERRORS as e:
        fail(f"Docker engine unreachable: {e}", 3)
    now = utcnow()
    result = adopt(containers, include_stopped=include_stopped, own_ids=own_container_ids(), match_labels=match)
    text = render(result, node=name, generated_at=now, engine=s.docker_host or "unix:///var/run/docker.sock")

    # The loader checks what is written, before it replaces anything.
    tmp_dir = None if dry_run else target.parent
    if tmp_dir is not None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=".services-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            parse_services_file(Path(tmp), name)
        except ConfigError as e:  # a bug of adopt's, never the user's: say so plainly
            fail(f"the inventory made from this engine does not validate (please report it):\n{e}", 3)
        if not dry_run:
            if target.exists():
                os.replace(target, target.with_name("services.yaml.bak"))
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
            tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    _report(result, target, name, dry_run=dry_run, text=text, match=bool(match), root=root)


def _report(result, target: Path, node: str, *, dry_run: bool, text: str, match: bool, root: Path) -> None:
    """Print what was written (or the YAML, with --dry-run), skipped and to confirm.
    With --dry-run the YAML goes to stdout and the rest to stderr."""
    say = err if dry_run else out
    if dry_run:
        print(text, end="")
        say.print(f"[bold]dry run[/]: would write {target}: {len(result.entries)} service(s) on node {node}",
                  highlight=False)
    else:
        say.print(f"[green]wrote[/] {target}: {len(result.entries)} service(s) on node {node}", highlight=False)
    for e in result.entries:
        f = e.fields
        what = f"compose {f['compose_project']}/{f.get('compose_service', f['name'])}" if "compose_project" in f \
            else "container"
        say.print(f"  {f['name']:<24} {what:<28} {f['desired']:<8} ({', '.join(e.containers)})", highlight=False,
                  markup=False)
    if result.skipped:
        say.print(f"skipped {len(result.skipped)} container(s):", highlight=False)
        for sk in result.skipped:
            say.print(f"  {sk.container}: {sk.reason}", highlight=False, soft_wrap=True, markup=False)
    if match and result.filtered_out:
        say.print(f"{result.filtered_out} container(s) without the --label filter's labels were not considered",
                  highlight=False)
    if result.notes:
        say.print("[yellow]check before you rely on it:[/]", highlight=False)
        for n in result.notes:
            say.print(f"  - {n}", highlight=False, soft_wrap=True, markup=False)
    if not dry_run:
        say.print(f"next: `dockwarden inventory validate {root}`, then `dockwarden once --inventory {root}`",
                  highlight=False, markup=False)
