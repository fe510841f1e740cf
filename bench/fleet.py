#!/usr/bin/env python3
"""One dockwarden supervising a fleet (issue 11): 10 engines x 20 containers.

Private engines, each a dockerd in its own network namespace
(tests/support/fleet.py): all reached by their unix sockets but one, reached over
tcp:// with TLS (certificates generated here); one `dockwarden run --node all`.
Measured, in this order:

1. Idle: the daemon's CPU (% of one core, its own process and children) and RSS
   over ``--idle`` seconds (default 60) once every node is ready.
2. Offline detection: node n00's dockerd frozen (SIGSTOP, so its connections hang),
   then the tcp node's dockerd killed (SIGKILL): the time from that moment to the
   node's ``node_offline`` event, against ``offline_after_s + heartbeat_s``.
3. Crash-to-running on the other nodes while n00 is frozen: a tracked container's
   process SIGKILLed from the host, time until the engine shows it running again
   (polled every 10 ms); ``--crashes`` runs spread over the nodes; the same series
   is measured before the freeze as the baseline.

Prints figures; asserts nothing. Targets (issue 11): p50 <= 0.5 s while another
node is frozen; detection <= offline_after_s + heartbeat_s; idle <= 5 % of a core
and <= 200 MiB RSS. Cleans up everything (engines, namespaces, veth, daemon).
Needs root, nsenter, ip, and the test image (scripts/build-test-image.sh).

Usage: python bench/fleet.py [--engines 10] [--containers 20] [--idle 60]
                             [--crashes 30] [--offline-after 10] [--heartbeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psutil

from _common import IMAGE, REPO, pct, stop_daemon  # noqa: E402

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.support.fleet import Fleet, crash_to_running  # noqa: E402


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
[spikes]
host_cpu_percent = 100
host_memory_percent = 100
"""


def events(state: Path) -> list[dict]:
    try:
        lines = (state / "events.jsonl").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def wait_event(state: Path, pred, timeout: float, after: int = 0) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in events(state)[after:]:
            if pred(e):
                return e
        time.sleep(0.05)
    return None


def parse_ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def crash_series(fleet: Fleet, nodes: list[str], containers: int, crashes: int, cname) -> tuple[list[float], int]:
    """``crashes`` crash-to-running measurements spread over ``nodes`` (a fixed
    pseudo-random choice of container), 0.3 s apart; (seconds, not healed in 30 s)."""
    rnd = random.Random(11)
    out, failed = [], 0
    for k in range(crashes):
        n = nodes[k % len(nodes)]
        x = crash_to_running(fleet.nodes[n].admin(), cname(n, rnd.randrange(containers)), timeout=30)
        if x == float("inf"):
            failed += 1
        else:
            out.append(x)
        time.sleep(0.3)
    return out, failed


def report(what: str, values: list[float], failed: int) -> None:
    if values:
        print(f"{what}, {len(values)} crashes ({failed} not healed in 30 s): p50 {statistics.median(values):.3f} s  "
              f"p95 {pct(values, 95):.3f} s  max {max(values):.3f} s  [target p50 <= 0.5 s]")
    else:
        print(f"{what}: no crash healed ({failed} tried)")


def status_nodes(cmd: list[str], env: dict) -> set[str]:
    """Nodes listed by ``dockwarden status --json`` (several: ``{"nodes": [...]}``)."""
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    try:
        doc = json.loads(r.stdout)
    except json.JSONDecodeError:
        return set()
    return {n.get("node") for n in doc.get("nodes", [])} if "nodes" in doc else {doc.get("node")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", type=int, default=10)
    ap.add_argument("--containers", type=int, default=20, help="per engine")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    ap.add_argument("--crashes", type=int, default=30)
    ap.add_argument("--offline-after", type=float, default=10.0, help="node.yaml offline_after_s")
    ap.add_argument("--heartbeat", type=float, default=2.0, help="node.yaml heartbeat_s")
    ap.add_argument("--keep", action="store_true", help="keep the state/log dir (printed)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="dw-fleet-"))
    fleet = Fleet(tmp / "fleet", prefix=f"dwb-{uuid.uuid4().hex[:5]}")
    daemon: subprocess.Popen | None = None
    log = None
    names = [f"n{i:02d}" for i in range(args.engines)]
    tcp_node = names[-1]
    frozen_node = names[0]
    tag = uuid.uuid4().hex[:5]
    cname = lambda node, i: f"dwb-{tag}-{node}-c{i:02d}"  # noqa: E731
    try:
        t0 = time.monotonic()
        for n in names:
            (fleet.add_tcp_tls if n == tcp_node else fleet.add_unix)(n, IMAGE)
        for n in names:
            client = fleet.nodes[n].admin()
            for i in range(args.containers):
                client.containers.run(IMAGE, ["sleep", "3600"], name=cname(n, i), detach=True,
                                      network_mode="none", stop_signal="SIGKILL", labels={"dockwarden.bench": tag})
        print(f"{args.engines} engines ({tcp_node} over tcp+TLS, the rest by unix sockets) x {args.containers} "
              f"containers ready in {time.monotonic() - t0:.1f} s")

        services = {n: [{"name": f"c{i:02d}", "container": cname(n, i)} for i in range(args.containers)]
                    for n in names}
        settings = {n: {"offline_after_s": args.offline_after, "heartbeat_s": args.heartbeat} for n in names}
        inv = fleet.write_inventory(tmp / "inv", services, settings)
        (tmp / "policy.toml").write_text(POLICY)
        state = tmp / "state"
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"), **fleet.env())
        base = [sys.executable, "-m", "dockwarden"]
        common = ["--state-dir", str(state), "--inventory", str(inv), "--policy", str(tmp / "policy.toml")]
        log = open(tmp / "daemon.log", "wb")
        t_start = time.monotonic()
        daemon = subprocess.Popen([*base, "run", *common, "--node", "all", "--resync", "30"], stdout=log,
                                  stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while True:
            listed = status_nodes([*base, "status", "--json", *common], env)
            if set(names) <= listed:
                break
            if time.monotonic() > deadline or daemon.poll() is not None:
                print(f"the daemon did not list every node within 120 s (listed: {sorted(listed)}); "
                      f"log {tmp / 'daemon.log'}")
                return 1
            time.sleep(1)
        print(f"daemon ready on every node {time.monotonic() - t_start:.1f} s after start")

        # 1. Idle.
        time.sleep(10)
        proc = psutil.Process(daemon.pid)

        def cpu_s() -> float:
            total = proc.cpu_times().user + proc.cpu_times().system
            for ch in proc.children(recursive=True):
                try:
                    ct = ch.cpu_times()
                    total += ct.user + ct.system
                except psutil.NoSuchProcess:
                    pass
            return total

        c0, w0 = cpu_s(), time.monotonic()
        rss = []
        while time.monotonic() - w0 < args.idle:
            rss.append(proc.memory_info().rss)
            time.sleep(1)
        idle_cpu = (cpu_s() - c0) / (time.monotonic() - w0) * 100
        print(f"idle over {args.idle:.0f} s: CPU {idle_cpu:.2f} % of one core; RSS max {max(rss) / 2**20:.1f} MiB "
              f"(mean {statistics.mean(rss) / 2**20:.1f} MiB)  [targets <= 5 %, <= 200 MiB]")

        # Baseline crash-to-running, nothing frozen.
        others = [n for n in names if n != frozen_node]
        baseline, failed = crash_series(fleet, others, args.containers, args.crashes, cname)
        report("crash-to-running, every node up (baseline)", baseline, failed)

        # 2. Offline detection: frozen, then killed.
        bound = args.offline_after + args.heartbeat
        n_ev = len(events(state))
        lost = datetime.now(timezone.utc)
        fleet.nodes[frozen_node].freeze()
        off = wait_event(state, lambda e: e["type"] == "node_offline" and e.get("node") == frozen_node,
                         bound + 30, n_ev)
        if off:
            print(f"{frozen_node} frozen: node_offline after {(parse_ts(off['ts']) - lost).total_seconds():.2f} s "
                  f"[target <= offline_after_s + heartbeat_s = {bound:g} s]")
        else:
            print(f"{frozen_node} frozen: no node_offline within {bound + 30:g} s")

        # 3. Crash-to-running on the other nodes while n00 is frozen (the same crashes as
        # the baseline, measured before the freeze).
        during, failed = crash_series(fleet, others, args.containers, args.crashes, cname)
        report(f"crash-to-running on the other nodes while {frozen_node} is frozen", during, failed)
        print(f"  (baseline before the freeze: p50 {statistics.median(baseline):.3f} s, "
              f"p95 {pct(baseline, 95):.3f} s)" if baseline else "")

        n_ev = len(events(state))
        lost = datetime.now(timezone.utc)
        fleet.nodes[tcp_node].kill()
        off = wait_event(state, lambda e: e["type"] == "node_offline" and e.get("node") == tcp_node,
                         bound + 30, n_ev)
        if off:
            print(f"{tcp_node} (tcp+TLS) killed: node_offline after "
                  f"{(parse_ts(off['ts']) - lost).total_seconds():.2f} s [target <= {bound:g} s]")
        else:
            print(f"{tcp_node} killed: no node_offline within {bound + 30:g} s")
        fleet.nodes[frozen_node].thaw()
        fleet.nodes[tcp_node].start()
        back = [wait_event(state, lambda e, n=n: e["type"] == "node_online" and e.get("node") == n, 60, n_ev)
                for n in (frozen_node, tcp_node)]
        print("node_online again: " + ", ".join(f"{n} {'yes' if b else 'no'}"
                                               for n, b in zip((frozen_node, tcp_node), back)))
        print(f"rss at the end {proc.memory_info().rss / 2**20:.1f} MiB")
        return 0
    finally:
        if daemon is not None:
            stop_daemon(daemon, 30)
        if log is not None:
            log.close()
        errors = fleet.teardown()
        left = fleet.leftovers()
        if errors or left:
            print(f"cleanup: errors {errors}, left {left}")
        if args.keep:
            print(f"state and daemon log kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
