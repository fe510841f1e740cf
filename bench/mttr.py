#!/usr/bin/env python3
"""Crash-to-running time (MTTR) with the dockwarden daemon running.

Kills a tracked container's process from the host (SIGKILL to its host PID, not
`docker kill`, so Docker sees a crash) N times and measures the time from the
kill to the container running again, observed by polling the engine. In the
same run it measures the floor: `docker start` of a stopped container via the
API, from the call to running.

The bench policy allows as many restarts as it makes (restart budget above N,
a short stable-reset) so backoff and the circuit breaker, which would rightly
slow a real crash loop, do not enter the figure; the crashes are spaced
``--gap`` seconds apart.

Prints figures; asserts nothing. Targets (issue 2): p50 <= 0.5 s, p95 <= 1 s.

With ``--hammer N`` (issue 10), N client threads request the daemon's HTTP API
as fast as they can (``/api/v1/status``, ``/metrics``, ``/api/v1/events``,
``/api/v1/incidents`` in turn, keep-alive) during every other kill: the run
makes 2 x ``--runs`` kills, alternating quiet and hammered, so both figures are
measured under the same machine load (shared machines drift by 50 % between
runs).

With ``--chain N`` (default 10; issue 9), a chain of three services (c depends on
b, b on a) is killed at once N times, after the single-service kills: the time
until all three run again, against the single service's p50 of the same run
(target: within 2.5x).

Usage: python bench/mttr.py [--runs 20] [--gap 2.5] [--hammer 0] [--chain 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker

from _common import IMAGE, REPO, pct, stop_daemon, wait_running  # noqa: E402


POLICY = """
[backoff]
initial_delay_s = 0.1
max_delay_s = 0.1
stable_reset_s = 1
[restart_budget]
max_restarts = 1000
window_s = 600
[crash_loop]
min_failures = 1000
[guardrails]
stop_timeout_s = 1
"""


class Hammer:
    """N threads requesting the API in a loop until :meth:`stop` (bounded by the run)."""

    PATHS = ("/api/v1/status", "/metrics", "/api/v1/events?limit=100", "/api/v1/incidents")

    def __init__(self, address_file: Path, clients: int):
        import http.client
        import json
        import threading
        from urllib.parse import urlsplit

        deadline = time.monotonic() + 30
        while not address_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        u = urlsplit(json.loads(address_file.read_text())["url"])
        self.count, self.errors, self._stop, self._go = 0, 0, threading.Event(), threading.Event()
        self._busy_s, self._since = 0.0, None

        def run() -> None:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            i = 0
            while not self._stop.is_set():
                if not self._go.wait(0.2):
                    continue
                try:
                    conn.request("GET", self.PATHS[i % len(self.PATHS)])
                    r = conn.getresponse()
                    r.read()
                    self.count += 1
                    self.errors += r.status != 200
                except (OSError, http.client.HTTPException):
                    self.errors += 1
                    conn.close()
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                i += 1

        self.threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def active(self, on: bool) -> None:
        """Start or pause the clients (the time they run is summed for the rate)."""
        if on and not self._go.is_set():
            self._since = time.monotonic()
            self._go.set()
        elif not on and self._go.is_set():
            self._go.clear()
            self._busy_s += time.monotonic() - (self._since or time.monotonic())

    def stop(self) -> tuple[int, int, float]:
        self.active(False)
        self._stop.set()
        for t in self.threads:
            t.join(timeout=30)
        return self.count, self.errors, max(self._busy_s, 1e-9)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--gap", type=float, default=2.5, help="seconds between crashes")
    ap.add_argument("--hammer", type=int, default=0, help="API client threads requesting during the kills")
    ap.add_argument("--chain", type=int, default=10, help="kills of a three-service dependency chain at once")
    args = ap.parse_args()

    client = docker.from_env(timeout=60)
    api = client.api
    tag = uuid.uuid4().hex[:6]
    name, floor_name = f"dwbench-mttr-{tag}", f"dwbench-floor-{tag}"
    labels = {"dockwarden.bench": tag}
    tmp = Path(tempfile.mkdtemp(prefix="dw-mttr-"))
    inv = tmp / "inv" / "hosts" / "bench"
    inv.mkdir(parents=True)
    chain = [f"dwbench-chain{x}-{tag}" for x in "abc"]
    (inv / "services.yaml").write_text(
        f"services:\n  - name: target\n    container: {name}\n"
        f"  - name: chain-a\n    container: {chain[0]}\n"
        f"  - name: chain-b\n    container: {chain[1]}\n    depends_on: [chain-a]\n"
        f"  - name: chain-c\n    container: {chain[2]}\n    depends_on: [chain-b]\n")
    (tmp / "policy.toml").write_text(POLICY)
    daemon = None
    try:
        client.containers.run(IMAGE, ["sleep", "3600"], name=name, detach=True, labels=labels)
        client.containers.create(IMAGE, ["sleep", "3600"], name=floor_name, labels=labels)
        for c in chain:
            client.containers.run(IMAGE, ["sleep", "3600"], name=c, detach=True, labels=labels)

        # Floor: docker start of a stopped container, call to running.
        floor = []
        for _ in range(args.runs):
            t0 = time.monotonic()
            api.start(floor_name)
            t1 = wait_running(api, floor_name, None)
            floor.append(t1 - t0)
            api.kill(floor_name)
            api.wait(floor_name)

        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        log = open(tmp / "daemon.log", "wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "dockwarden", "run", "--inventory", str(tmp / "inv"), "--policy",
             str(tmp / "policy.toml"), "--state-dir", str(tmp / "state"), "--resync", os.environ.get("DW_BENCH_RESYNC", "30"),
             "--listen", "127.0.0.1:0", *(["-v"] if os.environ.get("DW_BENCH_VERBOSE") else [])],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        time.sleep(3)
        hammer = Hammer(tmp / "state" / "api.json", args.hammer) if args.hammer else None
        mttr, failures = [], 0
        hammered: list[float] = []
        for i in range(args.runs * (2 if hammer else 1)):
            if hammer is not None:
                hammer.active(i % 2 == 1)
                time.sleep(0.5)  # let the clients get going (or stop)
            pid = api.inspect_container(name)["State"]["Pid"]
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            t1 = wait_running(api, name, pid)
            if t1 is None:
                failures += 1
                wait_running(api, name, None, 60)
            else:
                (hammered if hammer is not None and i % 2 == 1 else mttr).append(t1 - t0)
            time.sleep(args.gap)

        # A chain of three killed at once: all three running again (b only after a, c after b).
        chained, chain_failures = [], 0
        for _ in range(args.chain):
            pids = [api.inspect_container(c)["State"]["Pid"] for c in chain]
            t0 = time.monotonic()
            for p in pids:
                os.kill(p, signal.SIGKILL)
            ts = [wait_running(api, c, p) for c, p in zip(chain, pids)]
            if None in ts:
                chain_failures += 1
                for c in chain:
                    wait_running(api, c, None, 60)
            else:
                chained.append(max(ts) - t0)
            time.sleep(args.gap)

        floor_quiet: list[float] = []
        floor_hammered: list[float] = []
        if hammer is not None:
            # The floor again, alternating quiet and hammered, with the daemon running
            # (the floor container is untracked): how much the machine itself slows.
            for i in range(args.runs * 2):
                hammer.active(i % 2 == 1)
                time.sleep(0.5)
                t0 = time.monotonic()
                api.start(floor_name)
                t1 = wait_running(api, floor_name, None)
                (floor_hammered if i % 2 else floor_quiet).append(t1 - t0)
                api.kill(floor_name)
                api.wait(floor_name)
            n, errors, secs = hammer.stop()
        print(f"crash-to-running over {len(mttr)} host kills ({failures} not recovered within 30 s):")
        if mttr:
            print(f"  p50 {statistics.median(mttr):.3f} s   p95 {pct(mttr, 95):.3f} s   "
                  f"min {min(mttr):.3f} s   max {max(mttr):.3f} s")
        if hammered:
            print(f"... and over {len(hammered)} kills, alternating with those, while {args.hammer} API clients "
                  f"hammered ({n} requests, {n / secs:.0f}/s while active, {errors} errors):")
            print(f"  p50 {statistics.median(hammered):.3f} s   p95 {pct(hammered, 95):.3f} s   "
                  f"min {min(hammered):.3f} s   max {max(hammered):.3f} s")
        if chained:
            ratio = f"{statistics.median(chained) / statistics.median(mttr):.2f}x the single p50" if mttr else ""
            print(f"a chain of three (c -> b -> a) killed at once, all running again, over {len(chained)} "
                  f"({chain_failures} not recovered within 30 s):")
            print(f"  p50 {statistics.median(chained):.3f} s   p95 {pct(chained, 95):.3f} s   {ratio}   "
                  "target <= 2.5x")
        print(f"floor, `docker start` of a stopped container over {len(floor)} runs:")
        print(f"  p50 {statistics.median(floor):.3f} s   p95 {pct(floor, 95):.3f} s")
        if floor_hammered:
            print(f"floor with the daemon running, quiet / hammered, alternating, {len(floor_quiet)} each:")
            print(f"  p50 {statistics.median(floor_quiet):.3f} s / {statistics.median(floor_hammered):.3f} s   "
                  f"(the machine's own slowdown under the clients' load)")
        print("targets: p50 <= 0.5 s, p95 <= 1 s")
        print(f"daemon log and state: {tmp}")
        return 0
    finally:
        if daemon is not None:
            stop_daemon(daemon, 20)
        for n in (name, floor_name, *chain):
            try:
                api.remove_container(n, force=True)
            except docker.errors.NotFound:
                pass


if __name__ == "__main__":
    sys.exit(main())
