"""The engine restarting under a running daemon (issue 2 check 10, issue 8).

- The daemon survives `dockerd` being stopped and started again, and brings back
  what the engine's shutdown stopped: those stops were the engine's, not the
  operator's (evidence: the engine process restarted; Docker's own
  HasBeenManuallyStopped flag is false for them).
- An operator's `docker stop` made a few seconds before the engine restarts is
  kept: the old code took back every stop of the last 60 s.

The engine stopped and started here is a private `dockerd` in its own network
namespace (design.md: "A second engine"), so the engine the other tests use is
never disturbed.
"""

from __future__ import annotations

import docker

from conftest import FAST_POLICY, IMAGE, RUN_ID, write_inventory, write_policy
from dockwarden.model import utcnow


def _intent(d, service: str) -> str | None:
    """The recorded intent of a service, from `dockwarden status --json`."""
    import json

    r = d.cli("status", "--json")
    assert r.returncode in (0, 1, 2, 3), r.stderr
    doc = json.loads(r.stdout)
    for s in doc["services"]:
        if s["service"] == service:
            return s["intent"]
    raise AssertionError(f"{service} not in status: {doc['services']}")


def test_engine_restart_keeps_operator_stops_and_brings_back_the_rest(tmp_path, private_engine, daemon_factory,
                                                                      monkeypatch):
    client = docker.DockerClient(base_url=private_engine.host, timeout=30)
    names = {s: f"dwt-{RUN_ID}-{s}" for s in ("survivor", "other", "stopped")}
    for n in names.values():
        # SIGTERM-deaf `sleep` as PID 1: the engine's shutdown takes its SIGKILL path
        # for some and a quick exit for others; both must be told from the operator's stop.
        client.containers.run(IMAGE, ["sleep", "3600"], name=n, network_mode="none", detach=True,
                              labels={"dockwarden.test": RUN_ID}, stop_signal="SIGKILL")
    inv = write_inventory(tmp_path / "inv", [{"name": s, "container": n} for s, n in names.items()])
    monkeypatch.setenv("DOCKER_HOST", private_engine.host)
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    # The operator stops one service, seconds before the engine restarts.
    client.containers.get(names["stopped"]).stop(timeout=1)
    d.wait_event(lambda e: e["type"] == "intent_changed" and e["service"] == "stopped"
                 and e["details"].get("intent") == "stopped")
    n = len(d.events())
    private_engine.stop()  # the engine stops every container (no live-restore)
    d.wait_event(lambda e: e["type"] == "engine_lost", timeout=30, after=n)
    assert d.proc is not None and d.proc.poll() is None, "daemon died with the engine"
    m = len(d.events())
    private_engine.start()
    back = d.wait_event(lambda e: e["type"] == "engine_reconnected", timeout=60, after=m)
    assert back["details"]["engine_restarted"] is True, back
    done = d.wait_event(lambda e: e["type"] == "recovery_completed", timeout=60, after=m)
    brought = sorted(b["service"] for b in done["details"]["brought_back"])
    assert brought == ["other", "survivor"], done["details"]
    assert done["details"]["left_stopped"] == ["stopped"], done["details"]
    client = docker.DockerClient(base_url=private_engine.host, timeout=30)
    for s in ("survivor", "other"):
        assert client.containers.get(names[s]).status == "running"
    # The engine's stops were taken back: intent running again for the two.
    taken = {e["service"] for e in d.events()[n:] if e["type"] == "intent_changed"
             and e["details"].get("taken_back")}
    assert taken <= {"survivor", "other"}
    assert _intent(d, "survivor") == "running" and _intent(d, "other") == "running"
    # The operator's stop holds: two full resyncs later it is still stopped, intent stopped.
    d.wait_full_passes(2, after=utcnow())
    assert client.containers.get(names["stopped"]).status == "exited"
    assert _intent(d, "stopped") == "stopped"
    assert not [e for e in d.events()[m:] if e["type"] == "action_started" and e["service"] == "stopped"]


def test_stream_blip_is_not_an_engine_restart(tmp_path, private_engine, daemon_factory, monkeypatch):
    """The daemon's event stream and connection dropped (here: the engine frozen
    with SIGSTOP for a few seconds, so the liveness check fails, then thawed)
    while the engine process stays the same: operator stops are kept."""
    import os
    import signal

    client = docker.DockerClient(base_url=private_engine.host, timeout=30)
    name = f"dwt-{RUN_ID}-blip"
    client.containers.run(IMAGE, ["sleep", "3600"], name=name, network_mode="none", detach=True,
                          labels={"dockwarden.test": RUN_ID})
    inv = write_inventory(tmp_path / "inv", [{"name": "blip", "container": name}])
    monkeypatch.setenv("DOCKER_HOST", private_engine.host)
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    client.containers.get(name).stop(timeout=2)
    d.wait_event(lambda e: e["type"] == "intent_changed" and e["service"] == "blip")
    n = len(d.events())
    pid = private_engine.proc.pid
    os.kill(pid, signal.SIGSTOP)  # frozen: connections hang instead of failing
    try:
        d.wait_event(lambda e: e["type"] == "engine_lost", timeout=30, after=n)
    finally:
        os.kill(pid, signal.SIGCONT)
    back = d.wait_event(lambda e: e["type"] == "engine_reconnected", timeout=30, after=n)
    assert back["details"]["engine_restarted"] is False, back
    # Two full resyncs after the reconnect: still stopped, never started.
    d.wait_full_passes(2, after=utcnow())
    assert client.containers.get(name).status == "exited"
    assert not [e for e in d.events()[n:] if e["service"] == "blip" and e["type"] in ("action_started",
                                                                                     "intent_changed")]
    assert _intent(d, "blip") == "stopped"
