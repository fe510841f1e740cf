"""The ``dockwarden`` console script (and ``python -m dockwarden``).

``dockwarden version`` and ``dockwarden --version`` are answered here, without
importing typer or any command module (issue 9: a CLI that answers at once);
everything else goes to the Typer app of :mod:`dockwarden.cli`.
"""

from __future__ import annotations

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
    from dockwarden import ssh_transport

    ssh_transport.defer()  # paramiko only for ssh:// engines (0.24 s of every engine command)
    from dockwarden.cli import app

    return app(args=args, prog_name="dockwarden")
