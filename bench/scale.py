#!/usr/bin/env python3
"""dockwarden with many containers (issue 9): idle cost, pass times, `once`, crash latency.

Creates N busybox containers (default 1 000; every second one labelled
``dockwarden.enable=true`` so it is tracked), then, in one run:

1. ``docker ps -a`` + ``docker stats --no-stream`` (what a user compares with),
   and ``dockwarden once --mode observe`` as a whole process, three times each.
2. ``dockwarden run`` (``--resync 5``, ``-v``): its RSS and CPU % of one core
   over ``--idle`` seconds once it is ready, and the duration of its passes, read
   from its debug log (``pass kind=... duration_ms=...``): full (every container
   inspected), incremental (only containers the list call shows changed), cached
   (no list call: the engine's replay of its recent events vouched for the
   stream), and event-driven refreshes.
3. Crash-to-running for a tracked container among them (SIGKILL to its host PID),
   ``--crashes`` times.

4. The engine's own floors in the same run, with the same containers present:
   the list call (``GET /containers/json?all=1``, which every resync makes) and
   crash-to-running when this script restarts an untracked container itself
   (SIGKILL, poll until exited, ``docker start``): what no supervisor beats.

The daemon runs with the default ``--resync`` (30 s; ``--resync`` to change it).
Python's bytecode cache is on for every process (``PYTHONDONTWRITEBYTECODE``
removed), as for an installed dockwarden.

Cleans up every container it made (label ``dockwarden.bench=<tag>``). Prints
figures; asserts nothing. Targets (issue 9): `once` >= 5x faster than the CLI
pair and <= 1.5 s at 1 000; idle <= 2 % of a core and <= 150 MiB; incremental
pass <= 50 ms; crash-to-running p50 <= 0.4 s.

Usage: python bench/scale.py [--containers 1000] [--idle 60] [--crashes 10] [--resync 30]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import psutil

from _common import IMAGE, REPO, pct, stop_daemon, wait_running  # noqa: E402

PASS_RE = re.compile(r"pass kind=(\w+) .*?duration_ms=([\d.]+)")
POLICY = """
[backoff]
initial_delay_s = 0.1
max_delay_s = 0.1
[restart_budget]
max_restarts = 1000
[thresholds]
disk_warn_percent = 99.9
disk_critical_percent = 99.9
memory_crisis_available_bytes = 0
[spikes]
host_cpu_percent = 100
host_memory_percent = 100
"""


def timed(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.monotonic() - t0



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--containers", type=int, default=1000)
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    ap.add_argument("--crashes", type=int, default=10)
    ap.add_argument("--resync", type=float, default=30.0, help="the daemon's --resync, seconds")
    args = ap.parse_args()
    client = docker.from_env(timeout=120, max_pool_size=32)
    api = client.api
    tag = uuid.uuid4().hex[:6]
    labels = {"dockwarden.bench": tag}
    tmp = Path(tempfile.mkdtemp(prefix="dw-scale-"))
    inv = tmp / "inv" / "hosts" / "bench"
    inv.mkdir(parents=True)
    (inv / "services.yaml").write_text("services: []\n")
    (tmp / "policy.toml").write_text(POLICY)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed dockwarden has its bytecode cached
    dw = [sys.executable, "-m", "dockwarden"]
    common = ["--inventory", str(tmp / "inv"), "--policy", str(tmp / "policy.toml"), "--state-dir", str(tmp / "state")]
    daemon = None
    try:
        t0 = time.monotonic()

        def make(i: int) -> None:
            lab = dict(labels)
            if i % 2 == 0:
                lab["dockwarden.enable"] = "true"
            client.containers.run(IMAGE, ["sleep", "86400"], name=f"dwscale-{tag}-{i:04d}", detach=True,
                                  labels=lab, network_mode="none")

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(make, range(args.containers)))
        print(f"created {args.containers} containers in {time.monotonic() - t0:.1f} s "
              f"({args.containers // 2} tracked by label)")

        cli = [timed(["docker", "ps", "-a"]) + timed(["docker", "stats", "--no-stream"]) for _ in range(3)]
        once = [timed([*dw, "once", "--mode", "observe", *common], env) for _ in range(3)]
        print(f"`docker ps -a` + `docker stats --no-stream`: median {statistics.median(cli):.2f} s")
        print(f"`dockwarden once --mode observe` (whole process): median {statistics.median(once):.2f} s "
              f"({statistics.median(cli) / statistics.median(once):.1f}x faster)   target <= 1.5 s, >= 5x")
        version = [timed([*dw, "version"], env) for _ in range(5)]
        print(f"`dockwarden version`: median {statistics.median(version):.3f} s   target <= 0.15 s")

        log_path = tmp / "daemon.log"
        log = open(log_path, "wb")
        lists = []
        for _ in range(5):
            t0 = time.monotonic()
            api.containers(all=True)
            lists.append(time.monotonic() - t0)
        print(f"the engine's list call (every resync makes one): median {statistics.median(lists) * 1000:.0f} ms")

        daemon = subprocess.Popen([*dw, "run", *common, "--resync", f"{args.resync:g}", "-v"], stdout=log,
                                  stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while b"daemon_ready" not in log_path.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(6)  # the first full passes
        proc = psutil.Process(daemon.pid)
        proc.cpu_percent(None)
        cpu0 = proc.cpu_times()
        t0 = time.monotonic()
        time.sleep(args.idle)
        cpu1 = proc.cpu_times()
        busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        rss = proc.memory_info().rss
        print(f"daemon idle over {args.idle:.0f} s (--resync {args.resync:g}): "
              f"{100 * busy / (time.monotonic() - t0):.2f} % of one core, "
              f"RSS {rss / 2**20:.0f} MiB   target <= 2 %, <= 150 MiB")

        status = [timed([*dw, "status", *common], env) for _ in range(5)]
        print(f"`dockwarden status` with the daemon running ({args.containers // 2} tracked services): median "
              f"{statistics.median(status):.3f} s   target <= 0.35 s with 100 services")
        stats = [(k, float(ms)) for k, ms in PASS_RE.findall(log_path.read_text(errors="replace"))]
        notes = {"full": "every container inspected", "incremental": "the list call, changed ones inspected",
                 "cached": "no list call: the engine's replay vouched for the stream; target <= 50 ms",
                 "refresh": "event-driven"}
        for kind in ("full", "incremental", "cached", "refresh"):
            xs = [ms for k, ms in stats if k == kind]
            if xs:
                print(f"  {kind} passes: {len(xs)}, median {statistics.median(xs):.1f} ms, "
                      f"max {max(xs):.1f} ms   ({notes[kind]})")

        name = f"dwscale-{tag}-0000"
        times = []
        for _ in range(args.crashes):
            pid = api.inspect_container(name)["State"]["Pid"]
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            t1 = wait_running(api, name, pid)
            if t1 is not None:
                times.append(t1 - t0)
            time.sleep(1.5)
        floor = []
        other = f"dwscale-{tag}-0001"  # untracked: the daemon leaves it to us
        for _ in range(args.crashes):
            pid = api.inspect_container(other)["State"]["Pid"]
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            while api.inspect_container(other)["State"]["Running"]:
                time.sleep(0.002)
            api.start(other)
            t1 = wait_running(api, other, pid)
            if t1 is not None:
                floor.append(t1 - t0)
            time.sleep(1.0)
        if times:
            print(f"crash-to-running with {args.containers} containers present: p50 {statistics.median(times):.3f} s, "
                  f"p95 {pct(times, 95):.3f} s over {len(times)}   target p50 <= 0.4 s")
        if floor:
            print(f"  the engine's floor, this script restarting an untracked one itself: p50 "
                  f"{statistics.median(floor):.3f} s, p95 {pct(floor, 95):.3f} s")
        return 0
    finally:
        if daemon is not None:
            stop_daemon(daemon, 30)
        gone = client.containers.list(all=True, filters={"label": f"dockwarden.bench={tag}"})
        # 4 at a time: 16 concurrent force-removes of 1 000 running containers once left
        # Engine 20.10 waiting for ever on exits containerd never reported (kill.go:151).
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda c: c.remove(force=True), gone))
        print(f"removed {len(gone)} containers")


if __name__ == "__main__":
    sys.exit(main())
