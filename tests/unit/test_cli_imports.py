"""A CLI that answers at once (issue 9): ``version`` imports no typer, and the
command modules import nothing heavy at the top (each command imports what it
needs in its body). Each check runs a fresh interpreter: ``sys.modules`` of
the test process already holds everything."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import dockwarden

SRC = str(Path(dockwarden.__file__).resolve().parent.parent)
HEAVY = ("docker", "apprise", "pydantic", "fastapi", "uvicorn", "paramiko", "requests", "psutil", "yaml",
         "prometheus_client", "sqlite3")
LIST_HEAVY = f"import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("DOCKWARDEN_URL", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=60)


def test_importing_the_cli_imports_nothing_heavy():
    r = _python("-c", "import dockwarden.cli; " + LIST_HEAVY)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"heavy modules imported with dockwarden.cli: {r.stdout}"


def _after_main(argvs: list[list[str]]) -> str:
    """Python code running ``entry.main`` on each argv (output discarded), then
    printing the heavy modules imported and whether ``dockwarden.config`` was."""
    return ("import contextlib, io\n"
            "from dockwarden.entry import main\n"
            f"for argv in {argvs!r}:\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "        main(argv)\n" + LIST_HEAVY + "; print('dockwarden.config' in sys.modules)")


def test_help_imports_nothing_heavy():
    """``--help`` builds every command of the app and prints the help: no heavy module."""
    r = _python("-c", _after_main([["--help"]]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[]", "False"], f"imported by --help: {r.stdout}"


def test_a_commands_help_imports_nothing_heavy_of_ours():
    """A command's ``--help`` runs the app's callback too. Typer (0.2x) itself imports
    pydantic to coerce the values of an invoked command, so pydantic is allowed
    here; dockwarden's own pydantic models (``dockwarden.config``) are not."""
    r = _python("-c", _after_main([["status", "--help"], ["pool", "list", "--help"], ["run", "--help"],
                                    ["storage", "--help"], ["incidents", "--help"], ["pool", "--help"],
                                    ["notify", "test", "--help"]]))
    assert r.returncode == 0, r.stderr
    heavy, config = r.stdout.split("\n")[:2]
    assert [m for m in ast.literal_eval(heavy) if m.split(".")[0] != "pydantic"] == [], heavy
    assert config == "False"


def _imported(importtime_stderr: str) -> set[str]:
    """Module names from ``-X importtime`` output (``import time: self | cumulative | name``)."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime_stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_version_answers_without_typer():
    for flag in ("version", "--version"):
        r = _python("-X", "importtime", "-m", "dockwarden", flag)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"{dockwarden.__version__}\n"
        mods = _imported(r.stderr)
        assert "dockwarden.entry" in mods  # the output is what we think it is
        assert not {m for m in mods if m.split(".")[0] in ("typer", "click", "rich")}, flag
        assert "dockwarden.cli" not in mods, flag


def test_command_of_skips_the_global_options():
    from dockwarden.entry import command_of

    assert command_of(["status", "--all"]) == "status"
    assert command_of(["--url", "local", "--token", "t", "drift"]) == "drift"
    assert command_of(["--url=http://x", "events"]) == "events"
    assert command_of(["--help"]) is None
    assert command_of([]) is None
    assert command_of(["--url"]) is None


def test_main_builds_only_the_command_run_and_leaves_the_app_whole(capsys):
    """entry.main hands typer only the command being run (typer builds every
    registered command at each call); the app is whole again afterwards, and a
    group (``pool``) or an unknown command still works as typer says."""
    import pytest

    from dockwarden.cli import app
    from dockwarden.entry import main

    before = (list(app.registered_commands), list(app.registered_groups))
    with pytest.raises(SystemExit) as e:
        main(["status", "--help"])
    assert e.value.code == 0
    assert "Usage: dockwarden status" in capsys.readouterr().out
    assert (app.registered_commands, app.registered_groups) == before
    with pytest.raises(SystemExit) as e:
        main(["pool", "--help"])
    assert e.value.code == 0 and "ensure-min" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2
    assert "No such command" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    help_text = capsys.readouterr().out
    assert e.value.code == 0 and "status" in help_text and "pool" in help_text and "drift" in help_text
    assert (app.registered_commands, app.registered_groups) == before
