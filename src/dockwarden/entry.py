"""The ``dockwarden`` console script (and ``python -m dockwarden``).

``dockwarden version`` and ``dockwarden --version`` are answered here, without
importing typer or any command module (issue 9: a CLI that answers at once);
everything else goes to the Typer app of :mod:`dockwarden.cli`, built with only
the command being run (:func:`command_of`): typer builds a click command for every
registered command at each call, reading each one's signature (80 ms for ~35
commands on a 2-core machine, a quarter of ``dockwarden status``).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int | None:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``).

    Returns:
        int | None: 0 after printing the version; else the Typer app exits
        the process itself (``SystemExit`` with the command's exit code).
    """
    args = sys.argv[1:] if argv is None else argv
    if args in (["version"], ["--version"]):
        from dockwarden import __version__

        print(__version__)
        return 0
    # dockwarden uses no pydantic plugin; looking for them reads the entry points of
    # every installed distribution when the first model is built (about 50 ms of
    # every command that loads the policy). A value set by the user wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from dockwarden import ssh_transport

    ssh_transport.defer()  # paramiko only for ssh:// engines (0.24 s of every engine command)
    from dockwarden.cli import app

    name = command_of(args)
    if name is None:
        return app(args=args, prog_name="dockwarden")
    from typer.main import get_command_name

    commands, groups = app.registered_commands, app.registered_groups
    keep_commands = [c for c in commands if (c.name or get_command_name(c.callback.__name__)) == name]
    keep_groups = [g for g in groups if g.name == name]
    if not keep_commands and not keep_groups:  # unknown: typer says so, listing every command
        return app(args=args, prog_name="dockwarden")
    app.registered_commands, app.registered_groups = keep_commands, keep_groups
    try:
        return app(args=args, prog_name="dockwarden")
    finally:  # the app is a module global: a caller in the same process gets it whole
        app.registered_commands, app.registered_groups = commands, groups


#: Global options (before the command) that take a value: ``--url URL``, ``--token T``.
_GLOBAL_OPTIONS_WITH_VALUE = frozenset({"--url", "--token"})


def command_of(args: list[str]) -> str | None:
    """The command named on a command line, skipping the global options before it.

    PURE. ``["--url", "local", "status", "--all"]`` -> ``"status"``; None when there
    is no command (``--help``, nothing, ``--url`` without its value).
    """
    i = 0
    while i < len(args):
        a = args[i]
        if a in _GLOBAL_OPTIONS_WITH_VALUE:
            i += 2
        elif a.startswith("-"):
            i += 1
        else:
            return a
    return None
