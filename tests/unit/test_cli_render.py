"""Console rendering of events: any event text prints, brackets included."""

import io

from rich.console import Console

from dockwarden import cli_common


def test_echo_event_prints_any_type_and_bracketed_text(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(cli_common, "out", Console(file=buf, width=200, color_system=None))
    cli_common.echo_event({"ts": "2026-11-21T10:00:00.000Z", "type": "pool_spawned", "service": None,
                           "reason": "see [[notify.channel]] and [/] and [bold]x"})
    cli_common.echo_event({"ts": "2026-11-21T10:00:01.000Z", "type": "drift_detected", "service": "web",
                           "priority": "P2", "action": None, "reason": "web exited"})
    text = buf.getvalue()
    assert "pool_spawned" in text and "see [[notify.channel]] and [/] and [bold]x" in text
    assert "drift_detected" in text and "web [P2] web exited" in text


def test_option_help_keeps_its_env_hints():
    """Rich reads option help as markup: an unescaped "[env ...]" vanishes."""
    from typer.testing import CliRunner

    from dockwarden.cli import app

    runner = CliRunner()
    for cmd in (["status", "--help"], ["incidents", "--help"], ["storage", "--help"], ["pool", "list", "--help"]):
        r = runner.invoke(app, cmd, env={"COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        assert "DOCKWARDEN_STATE_DIR" in r.output, (cmd, r.output)
