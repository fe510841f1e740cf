"""Issue 13 on the real engine: `inventory init` adopts a host that runs a compose
project (docker-compose v1) and plain containers; docker-autoheal's labels are
honoured by a running daemon."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from conftest import FAST_POLICY, IMAGE, RUN_ID, TEST_LABEL, _env, wait_for, write_inventory, write_policy
from dockwarden.inventory import parse_services_file
from dockwarden.model import Intent, WorldState
from dockwarden.observe.docker import ContainerObserver, connect
from dockwarden.reconcile.resolve import find_containers

COMPOSE = """\
version: "2.4"
services:
  db:
    image: {image}
    command: ["sleep", "3600"]
    labels: {labels}
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
  api:
    image: {image}
    command: ["sleep", "3600"]
    labels: {labels}
    depends_on:
      db:
        condition: service_healthy
  web:
    image: {image}
    command: ["sleep", "3600"]
    labels: {labels}
    depends_on: [api]
"""


def dockwarden(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dockwarden", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


@pytest.fixture
def compose_project(tmp_path, docker_client):
    """Three compose services (web -> api -> db) made by Debian's docker-compose (v1),
    labelled with a tag of their own; taken down afterwards."""
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail("docker-compose is not installed (make test installs it)")
    tag = uuid.uuid4().hex[:8]
    project = f"dwtadopt{tag}"
    wd = tmp_path / "shop"
    wd.mkdir()
    labels = {TEST_LABEL: RUN_ID, "dwt.adopt": tag}
    (wd / "docker-compose.yml").write_text(COMPOSE.format(image=IMAGE, labels=yaml.safe_dump(labels, default_flow_style=True).strip()))
    try:
        subprocess.run([compose, "-p", project, "up", "-d"], cwd=wd, check=True, capture_output=True, timeout=180)
        yield project, wd, tag
    finally:
        subprocess.run([compose, "-p", project, "down", "-t", "0"], cwd=wd, capture_output=True, timeout=180)


def test_init_adopts_compose_and_plain_containers_validates_and_once_is_nominal(tmp_path, compose_project,
                                                                                containers, docker_client):
    project, wd, tag = compose_project
    tagged = {"dwt.adopt": tag}
    containers.run("solo", ["sleep", "3600"], labels=tagged)
    containers.run("idle", ["sleep", "3600"], labels=tagged).stop(timeout=0)
    containers.run("job", ["sleep", "3600"], labels=tagged, auto_remove=True)
    inv = tmp_path / "inv"

    r = dockwarden("inventory", "init", "--out", str(inv), "--node", "adopted", "--label", f"dwt.adopt={tag}")
    assert r.returncode == 0, r.stdout + r.stderr
    report = " ".join(r.stdout.split())
    # docker-compose v1 writes no dependency label: the report says depends_on was left out, and why.
    assert f"compose project {project}: no com.docker.compose.depends_on label" in report
    assert "docker-compose v1 does not" in report and "add each service's dependencies by hand" in report
    assert f"{containers.name('job')}: a one-off job (docker run --rm)" in report

    path = inv / "hosts" / "adopted" / "services.yaml"
    text = path.read_text()
    assert "the only source of compose paths it trusts" in " ".join(line.lstrip("# ") for line in text.splitlines())
    specs = {s.name: s for s in parse_services_file(path, "adopted")}
    assert set(specs) == {"db", "api", "web", containers.name("solo"), containers.name("idle")}
    for name in ("db", "api", "web"):
        s = specs[name]
        assert (s.compose_project, s.compose_service, s.desired) == (project, name, Intent.RUNNING)
        assert Path(s.compose_file) == wd / "docker-compose.yml" and Path(s.compose_file).is_file()
        assert s.depends_on == ()
    assert specs[containers.name("solo")].desired is Intent.RUNNING
    assert specs[containers.name("idle")].desired is Intent.STOPPED
    # The file matches what runs: each service resolves to its container, running as desired.
    client = connect()
    world = WorldState(node="adopted", observed_at=datetime.now(timezone.utc), host=None,
                       containers=tuple(ContainerObserver(client, stats="none").observe(with_stats=False)))
    for s in specs.values():
        found = find_containers(s, world)
        assert len(found) == 1, s.name
        assert found[0].running is (s.desired is Intent.RUNNING), (s.name, found[0].state)

    v = dockwarden("inventory", "validate", str(inv))
    assert v.returncode == 0, v.stdout + v.stderr
    once = dockwarden("once", "--inventory", str(inv), "--state-dir", str(tmp_path / "state"))
    assert once.returncode == 0, once.stdout + once.stderr
    assert "NOMINAL" in once.stdout

    # A second init never overwrites; it says how to.
    before = path.read_text()
    again = dockwarden("inventory", "init", "--out", str(inv), "--node", "adopted", "--label", f"dwt.adopt={tag}")
    assert again.returncode != 0
    assert "--force" in again.stderr and str(path) in " ".join(again.stderr.split())
    assert path.read_text() == before
    # --dry-run prints the YAML and writes nothing; --force replaces, keeping the old file.
    dry = dockwarden("inventory", "init", "--out", str(inv), "--node", "adopted", "--label", f"dwt.adopt={tag}",
                     "--dry-run")
    assert dry.returncode == 0 and yaml.safe_load(dry.stdout)["services"] and path.read_text() == before
    forced = dockwarden("inventory", "init", "--out", str(inv), "--node", "adopted", "--label",
                        f"dwt.adopt={tag}", "--running", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (path.parent / "services.yaml.bak").read_text() == before
    assert containers.name("idle") not in {s.name for s in parse_services_file(path, "adopted")}
    assert f"{containers.name('idle')}: not running" in " ".join(forced.stdout.split())


HEALTH = {"test": ["CMD", "test", "-f", "/tmp/ok"], "interval": 1_000_000_000, "timeout": 1_000_000_000,
          "retries": 1}


def _kill_signals(client, cid: str, since: float) -> list[tuple[int, str]]:
    """(timeNano, signal) of the engine's `kill` events for one container since ``since``."""
    evs = client.api.events(since=int(since), until=int(time.time()) + 1, decode=True,
                            filters={"container": [cid], "event": ["kill"]})
    return [(e["timeNano"], e["Actor"]["Attributes"].get("signal")) for e in evs]


def test_autoheal_labelled_container_restarted_when_unhealthy_crash_healed_docker_stop_respected(
        tmp_path, containers, daemon_factory, docker_client):
    # PID 1 (sh) ignores SIGTERM, so a restart lasts until the SIGKILL: the label's 3 s, not the policy's 1 s.
    c = containers.run("healme", ["sh", "-c", "touch /tmp/ok; while true; do sleep 1; done"], healthcheck=HEALTH,
                       labels={"autoheal": "true", "autoheal.stop.timeout": "3"})
    name = containers.name("healme")
    inv = write_inventory(tmp_path / "inv", [])  # nothing in the inventory: the label alone tracks it
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    wait_for(lambda: containers.state("healme").get("Health", {}).get("Status") == "healthy", 20, what="healthy")

    t0 = time.time()
    started_at = containers.state("healme")["StartedAt"]
    c.exec_run(["rm", "/tmp/ok"])
    e = d.wait_event(lambda e: e["type"] == "action_started" and e["service"] == name, timeout=30)
    assert (e["action"], e["drift"]) == ("restart", "unhealthy")
    d.wait_event(lambda e: e["type"] == "action_succeeded" and e["service"] == name, timeout=30)
    wait_for(lambda: containers.state("healme")["StartedAt"] != started_at, 15, what="restarted")
    kills = _kill_signals(docker_client, c.id, t0 - 1)
    term = [t for t, sig in kills if sig == "15"]
    kill = [t for t, sig in kills if sig == "9"]
    assert term and kill, kills
    assert (kill[0] - term[0]) / 1e9 >= 2.5, "the restart did not wait autoheal.stop.timeout (3 s)"
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == name, timeout=30)

    # A crash (a die that no stop or kill explains) is healed too: a tracked service's intent is running.
    n = len(d.events())
    containers.kill_process("healme")
    e = d.wait_event(lambda e: e["type"] == "action_started" and e["service"] == name, timeout=30, after=n)
    assert (e["action"], e["drift"]) == ("start", "stopped")
    wait_for(lambda: containers.state("healme")["Running"], 15, what="running again")

    # An operator's `docker stop` is respected: recorded as intent, never undone.
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == name, timeout=30, after=n)
    n = len(d.events())
    c.stop(timeout=1)
    d.wait_event(lambda e: e["type"] == "intent_changed" and e["service"] == name, timeout=15, after=n)
    t_stop = time.time()
    d.wait_full_passes(2, after=datetime.fromtimestamp(t_stop, timezone.utc))  # full passes after the stop
    assert not containers.state("healme")["Running"]
    assert not [e for e in d.events()[n:] if e["service"] == name and e["type"] == "action_started"]
