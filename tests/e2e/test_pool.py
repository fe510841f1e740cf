"""The container pool against the real engine (issue 5's check list).

Each test has its own state dir and pool prefix; every container it creates is
labelled ``dockwarden.test=<run id>`` (through ``[pool].labels``) and removed
at teardown by its ``dockwarden.pool=<prefix>`` label, even when the test fails.
Commands run as real ``python -m dockwarden pool ...`` processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import IMAGE, RUN_ID, TEST_LABEL, _env, wait_for, write_inventory
from dockwarden.config import load_policy
from dockwarden.pool.manager import Pool


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # strings, ints, floats, bools: TOML-compatible


class PoolEnv:
    """One test's pool: a state dir, a policy with a [pool] table, the CLI."""

    def __init__(self, tmp: Path, client):
        self.tmp = tmp
        self.client = client
        self.prefix = f"dwp-{RUN_ID}-{uuid.uuid4().hex[:6]}"
        self.state_dir = tmp / "state"
        self.policy = tmp / "policy.toml"
        self.env = _env()
        self.write_policy()

    def write_policy(self, **pool: Any) -> None:
        table = {"image": IMAGE, "command": ["sleep", "3600"], "prefix": self.prefix,
                 "labels": {TEST_LABEL: RUN_ID}, **pool}
        self.policy.write_text("[pool]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in table.items()))

    def argv(self, cmd: str, *args: str, tail: list[str] | None = None) -> list[str]:
        return [sys.executable, "-m", "dockwarden", "pool", cmd, "--state-dir", str(self.state_dir),
                "--policy", str(self.policy), "--node", "testnode", *args, *(["--", *tail] if tail else [])]

    def cli(self, cmd: str, *args: str, tail: list[str] | None = None, ok: bool | None = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        r = subprocess.run(self.argv(cmd, *args, tail=tail), capture_output=True, text=True, timeout=timeout,
                           env=self.env)
        if ok is True and r.returncode != 0:
            raise AssertionError(f"pool {cmd} {args} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def json(self, cmd: str, *args: str, **kw: Any) -> Any:
        return json.loads(self.cli(cmd, *args, "--json", **kw).stdout)

    def names(self) -> list[str]:
        return sorted(c.name for c in self.client.containers.list(all=True, filters={"label": f"dockwarden.pool={self.prefix}"}))

    def running(self) -> list[str]:
        return sorted(c.name for c in self.client.containers.list(filters={"label": f"dockwarden.pool={self.prefix}"}))

    def events(self, type_: str | None = None) -> list[dict]:
        p = self.state_dir / "events.jsonl"
        evs = [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []
        return [e for e in evs if type_ is None or e["type"] == type_]

    def pool(self) -> Pool:
        return Pool(self.state_dir, load_policy(self.policy).pool, node="testnode")

    def name(self, n: int) -> str:
        return f"{self.prefix}-{n}"

    def cleanup(self) -> None:
        for c in self.client.containers.list(all=True, filters={"label": f"dockwarden.pool={self.prefix}"}):
            c.remove(force=True)


@pytest.fixture
def pool_env(tmp_path, docker_client):
    env = PoolEnv(tmp_path, docker_client)
    yield env
    env.cleanup()


def test_spawn_up_to_max_then_a_clear_refusal(pool_env: PoolEnv) -> None:
    pool_env.write_policy(max=3)
    names = [pool_env.json("spawn")["name"] for _ in range(3)]
    assert names == [pool_env.name(i) for i in (1, 2, 3)]
    assert pool_env.running() == names
    c = pool_env.client.containers.get(names[0])
    assert c.labels["dockwarden.pool"] == pool_env.prefix and c.labels["dockwarden.managed"] == "true"
    assert c.labels[TEST_LABEL] == RUN_ID and "dockwarden.enable" not in c.labels
    r = pool_env.cli("spawn", ok=False)
    assert r.returncode == 1
    assert "pool is full: 3 of max 3 containers" in r.stderr
    assert pool_env.names() == names and pool_env.json("status")["live"] == 3
    # A flag of the same name overrides the policy: --max 4 allows one more.
    assert pool_env.json("spawn", "--max", "4")["name"] == pool_env.name(4)
    assert [e["container"] for e in pool_env.events("pool_spawned")] == [*names, pool_env.name(4)]


def test_round_robin_over_three_and_a_busy_container_is_never_selected(pool_env: PoolEnv) -> None:
    for _ in range(3):
        pool_env.cli("spawn")
    order = []
    for i in range(6):
        sel = pool_env.json("select", "--task", f"t{i}")
        order.append(sel["container"]["name"])
        pool_env.cli("complete", str(sel["dispatch"]["id"]), "--outcome", "OK")
    assert order == [pool_env.name(n) for n in (1, 2, 3, 1, 2, 3)]
    held = [pool_env.json("select") for _ in range(3)]
    assert sorted(h["container"]["name"] for h in held) == [pool_env.name(n) for n in (1, 2, 3)]
    r = pool_env.cli("select", ok=False)
    assert r.returncode == 1 and "no container available: 3 live (3 busy" in r.stderr
    pool_env.cli("complete", str(held[1]["dispatch"]["id"]), "--outcome", "failed")
    assert pool_env.json("select")["container"]["name"] == held[1]["container"]["name"]


def test_twenty_concurrent_selects_never_share_a_container(pool_env: PoolEnv) -> None:
    pool_env.cli("ensure-min", "--min", "8")
    assert len(pool_env.running()) == 8
    # 20 threads, each with its own Pool and database connection.
    barrier, got, lock = threading.Barrier(20), [], threading.Lock()

    def one() -> None:
        p = pool_env.pool()
        barrier.wait()
        picked = p.select(task_id="thread")
        with lock:
            got.append(picked)
        p.close()

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [c.name for c, _ in filter(None, got)]
    assert len(got) == 20 and len(winners) == 8 and len(set(winners)) == 8, winners
    for _, d in filter(None, got):
        pool_env.cli("complete", str(d.id), "--outcome", "OK")
    # 20 separate processes.
    procs = [subprocess.Popen(pool_env.argv("select", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=pool_env.env) for _ in range(20)]
    results = [(p.wait(timeout=120), p.stdout.read()) for p in procs]
    winners = [json.loads(out)["container"]["name"] for code, out in results if code == 0]
    assert len(winners) == 8 and len(set(winners)) == 8, results
    assert sorted(code for code, _ in results) == [0] * 8 + [1] * 12
    assert pool_env.json("status")["open_dispatches"] == 8


def test_a_rate_limited_container_is_skipped_until_its_cooldown_ends(pool_env: PoolEnv) -> None:
    pool_env.write_policy(rate_limit_cooldown=8)  # several CLI calls (each ~1 s on a busy 2-core box) fit in it
    a, b = pool_env.json("spawn")["name"], pool_env.json("spawn")["name"]
    sel = pool_env.json("select")
    assert sel["container"]["name"] == a
    pool_env.cli("complete", str(sel["dispatch"]["id"]), "--outcome", "rate_limited")
    limited = pool_env.json("list", "--status", "rate_limited")
    assert [c["name"] for c in limited] == [a] and limited[0]["rate_limit_count"] == 1
    assert pool_env.events("pool_rate_limited")[-1]["container"] == a
    t_end = datetime.fromisoformat(limited[0]["rate_limit_until"].replace("Z", "+00:00"))
    # During the cooldown only b is selected, though a was dispatched less recently after b's turns.
    seen = []
    while (t_end - datetime.now(timezone.utc)).total_seconds() > 1.0:
        s = pool_env.json("select")
        seen.append(s["container"]["name"])
        pool_env.cli("complete", str(s["dispatch"]["id"]), "--outcome", "OK")
    assert seen and set(seen) == {b}
    wait_for(lambda: datetime.now(timezone.utc) > t_end, timeout=10, what="the cooldown to end")
    assert pool_env.json("select")["container"]["name"] == a
    # The same by hand, by name, with `health` returning the expired limit to healthy.
    pool_env.cli("rate-limit", b, "set", "2")
    assert pool_env.json("list", "--status", "rate_limited")[0]["name"] == b
    time.sleep(2.1)
    results = {r["name"]: r for r in pool_env.json("health")}
    assert results[b]["before"] == "rate_limited" and results[b]["status"] == "healthy"


def test_cleanup_keeps_min_and_spares_busy_and_fresh_containers(pool_env: PoolEnv) -> None:
    idle = 8  # seconds: room for the few CLI calls (~1 s each on a busy 2-core box) after `four` spawns
    pool_env.write_policy(idle_timeout=idle, min=1)
    for _ in range(3):
        pool_env.cli("spawn")
    one, two, three = (pool_env.name(n) for n in (1, 2, 3))
    busy = pool_env.json("select")
    assert busy["container"]["name"] == one
    time.sleep(idle + 0.5)
    four = pool_env.json("spawn")["name"]  # fresh: created within the idle timeout
    assert [c["name"] for c in pool_env.json("cleanup", "--dry-run")] == [two, three]
    assert len(pool_env.running()) == 4  # the dry run destroyed nothing
    pool_env.write_policy(idle_timeout=idle, min=3)  # 4 live, keep 3: only one may go
    assert [c["name"] for c in pool_env.json("cleanup")] == [two]
    assert pool_env.running() == sorted([one, three, four])
    assert [e["container"] for e in pool_env.events("pool_destroyed")] == [two]
    # destroy refuses the busy one without --force, and changes nothing.
    r = pool_env.cli("destroy", one, ok=False)
    assert r.returncode == 1 and f"{one}: busy with dispatch {busy['dispatch']['id']}" in r.stderr
    assert one in pool_env.running()
    assert pool_env.json("destroy", one, "--force")["status"] == "stopped"
    assert one not in pool_env.names()
    d = pool_env.pool().db.dispatch(busy["dispatch"]["id"])
    assert d.outcome == "failed" and "destroyed" in d.error


def test_a_container_killed_from_outside_is_marked_unhealthy(pool_env: PoolEnv) -> None:
    name = pool_env.json("spawn")["name"]
    pool_env.client.containers.get(name).kill()
    results = pool_env.json("health")
    assert results[0]["name"] == name and results[0]["status"] == "unhealthy"
    assert "exited" in results[0]["reason"]
    assert pool_env.events("pool_unhealthy")[-1]["container"] == name
    assert pool_env.cli("select", ok=False).returncode == 1
    pool_env.client.containers.get(name).remove(force=True)
    assert pool_env.json("health")[0]["status"] == "failed"  # vanished


def test_the_daemon_replaces_a_killed_pool_container(pool_env: PoolEnv, daemon_factory) -> None:
    pool_env.write_policy(min=2, health_interval_s=1, cleanup_interval_s=3600)
    inventory = write_inventory(pool_env.tmp / "inventory", [], node="testnode")
    d = daemon_factory(inventory, pool_env.policy)
    d.state_dir = pool_env.state_dir
    d.start()
    wait_for(lambda: len(pool_env.running()) == 2, timeout=30, what="the daemon to spawn min=2")
    victim = pool_env.name(1)
    old_id = pool_env.client.containers.get(victim).id
    pool_env.client.containers.get(victim).kill()
    d.wait_event(lambda e: e["type"] == "pool_unhealthy" and e["container"] == victim, timeout=30)
    rep = d.wait_event(lambda e: e["type"] == "pool_replaced" and e["container"] == victim, timeout=30)
    assert rep["details"]["old_docker_id"] == old_id
    wait_for(lambda: len(pool_env.running()) == 2 and pool_env.client.containers.get(victim).id != old_id,
             timeout=30, what="a running replacement")
    assert {c["status"] for c in pool_env.json("list")} == {"healthy"}


def test_a_secret_does_not_appear_in_docker_inspect(pool_env: PoolEnv) -> None:
    file_value, env_value = f"file-secret-{uuid.uuid4().hex}", f"env-secret-{uuid.uuid4().hex}"
    (pool_env.tmp / "token").write_text(file_value)
    pool_env.env["POOL_TEST_TOKEN"] = env_value
    pool_env.write_policy(secrets={"token": str(pool_env.tmp / "token"), "other": "POOL_TEST_TOKEN"},
                          env={"VISIBLE": "not-secret"})
    name = pool_env.json("spawn")["name"]
    inspect = subprocess.run(["docker", "inspect", name], capture_output=True, text=True, check=True).stdout
    assert "not-secret" in inspect  # the grep works: a plain env value does show
    assert file_value not in inspect and env_value not in inspect
    assert "/run/secrets/token" in inspect  # only the mount's paths show
    r = pool_env.cli("dispatch", tail=["cat", "/run/secrets/token", "/run/secrets/other"])
    assert r.stdout == file_value + env_value
    r = pool_env.cli("dispatch", tail=["sh", "-c", "echo x > /run/secrets/token"], ok=False)
    assert r.returncode != 0  # read-only
    host_file = pool_env.state_dir / "pool-secrets" / name / "token"
    assert oct(host_file.stat().st_mode & 0o777) == "0o600"
    pool_env.cli("destroy", name)
    assert not host_file.exists()


def test_bad_input_fails_clearly_and_changes_nothing(pool_env: PoolEnv) -> None:
    name = pool_env.json("spawn")["name"]
    before = (pool_env.json("list"), pool_env.json("status"), len(pool_env.events()), pool_env.names())
    cases = [
        (["rate-limit", name, "set", "abc"], "seconds: expected a positive integer, got 'abc'"),
        (["rate-limit", "x", "set", "abc"], "seconds: expected a positive integer, got 'abc'"),
        (["rate-limit", name, "set", "0"], "seconds: expected a positive integer, got '0'"),
        (["rate-limit", name, "sett"], "action: expected set or clear, got 'sett'"),
        (["rate-limit", "nope", "set", "60"], f"pool container 'nope' is not in the pool; pool containers: {name}"),
        (["destroy", "nope"], "pool container 'nope' is not in the pool"),
        (["complete", "999", "--outcome", "OK"], "dispatch 999 does not exist"),
        (["complete", "1", "--outcome", "maybe"], "outcome: expected one of OK, failed, rate_limited, got 'maybe'"),
        (["list", "--status", "bogus"], "status: expected one of"),
        (["spawn", "--max", "0"], "max: Input should be greater than or equal to 1"),
        (["spawn", "bad name!"], "name: expected"),
    ]
    for args, message in cases:
        r = pool_env.cli(*args, ok=False)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert message in " ".join(r.stderr.split()), (args, r.stderr)
    after = (pool_env.json("list"), pool_env.json("status"), len(pool_env.events()), pool_env.names())
    assert after == before


def test_dispatch_runs_in_the_selected_container_and_records_exit_3(pool_env: PoolEnv) -> None:
    pool_env.cli("spawn"), pool_env.cli("spawn")
    r = pool_env.cli("dispatch", "--task", "job-3",
                     tail=["sh", "-c", "hostname > /tmp/ran; echo out; echo err >&2; exit 3"], ok=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    d = pool_env.pool().db.dispatch(1)
    assert (d.outcome, d.exit_code, d.task_id) == ("failed", 3, "job-3") and d.completed_at is not None
    assert json.loads(d.command) == ["sh", "-c", "hostname > /tmp/ran; echo out; echo err >&2; exit 3"]
    # The command really ran in the selected container, and only there.
    ran = {n: pool_env.client.containers.get(n).exec_run(["test", "-f", "/tmp/ran"]).exit_code
           for n in pool_env.running()}
    assert ran == {d.container: 0, **{n: 1 for n in ran if n != d.container}}
    ok = pool_env.json("dispatch", tail=["echo", "hi"])
    assert (ok["outcome"], ok["exit_code"], ok["stdout"]) == ("ok", 0, "hi\n")
    assert ok["container"] != d.container  # least recently dispatched first
    st = pool_env.json("status")
    assert (st["outcome_failed"], st["outcome_ok"], st["open_dispatches"]) == (1, 1, 0)


def test_health_command_and_http_probe(pool_env: PoolEnv) -> None:
    pool_env.write_policy(command=["httpd", "-f", "-p", "8080", "-h", "/tmp"], health_http_port=8080,
                          health_http_path="/ok.txt", health_command=["test", "-f", "/tmp/ready"],
                          health_timeout_s=3)
    c = pool_env.json("spawn")
    assert c["status"] == "starting"  # probes fail on a new container: starting, not selected
    assert pool_env.cli("select", ok=False).returncode == 1
    box = pool_env.client.containers.get(c["name"])
    box.exec_run(["touch", "/tmp/ready"])
    r = pool_env.json("health")[0]
    assert r["status"] == "starting" and "HTTP probe" in r["reason"]  # command passes, HTTP 404
    box.exec_run(["sh", "-c", "echo ok > /tmp/ok.txt"])
    r = pool_env.json("health")[0]
    assert r["status"] == "healthy" and "200" in r["reason"]
    box.exec_run(["rm", "/tmp/ready"])
    r = pool_env.json("health")[0]
    assert r["status"] == "unhealthy" and "health command exited 1" in r["reason"]
