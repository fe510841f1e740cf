"""``dockwarden doctor [--send] [--json]``: check the set-up and say how to fix it.

The checks are in ``doctor`` (each a small function with its facts as
arguments); this module renders them. Exit code: 0 all ok, 1 warnings, 2
failures, like ``once``. Heavy imports live inside the command body.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from dockwarden.cli_common import InventoryOpt, JsonOpt, NodeOpt, PolicyOpt, StateDirOpt, out, settings_from

_MARK = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


def doctor(
    send: Annotated[bool, typer.Option(
        "--send", help="Also send a test message to every notification channel (like `notify test`).")] = False,
    inventory: InventoryOpt = None, state_dir: StateDirOpt = None, policy: PolicyOpt = None, node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the engine, its socket, the state dir, inventory and policy, notification
    channels, cgroup stats, the clock, other supervisors and Docker restart policies;
    say what is wrong and how to fix it. Exit 0 all ok, 1 warnings, 2 failures."""
    from rich.markup import escape

    from dockwarden.doctor import gather

    s = settings_from(inventory, state_dir, policy, node)
    report = gather(s, send=send)
    if as_json:
        print(json.dumps({"exit_code": report.exit_code,
                          "checks": [{"name": c.name, "status": c.status, "detail": c.detail, "fix": c.fix}
                                     for c in report.checks]}, indent=2))
        raise typer.Exit(report.exit_code)
    for c in report.checks:
        out.print(f"{_MARK[c.status]} [bold]{escape(c.name)}[/]: {escape(c.detail)}", highlight=False, soft_wrap=True)
        if c.fix and c.status != "ok":
            out.print(f"     fix: {escape(c.fix)}", highlight=False, soft_wrap=True)
    counts = {st: sum(1 for c in report.checks if c.status == st) for st in ("ok", "warn", "fail")}
    out.print(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s)", highlight=False)
    raise typer.Exit(report.exit_code)
