"""The foundation issue's checks, each against a real engine and a real daemon."""

from __future__ import annotations

import os
import signal
import time


from conftest import FAST_POLICY, wait_for, write_inventory, write_policy

HEALTH_1S = {"test": ["CMD-SHELL", "test ! -f /tmp/bad"], "interval": 1_000_000_000,
             "timeout": 1_000_000_000, "retries": 2}


def _svc(name: str, **kw) -> dict:
    return {"name": name, **kw}


def _of(events, service, type_=None, action=None):
    return [e for e in events if e.get("service") == service and (type_ is None or e["type"] == type_)
            and (action is None or e.get("action") == action)]


def test_killed_process_is_running_again(tmp_path, containers, daemon_factory):
    """1. a tracked container whose process is killed from the host is running again."""
    containers.run("web", ["sleep", "3600"])
    name = containers.name("web")
    inv = write_inventory(tmp_path / "inv", [_svc("web", container=name)])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start()
    d.wait_ready()
    pid = containers.state("web")["Pid"]
    assert pid > 0
    os.kill(pid, signal.SIGKILL)  # from the host, not `docker kill`
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == "web", timeout=20)
    st = containers.state("web")
    assert st["Running"] and st["Pid"] != pid
    evs = d.events()
    started = _of(evs, "web", "action_started", "start")
    assert started, "no action_started for web"
    assert _of(evs, "web", "action_succeeded")
    assert _of(evs, "web", "drift_detected")[0]["drift"] == "stopped"
    # The crash was not mistaken for an operator stop.
    assert not _of(evs, "web", "intent_changed")


def test_unhealthy_container_is_restarted(tmp_path, containers, daemon_factory):
    """2. an unhealthy container (failing healthcheck) is restarted."""
    containers.run("api", ["sh", "-c", "rm -f /tmp/bad; exec sleep 3600"], healthcheck=HEALTH_1S)
    name = containers.name("api")
    inv = write_inventory(tmp_path / "inv", [_svc("api", container=name)])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start()
    wait_for(lambda: containers.state("api").get("Health", {}).get("Status") == "healthy", 20, what="healthy")
    first_start = containers.state("api")["StartedAt"]
    containers.get("api").exec_run(["touch", "/tmp/bad"])
    e = d.wait_event(lambda e: e["type"] == "action_started" and e["service"] == "api", timeout=30)
    assert e["action"] == "restart"
    assert e["drift"] == "unhealthy"
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == "api", timeout=30)
    st = containers.state("api")
    assert st["StartedAt"] != first_start
    assert st["Health"]["Status"] == "healthy"


def test_docker_stop_is_respected_until_dockwarden_start(tmp_path, containers, daemon_factory):
    """3. `docker stop` stays stopped across a resync and a daemon restart; `dockwarden start` brings it back."""
    containers.run("worker", ["sleep", "3600"])
    name = containers.name("worker")
    inv = write_inventory(tmp_path / "inv", [_svc("worker", container=name)])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    d.wait_ready()  # subscribed: the stop below is seen
    containers.get("worker").stop(timeout=1)
    ev = d.wait_event(lambda e: e["type"] == "intent_changed" and e["service"] == "worker", timeout=15)
    from dockwarden.model import parse_time

    d.wait_full_passes(3, after=parse_time(ev["ts"]))
    assert not containers.state("worker")["Running"]
    assert d.stop() == 0
    d.start(resync=1)
    ready = d.wait_ready()
    d.wait_full_passes(3, after=parse_time(ready["ts"]))
    assert not containers.state("worker")["Running"]
    assert not _of(d.events(), "worker", "action_started")
    r = d.cli("start", "worker")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: containers.state("worker")["Running"], 10, what="worker running")
    time.sleep(2)
    assert containers.state("worker")["Running"]


def test_crash_loop_backs_off_then_blocks_and_resume_rearms(tmp_path, containers, daemon_factory):
    """4. growing backoff between restarts, at most the budget, then reconcile_blocked; resume re-arms."""
    containers.run("flaky", ["sh", "-c", "sleep 0.3; exit 1"])
    name = containers.name("flaky")
    inv = write_inventory(tmp_path / "inv", [_svc("flaky", container=name, max_restarts=4)])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    blocked = d.wait_event(lambda e: e["type"] == "reconcile_blocked" and e["service"] == "flaky", timeout=60)
    assert "budget" in blocked["reason"]
    starts = [e for e in _of(d.events(), "flaky", "action_started")]
    assert len(starts) == 4
    from dockwarden.model import parse_time

    times = [parse_time(e["ts"]) for e in starts]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    # Backoff 1 s, 2 s, 4 s (initial 1 s doubling): each gap at least its delay, and growing.
    for gap, delay in zip(gaps, (1, 2, 4)):
        assert gap >= delay - 0.05, gaps
    assert gaps[-1] > gaps[0], gaps
    time.sleep(3)
    assert len(_of(d.events(), "flaky", "action_started")) == 4  # circuit open: no more actions
    n = len(d.events())
    r = d.cli("resume", "flaky")
    assert r.returncode == 0, r.stderr
    d.wait_event(lambda e: e["type"] == "action_started" and e["service"] == "flaky", timeout=20, after=n)


def test_exit_127_is_blocked_not_retried(tmp_path, containers, daemon_factory):
    """5. an exit-127 container is not retried in a loop, and the event says why."""
    containers.run("typo", ["sh", "-c", "no-such-command-xyz"])
    wait_for(lambda: not containers.state("typo")["Running"], 10, what="exit")
    assert containers.state("typo")["ExitCode"] == 127
    name = containers.name("typo")
    inv = write_inventory(tmp_path / "inv", [_svc("typo", container=name)])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    e = d.wait_event(lambda e: e["type"] == "reconcile_blocked" and e["service"] == "typo", timeout=15)
    assert "127" in e["reason"]
    assert e["action"] == "diagnostics"
    time.sleep(4)  # several resyncs
    evs = d.events()
    assert not _of(evs, "typo", "action_started")
    assert len(_of(evs, "typo", "reconcile_blocked")) == 1  # said once, not every pass


def test_mode_recommend_changes_nothing(tmp_path, containers, daemon_factory):
    """6. `--mode recommend` changes nothing and emits reconcile_required."""
    containers.run("idle", ["sleep", "3600"], start=False)
    name = containers.name("idle")
    inv = write_inventory(tmp_path / "inv", [_svc("idle", container=name)])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY), ["--mode", "recommend"]).start(resync=1)
    e = d.wait_event(lambda e: e["type"] == "reconcile_required" and e["service"] == "idle", timeout=15)
    assert e["action"] == "start"
    time.sleep(3)
    assert containers.state("idle")["Status"] == "created"
    assert not [e for e in d.events() if e["type"] == "action_started"]


def test_dependency_delays_dependant_and_start_order(tmp_path, containers, daemon_factory):
    """7. a dependency that is down delays its dependant; start order follows depends_on."""
    health = {"test": ["CMD-SHELL", "test -f /tmp/ready"], "interval": 1_000_000_000,
              "timeout": 1_000_000_000, "retries": 2, "start_period": 10_000_000_000}
    containers.run("db", ["sh", "-c", "rm -f /tmp/ready; sleep 2; touch /tmp/ready; exec sleep 3600"],
                   healthcheck=health, start=False)
    containers.run("app", ["sleep", "3600"], start=False)
    inv = write_inventory(tmp_path / "inv", [
        _svc("app", container=containers.name("app"), depends_on=["db"]),
        _svc("db", container=containers.name("db")),
    ])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    d.wait_event(lambda e: e["type"] == "action_started" and e["service"] == "app", timeout=40)
    evs = d.events()
    delay = _of(evs, "app", "reconcile_required", "delay")
    assert delay, "app was not delayed while db was down"
    db_start = _of(evs, "db", "action_started")[0]
    app_start = _of(evs, "app", "action_started")[0]
    assert evs.index(delay[0]) < evs.index(app_start)
    assert evs.index(db_start) < evs.index(app_start)
    # The dependant started only once the dependency was healthy.
    db_healthy = wait_for(lambda: containers.state("db").get("Health", {}).get("Status") == "healthy", 20)
    assert db_healthy
    from dockwarden.model import parse_time

    assert parse_time(app_start["ts"]) >= parse_time(db_start["ts"])
    wait_for(lambda: containers.state("app")["Running"], 10, what="app running")


def test_broken_inventory_is_rejected_and_daemon_keeps_last_good(tmp_path, containers, daemon_factory):
    """8. a broken inventory fails `inventory validate` naming file and field; a running daemon keeps its last good one."""
    containers.run("svc", ["sleep", "3600"])
    name = containers.name("svc")
    inv = write_inventory(tmp_path / "inv", [_svc("svc", container=name)])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    f = inv / "hosts" / "testnode" / "services.yaml"
    f.write_text(f"services:\n  - name: svc\n    container: {name}\n    desired: sometimes\n")
    r = d.cli("inventory", "validate", str(inv))
    assert r.returncode != 0
    assert str(f) in r.stderr and "services[0].desired" in r.stderr, r.stderr
    e = d.wait_event(lambda e: e["type"] == "config_rejected", timeout=15)
    assert "services[0].desired" in e["reason"]
    # The last good inventory still rules: a crash is still healed.
    n = len(d.events())
    containers.kill_process("svc")
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == "svc", timeout=20, after=n)


def test_once_exit_codes_match_summary(tmp_path, containers, daemon_factory):
    """9. `once` exit codes: 0 nominal, 1 degraded, 2 unstable, 3 could not check."""
    containers.run("ok", ["sleep", "3600"])
    containers.run("down", ["sleep", "3600"], start=False)
    inv_ok = write_inventory(tmp_path / "inv-ok", [_svc("ok", container=containers.name("ok"))])
    relaxed = write_policy(tmp_path / "relaxed.toml", "[thresholds]\ndisk_warn_percent = 99.9\ndisk_critical_percent = 99.9\n"
                           "memory_crisis_available_bytes = 0\nswap_crisis_used_bytes = 1099511627776\n")
    d = daemon_factory(inv_ok, relaxed)
    r = d.cli("once", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    import json

    assert json.loads(r.stdout)["summary"] == "nominal"
    inv_down = write_inventory(tmp_path / "inv-down", [_svc("down", container=containers.name("down"))])
    d2 = daemon_factory(inv_down, relaxed)
    r = d2.cli("once", "--mode", "observe", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    assert json.loads(r.stdout)["summary"] == "degraded"
    strict = write_policy(tmp_path / "strict.toml", "[thresholds]\ndisk_warn_percent = 0.1\ndisk_critical_percent = 0.1\n")
    d3 = daemon_factory(inv_ok, strict)
    r = d3.cli("once", "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    assert json.loads(r.stdout)["summary"] == "unstable"
    env_backup = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = f"unix://{tmp_path}/no-engine.sock"
    try:
        r = d.cli("once", "--json")
    finally:
        if env_backup is None:
            os.environ.pop("DOCKER_HOST")
        else:
            os.environ["DOCKER_HOST"] = env_backup
    assert r.returncode == 3, r.stdout + r.stderr
    assert json.loads(r.stdout)["summary"] == "unknown"


def test_once_reports_cpu_over_its_whole_run(tmp_path, containers, daemon_factory):
    """`once` takes its first CPU sample before its imports and engine calls (issue 9):
    a container spinning a core shows it, an idle one does not, and the host has a figure."""
    import json

    containers.run("busy", ["sh", "-c", "while :; do :; done"])
    containers.run("idle", ["sleep", "3600"])
    inv = write_inventory(tmp_path / "inv", [_svc("busy", container=containers.name("busy")),
                                             _svc("idle", container=containers.name("idle"))])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY))
    r = d.cli("once", "--mode", "observe", "--json")
    assert r.returncode in (0, 1, 2), r.stdout + r.stderr
    doc = json.loads(r.stdout)
    cpu = {s["service"]: s["cpu_percent"] for s in doc["services"]}
    assert cpu["busy"] is not None and cpu["busy"] >= 30, cpu  # one core spinning: ~100 % of one core
    assert cpu["idle"] is not None and cpu["idle"] < 10, cpu
    assert doc["host"]["cpu_percent"] is not None


def test_docker_update_reaches_the_world_without_waiting_for_a_full_inspect(tmp_path, containers, daemon_factory):
    """`docker update --memory` announces itself with an `update` event: the daemon
    inspects the container again, so the new limit (the engine's record; the cgroup
    reader does not read it) is in world.json at the next resync, not 300 s later
    at the next full inspect."""
    import json

    c = containers.run("web", ["sleep", "3600"], mem_limit="64m")
    inv = write_inventory(tmp_path / "inv", [_svc("web", container=containers.name("web"))])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)

    def limit() -> int | None:
        try:
            doc = json.loads((d.state_dir / "world.json").read_text())
        except (OSError, ValueError):
            return None
        return next((x["memory_limit_bytes"] for x in doc["containers"] if x["name"] == c.name), None)

    wait_for(lambda: limit() == 64 * 2**20, 20, what="the first limit in world.json")
    c.update(mem_limit="96m", memswap_limit="-1")
    wait_for(lambda: limit() == 96 * 2**20, 20, what="the updated limit in world.json")
