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


def _status_doc(n: int, broken: dict[str, dict]) -> dict:
    services = []
    for i in range(n):
        name = f"agent-worker-with-a-rather-long-name-{i:04d}"
        sv = {"service": name, "container": name + "-container", "state": "running", "health": None,
              "intent": "running", "intent_source": "label", "remediation": "auto", "guard": None,
              "cpu_percent": 0.5, "memory_bytes": 1 << 20, "source": "label"}
        sv.update(broken.get(name, {}))
        services.append(sv)
    return {"summary": "degraded", "node": "n", "observed_at": "2026-12-01T10:00:00.000Z", "daemon_running": True,
            "source": "daemon", "engine_ok": True, "engine_error": None, "host": None, "services": services,
            "untracked": [{"container": "job-1", "state": "exited", "health": None, "exit_code": 0}],
            "findings": [], "recommendations": [], "label_problems": []}


def test_status_at_scale_shows_counts_and_only_what_needs_attention(monkeypatch, capsys):
    """1 000 services, two in trouble: counts, then just those two, whole names when piped."""
    from dockwarden import cli_status

    buf = io.StringIO()
    monkeypatch.setattr(cli_status, "out", Console(file=buf, width=80, color_system=None))
    down = "agent-worker-with-a-rather-long-name-0007"
    sick = "agent-worker-with-a-rather-long-name-0500"
    doc = _status_doc(1000, {down: {"state": "exited"}, sick: {"health": "unhealthy"}})
    cli_status._render_status(doc)
    piped = capsys.readouterr().out  # stdout is not a terminal here: plain columns
    head = buf.getvalue()
    assert "services: 1000" in head and "998 running" in head and "1 exited" in head and "1 unhealthy" in head
    lines = [ln for ln in piped.splitlines() if ln.startswith("agent-worker")]
    assert [ln.split()[0] for ln in lines] == [down, sick]  # whole names, only the two
    cli_status._render_status(doc, show_all=True)
    assert len([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("agent-worker")]) == 1000


def test_errors_print_brackets_as_written(monkeypatch):
    """`fail` once read its message as Rich markup: "no [[notify.channel]] in the
    policy" lost its table name and "services[0].desired" its index."""
    import pytest
    import typer

    buf = io.StringIO()
    monkeypatch.setattr(cli_common, "err", Console(file=buf, width=200, color_system=None))
    with pytest.raises(typer.Exit) as exc:
        cli_common.fail("no [[notify.channel]] in the policy; see services[0].desired and [/]", 2)
    assert exc.value.exit_code == 2
    assert buf.getvalue().strip() == "error: no [[notify.channel]] in the policy; see services[0].desired and [/]"
