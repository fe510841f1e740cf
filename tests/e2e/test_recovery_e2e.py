"""Issue 4, reboot simulation: services without restart policies, `dockerd`
stopped (every container exits) and started again, then `dockwarden run`:
intent-running services come back in dependency order, the intent-stopped one
does not, and one recovery notification lists both.

Runs on a private engine (tests/support/engine.py) so the shared one is not
disturbed.
"""

from __future__ import annotations

import time


from conftest import FAST_POLICY, IMAGE, RUN_ID, wait_for, write_inventory, write_policy
from dockwarden.model import parse_time
from tests.support.servers import WebhookServer


def test_engine_restart_recovers_in_dependency_order_and_reports_once(tmp_path, private_engine, daemon_factory,
                                                                       monkeypatch):
    engine = private_engine
    client = engine.client()
    health = {"test": ["CMD-SHELL", "test -f /tmp/ready"], "interval": 500_000_000, "timeout": 1_000_000_000,
              "retries": 2, "start_period": 10_000_000_000}
    names = {s: f"dwt-{RUN_ID}-{s}" for s in ("db", "api", "web", "batch")}
    common = dict(network_mode="none", labels={"dockwarden.test": RUN_ID}, stop_signal="SIGKILL")
    client.containers.run(IMAGE, ["sh", "-c", "rm -f /tmp/ready; sleep 1; touch /tmp/ready; exec sleep 3600"],
                          name=names["db"], healthcheck=health, detach=True, **common)
    for s in ("api", "web", "batch"):
        client.containers.run(IMAGE, ["sleep", "3600"], name=names[s], detach=True, **common)
    inv = write_inventory(tmp_path / "inv", [
        {"name": "web", "container": names["web"], "depends_on": ["api"]},
        {"name": "api", "container": names["api"], "depends_on": ["db"]},
        {"name": "db", "container": names["db"]},
        {"name": "batch", "container": names["batch"]},
    ])
    monkeypatch.setenv("DOCKER_HOST", engine.host)
    with WebhookServer() as hook:
        pol = write_policy(tmp_path / "p.toml", FAST_POLICY
                           + "[spikes]\nhost_cpu_percent = 100\nhost_memory_percent = 100\n"
                           + f'[[notify.channel]]\nname = "hook"\nurl = "json://127.0.0.1:{hook.port}/x"\n'
                           + 'events = ["recovery_completed"]\n')
        d = daemon_factory(inv, pol)
        d.start(resync=1)  # a first run records the engine's start time
        wait_for(lambda: client.containers.get(names["db"]).attrs["State"].get("Health", {}).get("Status")
                 == "healthy", 30, what="db healthy")
        assert d.cli("stop", "batch").returncode == 0  # the operator stops one on purpose
        time.sleep(1)
        assert d.stop() == 0
        engine.stop()  # the "reboot": every container exits, no restart policies
        engine.start()
        client = engine.client()
        assert all(not client.containers.get(n).attrs["State"]["Running"] for n in names.values())
        n = len(d.events())
        d.start(resync=1)
        done = d.wait_event(lambda e: e["type"] == "recovery_completed", timeout=90, after=n)
        assert done["details"]["cause"] == "engine_restart"
        back = [b["service"] for b in done["details"]["brought_back"]]
        assert sorted(back) == ["api", "db", "web"] and done["details"]["failed"] == []
        assert done["details"]["left_stopped"] == ["batch"]
        # Dependency order: each service started only after its dependency was up.
        starts = {e["service"]: parse_time(e["ts"]) for e in d.events()[n:] if e["type"] == "action_started"}
        assert starts["db"] <= starts["api"] <= starts["web"], starts
        assert "batch" not in starts
        assert not client.containers.get(names["batch"]).attrs["State"]["Running"]
        assert all(client.containers.get(names[s]).attrs["State"]["Running"] for s in ("db", "api", "web"))
        wait_for(lambda: len(hook.received) >= 1, 15, what="recovery notification")
        time.sleep(2)
        assert len(hook.received) == 1, hook.received
        msg = hook.received[0]["message"]
        assert "Brought back:" in msg and "db" in msg and "Left stopped on purpose: batch" in msg
