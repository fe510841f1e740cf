#!/usr/bin/env python3
"""Recovery after an engine restart: dockwarden vs Docker's `restart: always`.

On a private second engine (its own dockerd in a network namespace, so the
machine's engine is untouched), N tracked services (default 30) in a
dependency graph: layer 0 has healthchecks, each later service depends on one
service of the layer before. Then, in the same run:

1. dockwarden: no restart policies. dockwarden ran once before (it records the
   engine's start time); the engine is stopped (every container exits) and
   started again; `dockwarden run` is started as soon as the engine answers.
   Measured: from the engine answering to every service running, and healthy
   where it has a healthcheck.
2. The engine's floor for the same ordered recovery: dockwarden stopped, the
   same engine stop/start, then this script starts each service itself as soon
   as its dependency is running (healthy where it has a healthcheck), all
   chains at once: what no supervisor that keeps the order beats.
2b. The engine's throughput: the same engine stop/start, then this script starts
   all N at once, with no order and no wait for health: how long this engine needs
   to start N containers at all. An ordered recovery with healthchecks cannot be
   faster than this.
3. Docker: the same containers recreated with `restart: always`; the same
   engine stop/start; the same measure, and also from the moment dockerd was
   launched (the engine starts these containers itself before it answers).

Docker's policy restarts everything at once without regard to dependencies;
dockwarden starts in depends_on order and waits for healthy dependencies, so
it is expected to be slower by design; the figure says by how much.

Prints figures; asserts nothing. Needs root, nsenter and ip.
Usage: python bench/recovery.py [--services 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.support.engine import PrivateEngine  # noqa: E402

IMAGE = os.environ.get("DOCKWARDEN_TEST_IMAGE", "dockwarden-test/busybox:latest")
HEALTH = {"test": ["CMD", "true"], "interval": 500_000_000, "timeout": 1_000_000_000, "retries": 1}
LAYER = 6


def graph(n: int) -> list[dict]:
    out = []
    for i in range(n):
        layer = i // LAYER
        svc = {"name": f"s{i:02d}"}
        if layer > 0:
            svc["depends_on"] = [f"s{(layer - 1) * LAYER + (i % LAYER):02d}"]
        out.append(svc)
    return out


def create_all(client, tag: str, services: list[dict], restart: bool) -> None:
    for s in services:
        kw = dict(name=f"{tag}-{s['name']}", network_mode="none", detach=True, stop_signal="SIGKILL",
                  labels={"dockwarden.bench": tag})
        if "depends_on" not in s:
            kw["healthcheck"] = HEALTH
        if restart:
            kw["restart_policy"] = {"Name": "always"}
        client.containers.run(IMAGE, ["sleep", "3600"], **kw)


def all_back(client, tag: str, n: int) -> bool:
    cs = client.api.containers(all=True, filters={"label": f"dockwarden.bench={tag}"})
    if len(cs) != n:
        return False
    for c in cs:
        st = c["State"]
        status = c.get("Status", "")
        if st != "running" or "health: starting" in status or "unhealthy" in status:
            return False
    return True


def wait_back(client, tag: str, n: int, timeout: float = 300) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if all_back(client, tag, n):
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def start_in_order(client, tag: str, services: list[dict]) -> None:
    """Start every service as soon as its dependency is up (running, and healthy
    when it has a healthcheck: layer 0 here), each chain in its own thread."""
    api = client.api

    def up(name: str, checked: bool) -> bool:
        st = api.inspect_container(name)["State"]
        return bool(st["Running"]) and (not checked or (st.get("Health") or {}).get("Status") == "healthy")

    def one(s: dict) -> None:
        for dep in s.get("depends_on", []):
            checked = "depends_on" not in next(x for x in services if x["name"] == dep)
            deadline = time.monotonic() + 120
            while not up(f"{tag}-{dep}", checked) and time.monotonic() < deadline:
                time.sleep(0.02)
        api.start(f"{tag}-{s['name']}")

    with ThreadPoolExecutor(len(services)) as pool:
        list(pool.map(one, services))


def start_all_at_once(client, tag: str, services: list[dict]) -> None:
    """Start every service at the same moment, in no order (the engine's throughput)."""
    with ThreadPoolExecutor(len(services)) as pool:
        list(pool.map(lambda s: client.api.start(f"{tag}-{s['name']}"), services))


def restart_engine(eng: PrivateEngine) -> float:
    eng.stop()
    eng.start()  # returns once the engine answers
    return time.monotonic()


def timed_restart(eng: PrivateEngine, tag: str, n: int, bring_back=None) -> float | None:
    """Stop and start the engine; ``bring_back(client)`` (if given) runs as soon as it
    answers. Seconds from the answer to all N back, None when they were not."""
    t_answer = restart_engine(eng)
    client = eng.client()
    if bring_back is not None:
        bring_back(client)
    back = wait_back(client, tag, n)
    return time.monotonic() - t_answer if back is not None else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=30)
    args = ap.parse_args()
    n = args.services
    tag = f"dwbench-rec-{uuid.uuid4().hex[:6]}"
    eng = PrivateEngine(tag[:15])
    tmp = Path(tempfile.mkdtemp(prefix="dw-recovery-"))
    services = graph(n)
    env = dict(os.environ, DOCKER_HOST=eng.host, PYTHONPATH=str(REPO / "src"))
    daemon = None
    try:
        eng.setup(IMAGE)
        client = eng.client()
        inv = tmp / "inv" / "hosts" / "bench"
        inv.mkdir(parents=True)
        import yaml

        (inv / "services.yaml").write_text(yaml.safe_dump({"services": [
            {**s, "container": f"{tag}-{s['name']}"} for s in services]}))
        (tmp / "policy.toml").write_text("[guardrails]\ndependency_wait_s = 0.5\nstop_timeout_s = 1\n"
                                         "[spikes]\nhost_cpu_percent = 100\nhost_memory_percent = 100\n")
        cmd = [sys.executable, "-m", "dockwarden", "run", "--inventory", str(tmp / "inv"), "--policy",
               str(tmp / "policy.toml"), "--state-dir", str(tmp / "state"), "--resync", "30"]
        if os.environ.get("DW_BENCH_VERBOSE"):
            cmd.append("-v")  # pass timings in <tmp>/daemon.log

        # 1. dockwarden
        create_all(client, tag, services, restart=False)
        wait_back(client, tag, n)
        log = open(tmp / "daemon.log", "ab")
        daemon = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(3)  # first run: records the engine start time
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        t_answer = restart_engine(eng)
        daemon = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        client = eng.client()
        dw = wait_back(client, tag, n)
        dw_total = time.monotonic() - t_answer if dw is not None else None
        # 1b. the same, with the daemon already running when the engine restarts (it
        # notices the engine back within a quarter of a second and recovers at once).
        wait_back(client, tag, n)
        time.sleep(2)
        dw_run_total = timed_restart(eng, tag, n)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        daemon = None

        # 2. the engine's floor: this script starts them in order itself
        wait_back(eng.client(), tag, n)
        fl_total = timed_restart(eng, tag, n, lambda c: start_in_order(c, tag, services))

        # 2b. the engine's throughput: all at once, no order
        wait_back(eng.client(), tag, n)
        tp_total = timed_restart(eng, tag, n, lambda c: start_all_at_once(c, tag, services))
        client = eng.client()

        # 3. Docker's restart: always
        for c in client.containers.list(all=True, filters={"label": f"dockwarden.bench={tag}"}):
            c.remove(force=True)
        create_all(client, tag, services, restart=True)
        wait_back(client, tag, n)
        eng.stop()
        t_launch = time.monotonic()
        eng.start()
        t_answer = time.monotonic()
        client = eng.client()
        dk = wait_back(client, tag, n)
        dk_total = time.monotonic() - t_answer if dk is not None else None
        dk_launch = time.monotonic() - t_launch if dk is not None else None

        print(f"{n} services ({n // LAYER + (n % LAYER > 0)} dependency layers, layer 0 with healthchecks), "
              "engine stopped and started; from the engine answering to all running (healthy where checked):")
        print(f"  dockwarden (dependency order, daemon started when the engine answers): "
              f"{dw_total:.2f} s" if dw_total is not None else "  dockwarden: not all back within 300 s")
        print(f"  dockwarden (dependency order, daemon running through the restart):   "
              f"{dw_run_total:.2f} s" if dw_run_total is not None else "  dockwarden running: not all back")
        print(f"  the engine's floor (this script starting each as its dependency is up): "
              f"{fl_total:.2f} s" if fl_total is not None else "  the engine's floor: not all back within 300 s")
        print(f"  the engine's throughput (this script starting all {n} at once, no order): "
              f"{tp_total:.2f} s" if tp_total is not None else "  the engine's throughput: not all back")
        print(f"  Docker restart: always (no order):                                   "
              f"{dk_total:.2f} s; {dk_launch:.2f} s from launching dockerd"
              if dk_total is not None else "  restart: always: not all back within 300 s")
        return 0
    finally:
        if daemon is not None:
            daemon.kill()
        eng.teardown()
        print(f"daemon log and state: {tmp}")


if __name__ == "__main__":
    sys.exit(main())
