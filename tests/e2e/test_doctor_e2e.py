"""`dockwarden doctor` on real set-ups: a healthy one (a private engine, so other
people's daemons on the shared engine are not in the picture) exits 0; a state
dir that is a file or a read-only mount, broken channel URLs and a tracked
container with `restart: always` are each named with their fix, exit non-zero."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IMAGE, RUN_ID, TEST_LABEL, _env, mounted_tmpfs, write_inventory, write_policy
from tests.support.servers import WebhookServer, free_port


def doctor(*args: str, docker_host: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = _env()
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    return subprocess.run([sys.executable, "-m", "dockwarden", "doctor", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def checks(r: subprocess.CompletedProcess) -> dict[str, dict]:
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == r.returncode
    return {c["name"]: c for c in doc["checks"]}


def test_doctor_on_a_healthy_setup_exits_0(tmp_path, private_engine):
    client = private_engine.client()
    c = client.containers.create(IMAGE, ["sleep", "3600"], name="calm", labels={TEST_LABEL: RUN_ID})
    c.start()
    inv = write_inventory(tmp_path / "inv", [{"name": "calm"}])
    old = os.umask(0o077)  # a private state dir, as dockwarden promises it (0700, files 0600)
    try:
        with WebhookServer() as hook:
            pol = write_policy(tmp_path / "p.toml", f"""
[[notify.channel]]
name = "hook"
url = "json://127.0.0.1:{hook.port}/alerts"
""")
            state = tmp_path / "state"
            common = ["--inventory", str(inv), "--policy", str(pol), "--state-dir", str(state)]
            env = {**_env(), "DOCKER_HOST": private_engine.host}
            once = subprocess.run([sys.executable, "-m", "dockwarden", "once", *common], capture_output=True,
                                  text=True, timeout=120, env=env)
            assert once.returncode == 0, once.stdout + once.stderr
            r = doctor(*common, "--json", "--send", docker_host=private_engine.host)
            got = checks(r)
            assert r.returncode == 0, json.dumps(got, indent=1)
            assert {"engine", "socket", "state dir", "inventory", "policy", "channel hook", "send hook", "cgroups",
                    "clock", "other supervisors", "restart policies"} <= set(got)
            assert "API 1.41" in got["engine"]["detail"]
            assert "read 1 of 1" in got["cgroups"]["detail"]
            assert "nothing sent" in got["channel hook"]["detail"]
            assert len(hook.received) == 1 and "test message" in json.dumps(hook.received[0])
            text = doctor(*common, docker_host=private_engine.host)
    finally:
        os.umask(old)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "0 warning(s), 0 failure(s)" in text.stdout


def test_doctor_names_each_problem_and_its_fix(tmp_path, containers):
    containers.run("always", ["sleep", "3600"], restart_policy={"Name": "always"})
    name = containers.name("always")
    inv = write_inventory(tmp_path / "inv", [{"name": "always", "container": name}])
    closed = free_port()
    pol = write_policy(tmp_path / "p.toml", f"""
[[notify.channel]]
name = "garbled"
url = "nonsense://ops:hunter2@example.invalid/x"

[[notify.channel]]
name = "nobody-home"
url = "json://ops:hunter2@127.0.0.1:{closed}/alerts"
""")
    state = tmp_path / "state-is-a-file"
    state.write_text("not a directory\n")
    common = ["--inventory", str(inv), "--policy", str(pol), "--state-dir", str(state)]
    r = doctor(*common, "--json")
    got = checks(r)
    assert r.returncode == 2
    assert got["state dir"]["status"] == "fail" and "not a directory" in got["state dir"]["detail"]
    assert "--state-dir" in got["state dir"]["fix"]
    assert got["channel garbled"]["status"] == "fail" and "apprise" in got["channel garbled"]["detail"]
    assert got["channel nobody-home"]["status"] == "fail"
    assert f"127.0.0.1:{closed}" in got["channel nobody-home"]["detail"]
    rp = got["restart policies"]
    assert rp["status"] == "warn" and f"{name} (service always) has `restart: always`" in rp["detail"]
    assert f"docker update --restart=no {name}" in rp["fix"]
    assert "hunter2" not in r.stdout + r.stderr

    text = doctor(*common)
    assert text.returncode == 2
    out = " ".join(text.stdout.split())
    for needle in ("FAIL state dir", "FAIL channel garbled", "FAIL channel nobody-home", "warn restart policies",
                   f"fix: `docker update --restart=no {name}`", "fix: move the file away"):
        assert needle in out, needle
    assert "hunter2" not in text.stdout + text.stderr


@pytest.fixture
def read_only_dir(tmp_path):
    with mounted_tmpfs(tmp_path / "ro-state", "ro,size=1m") as d:
        yield d


def test_doctor_on_a_read_only_state_dir(tmp_path, read_only_dir: Path):
    inv = write_inventory(tmp_path / "inv", [])
    r = doctor("--inventory", str(inv), "--state-dir", str(read_only_dir), "--json")
    got = checks(r)
    assert r.returncode == 2
    sd = got["state dir"]
    assert sd["status"] == "fail" and "Read-only file system" in sd["detail"] and "read-write" in sd["fix"]
