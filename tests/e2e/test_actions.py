"""Actions beyond start/restart, and the operator's commands, against a real engine."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
import time

import pytest

from conftest import FAST_POLICY, IMAGE, RUN_ID, TEST_LABEL, wait_for, write_inventory, write_policy


def test_removed_container_is_recreated_from_its_recorded_spec(tmp_path, containers, daemon_factory, docker_client):
    containers.run("cache", ["sleep", "3600"], labels={"role": "cache"}, environment=["MODE=fast"],
                   healthcheck={"test": ["CMD", "true"], "interval": 1_000_000_000})
    name = containers.name("cache")
    inv = write_inventory(tmp_path / "inv", [{"name": "cache", "container": name}])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    d.wait_ready()  # the first pass records the spec
    old_id = containers.get("cache").id
    docker_client.api.remove_container(name, force=True)  # `docker rm -f`
    e = d.wait_event(lambda e: e["type"] == "action_started" and e["service"] == "cache", timeout=20)
    assert e["action"] == "recreate"
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == "cache", timeout=30)
    new = docker_client.containers.get(name)
    assert new.id != old_id and new.status == "running"
    assert new.labels["role"] == "cache" and "MODE=fast" in new.attrs["Config"]["Env"]
    assert new.attrs["Config"]["Cmd"] == ["sleep", "3600"]
    assert new.attrs["Config"]["Healthcheck"]["Test"] == ["CMD", "true"]
    # The removal was not kept as an operator stop.
    taken = [x for x in d.events() if x["type"] == "intent_changed" and x["service"] == "cache"]
    assert taken and "taken back" in taken[-1]["reason"]


@pytest.fixture
def compose_project(tmp_path, docker_client):
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail("docker-compose is not installed (make test installs it)")
    project = f"dwt{RUN_ID}c"
    wd = tmp_path / "compose"
    wd.mkdir()
    (wd / "docker-compose.yml").write_text(
        "version: '2.4'\nservices:\n  sleeper:\n"
        f"    image: {IMAGE}\n    command: [sleep, '3600']\n    network_mode: none\n"
        f"    labels:\n      {TEST_LABEL}: '{RUN_ID}'\n"
    )
    subprocess.run([compose, "-p", project, "up", "-d"], cwd=wd, check=True, capture_output=True)
    yield project, wd
    subprocess.run([compose, "-p", project, "down", "-t", "1"], cwd=wd, capture_output=True)


def test_missing_compose_service_is_brought_back_with_compose_up(tmp_path, compose_project, daemon_factory,
                                                                 docker_client):
    project, wd = compose_project
    flt = {"label": [f"com.docker.compose.project={project}", "com.docker.compose.service=sleeper"]}
    (c,) = docker_client.containers.list(filters=flt)
    inv = write_inventory(tmp_path / "inv", [{"name": "sleeper", "compose_project": project,
                                              "compose_file": str(wd / "docker-compose.yml")}])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    d.wait_event(lambda e: e["type"] == "daemon_ready")
    c.remove(force=True)
    e = d.wait_event(lambda e: e["type"] == "action_started" and e["service"] == "sleeper", timeout=20)
    assert e["action"] == "compose_up"
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == "sleeper", timeout=60)
    (c2,) = docker_client.containers.list(filters=flt)
    assert c2.id != c.id and c2.status == "running"


def test_dockwarden_stop_pause_and_resume(tmp_path, containers, daemon_factory):
    containers.run("svc", ["sleep", "3600"], stop_signal="SIGKILL")
    containers.run("other", ["sleep", "3600"])
    inv = write_inventory(tmp_path / "inv", [
        {"name": "svc", "container": containers.name("svc")},
        {"name": "other", "container": containers.name("other")},
    ])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    r = d.cli("stop", "svc")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not containers.state("svc")["Running"]
    time.sleep(3)
    assert not containers.state("svc")["Running"], "dockwarden restarted what the operator stopped"
    assert d.cli("stop", "nope").returncode == 2
    # pause: a crash is recorded but not acted on
    assert d.cli("pause", "other").returncode == 0
    n = len(d.events())
    containers.kill_process("other")
    d.wait_event(lambda e: e["type"] == "drift_detected" and e["service"] == "other", timeout=15, after=n)
    time.sleep(3)
    assert not containers.state("other")["Running"]
    assert not [e for e in d.events()[n:] if e["type"] == "action_started"]
    assert d.cli("resume", "other").returncode == 0
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == "other", timeout=20, after=n)
    assert containers.state("other")["Running"]


def test_oom_killed_is_started_with_memory_advice(tmp_path, containers, daemon_factory):
    # Grows a shell variable until the 16 MiB limit kills it, once; the restart then sleeps.
    containers.run("hog", ["sh", "-c", "if [ ! -f /tmp/once ]; then touch /tmp/once; x=a; "
                           "while :; do x=$x$x; done; fi; exec sleep 3600"],
                   mem_limit="16m", memswap_limit="16m")
    wait_for(lambda: containers.state("hog")["OOMKilled"], 30, what="OOM kill")
    inv = write_inventory(tmp_path / "inv", [{"name": "hog", "container": containers.name("hog")}])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    req = d.wait_event(lambda e: e["type"] == "reconcile_required" and e["service"] == "hog", timeout=20)
    assert req["action"] == "start" and "OOM" in req["reason"]
    assert any("memory limit" in a for a in req["details"]["advice"]), req["details"]
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == "hog", timeout=20)


def test_start_failing_on_configuration_is_blocked_without_a_retry_loop(tmp_path, containers, daemon_factory):
    containers.run("typo", ["/no/such/binary"], start=False)
    inv = write_inventory(tmp_path / "inv", [{"name": "typo", "container": containers.name("typo")}])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    blocked = d.wait_event(lambda e: e["type"] == "reconcile_blocked" and e["service"] == "typo", timeout=20)
    assert "no such file" in blocked["reason"].lower() or "not found" in blocked["reason"].lower(), blocked
    from dockwarden.model import parse_time

    d.wait_full_passes(3, after=parse_time(blocked["ts"]))  # no retry loop in the passes after the block
    starts = [e for e in d.events() if e["type"] == "action_started" and e["service"] == "typo"]
    assert len(starts) == 1, starts  # exactly the one attempt that revealed the error
    st = d.cli("status", "--json", check=True)
    import json

    svc = {s["service"]: s for s in json.loads(st.stdout)["services"]}["typo"]
    assert svc["guard"]["circuit"] == "open"


class _LineReader:
    """Lines of a subprocess pipe, read by a thread, so a test waits for the next
    one with a deadline (a bare ``readline()`` blocks forever on a silent pipe)."""

    def __init__(self, pipe):
        self._q: queue.Queue[str | None] = queue.Queue()
        self._t = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._t.start()

    def _read(self, pipe) -> None:
        for line in pipe:
            self._q.put(line)
        self._q.put(None)  # end of the stream

    def next(self, timeout: float) -> str:
        try:
            line = self._q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            raise AssertionError(f"no line within {timeout:.1f} s") from None
        if line is None:
            raise AssertionError("the stream ended")
        return line


def test_events_follow_streams_new_events_as_json(tmp_path, containers, daemon_factory):
    import json
    import subprocess
    import sys

    from conftest import _env

    containers.run("tail", ["sleep", "3600"])
    inv = write_inventory(tmp_path / "inv", [{"name": "tail", "container": containers.name("tail")}])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    follower = subprocess.Popen(
        [sys.executable, "-m", "dockwarden", "events", "--follow", "--json", "--since", "1m",
         "--state-dir", str(d.state_dir)], stdout=subprocess.PIPE, text=True, env=_env())
    lines = _LineReader(follower.stdout)
    try:
        first = json.loads(lines.next(timeout=20))
        assert first["type"] == "daemon_started"  # --since 1m includes the start
        d.wait_ready()
        containers.kill_process("tail")
        seen = []
        deadline = time.monotonic() + 20
        while True:
            ev = json.loads(lines.next(timeout=deadline - time.monotonic()))
            seen.append(ev["type"])
            if ev["type"] == "recovered" and ev["service"] == "tail":
                break
        assert "recovered" in seen and "action_started" in seen, seen
        assert {"ts", "type", "node", "service", "container", "drift", "priority", "action", "reason",
                "details"} <= set(ev)
    finally:
        follower.kill()
        follower.wait()
    r = d.cli("events", "--since", "yesterday-ish")
    assert r.returncode == 2 and "--since" in r.stderr
