"""10. the daemon survives `dockerd` being stopped and started again, and resumes.

The engine stopped and started here is a second, private `dockerd` in its own
network namespace (design.md: "A second engine"), so the engine the other
tests use is never disturbed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import docker
import pytest

from conftest import FAST_POLICY, IMAGE, RUN_ID, wait_for, write_inventory, write_policy


class PrivateEngine:
    def __init__(self, name: str):
        self.name = name
        self.run_dir = Path(f"/run/{name}")
        self.data_root = Path(f"/var/lib/{name}")
        self.sock = self.run_dir / "docker.sock"
        self.host = f"unix://{self.sock}"
        self.proc: subprocess.Popen | None = None
        self.log = Path(f"/tmp/{name}.log")

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.name}", "dockerd", "-H", self.host,
             "--data-root", str(self.data_root), "--exec-root", str(self.run_dir / "exec"),
             "--pidfile", str(self.run_dir / "docker.pid"), "--bridge", "none", "--iptables=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(lambda: _pings(self.host), 60, 0.3, what=f"{self.name} dockerd")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _pings(host: str) -> bool:
    try:
        return bool(docker.DockerClient(base_url=host, timeout=5).ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


@pytest.fixture
def private_engine(docker_client):
    if os.geteuid() != 0 or not shutil.which("nsenter") or not shutil.which("ip"):
        pytest.fail("this test needs root, nsenter and ip (make test installs them)")
    name = f"dwt-{RUN_ID}-eng"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    eng = PrivateEngine(name)
    try:
        eng.start()
        # No registry: copy the test image over.
        save = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", eng.host, "load"], stdin=save.stdout, check=True, capture_output=True)
        save.wait()
        yield eng
    finally:
        eng.stop()
        subprocess.run(["ip", "netns", "delete", name], check=False)
        shutil.rmtree(eng.data_root, ignore_errors=True)
        shutil.rmtree(eng.run_dir, ignore_errors=True)


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
