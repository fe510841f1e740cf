"""10. the daemon survives `dockerd` being stopped and started again, and resumes.

The engine stopped and started here is a second, private `dockerd` in its own
network namespace (design.md: "A second engine"), so the engine the other
tests use is never disturbed.
"""

from __future__ import annotations

import time

import docker

from conftest import FAST_POLICY, IMAGE, RUN_ID, write_inventory, write_policy


def test_daemon_survives_engine_restart(tmp_path, private_engine, daemon_factory, monkeypatch):
    client = docker.DockerClient(base_url=private_engine.host, timeout=30)
    name = f"dwt-{RUN_ID}-survivor"
    c = client.containers.create(IMAGE, ["sleep", "3600"], name=name, network_mode="none",
                                 labels={"dockwarden.test": RUN_ID}, stop_signal="SIGKILL")
    c.start()
    inv = write_inventory(tmp_path / "inv", [{"name": "survivor", "container": name}])
    monkeypatch.setenv("DOCKER_HOST", private_engine.host)
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    time.sleep(1.5)
    private_engine.stop()  # the engine stops every container (no live-restore)
    d.wait_event(lambda e: e["type"] == "engine_lost", timeout=30)
    time.sleep(2)
    assert d.proc is not None and d.proc.poll() is None, "daemon died with the engine"
    n = len(d.events())
    private_engine.start()
    d.wait_event(lambda e: e["type"] == "engine_reconnected", timeout=60, after=n)
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == "survivor", timeout=30, after=n)
    client = docker.DockerClient(base_url=private_engine.host, timeout=30)
    assert client.containers.get(name).status == "running"
    # The engine's shutdown was not taken for an operator stop: any observed stop was taken back.
    intents = [e for e in d.events() if e["type"] == "intent_changed" and e["service"] == "survivor"]
    if intents:
        assert "taken back" in intents[-1]["reason"], intents
    client.containers.get(name).remove(force=True)
