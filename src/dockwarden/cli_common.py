"""What every command module shares: the common options (``--inventory``,
``--state-dir``, ``--policy``, ``--node``, ``--json``, ``--mode``), the consoles,
error exits and small renderers."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.text import Text

from dockwarden.settings import Settings
from dockwarden.model import Mode, parse_time, utcnow

out = Console()
err = Console(stderr=True)

# Option help is Rich markup: a literal "[" is written "\\[".
InventoryOpt = Annotated[Optional[Path], typer.Option("--inventory", "-i", help="Inventory dir or services.yaml \\[env DOCKWARDEN_INVENTORY].")]
StateDirOpt = Annotated[Optional[Path], typer.Option("--state-dir", "-s", help="State dir \\[env DOCKWARDEN_STATE_DIR; /var/lib/dockwarden as root, else ~/.local/state/dockwarden].")]
PolicyOpt = Annotated[Optional[Path], typer.Option("--policy", "-p", help="Policy TOML \\[env DOCKWARDEN_POLICY; built-in defaults].")]
NodeOpt = Annotated[Optional[str], typer.Option("--node", help="Which hosts/<node> of the inventory \\[env DOCKWARDEN_NODE].")]
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


def settings_from(inventory, state_dir, policy, node) -> Settings:
    return Settings.resolve(state_dir=state_dir, inventory=inventory, policy=policy, node=node)


def fail(msg: str, code: int = 2) -> None:
    """Print ``error: <msg>`` on stderr and exit with ``code``. ``msg`` is plain
    text, never Rich markup: error messages quote paths, field names such as
    ``services[0].desired`` and policy tables such as ``[[notify.channel]]``."""
    err.print(Text.assemble(("error:", "bold red"), " ", msg), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def echo_event(ev_dict: dict[str, Any], *, show_node: bool = False) -> None:
    """Print one event as a readable console line. Event text is never read as
    Rich markup (a reason may hold brackets: ``[[notify.channel]]``, ``[P2]``)."""
    ts = (ev_dict.get("ts") or "")[11:23]
    t = ev_dict.get("type", "") or ""
    extra = [x for x in (ev_dict.get("priority"), ev_dict.get("action")) if x]
    line = Text()
    line.append(ts, style="dim")
    line.append(" ")
    line.append(f"{t:<22}", style=EVENT_STYLES.get(t) or "")
    line.append(" ")
    if show_node and ev_dict.get("node"):
        line.append(f"{ev_dict['node']}/", style="dim")
    line.append(ev_dict.get("service") or "", style="bold")
    if extra:
        line.append(f" [{' '.join(extra)}]")
    line.append(f" {ev_dict.get('reason', '') or ''}")
    out.print(line, highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- run / once


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    f = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if f < 1024 or unit == "TiB":
            return f"{f:.0f} {unit}" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1024
    return str(n)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])\Z")


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
