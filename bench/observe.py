"""Benchmark: how long does observing N containers take, and what does the daemon cost?

Prints figures; asserts nothing about timings (design.md: benchmarks print, tests
never assert timings). Targets (issue): a full observation of 100 containers in
<= 1 s and >= 5x faster than ``docker ps -a`` + ``docker stats --no-stream``.

Steps:
  (a) ``ContainerObserver.observe(with_stats=True)`` after a warm-up call (so CPU %
      exists): median of ``--repeat`` runs; also the API stats reader for reference.
  (b) the CLI baseline: ``docker ps -a`` + ``docker stats --no-stream``.
  (c) with ``--daemon-idle S`` (default 60, 0 skips): ``dockwarden run`` over an
      inventory of the N containers; RSS and CPU % sampled over S seconds.
  (d) with ``--event-samples K`` (default 10, 0 skips): ``docker kill`` to the
      ``die`` event on an EventStream's queue, K times.

Usage::

    .venv/bin/python bench/observe.py --containers 100
    .venv/bin/python bench/observe.py --containers 200 --daemon-idle 0

All containers are labelled ``dockwarden.test=1`` and ``dockwarden.bench=<run>``
and removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import docker.errors
import psutil
import yaml

from dockwarden import model
from dockwarden.observe.docker import ContainerObserver, connect
from dockwarden.observe.events import EngineLost, EventStream


def _median_time(fn, repeat: int, pause_s: float = 0.0) -> tuple[float, list[float]]:
    times = []
    for i in range(repeat):
        if i and pause_s:
            time.sleep(pause_s)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def create_containers(client: docker.DockerClient, image: str, n: int, run: str) -> list[str]:
    """Create and start n sleeping containers concurrently; return their names."""
    names = [f"dwbench-{run}-{i:03d}" for i in range(n)]

    def one(name: str) -> None:
        client.containers.run(image, ["sleep", "3600"], name=name, detach=True,
                              labels={"dockwarden.test": "1", "dockwarden.bench": run})

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, names))
    return names


def remove_containers(client: docker.DockerClient, run: str) -> int:
    """Remove every container of this run (by label); return how many."""
    ids = [c["Id"] for c in client.api.containers(all=True, filters={"label": f"dockwarden.bench={run}"})]

    def rm(cid: str) -> None:
        try:
            client.api.remove_container(cid, force=True, v=True)
        except docker.errors.NotFound:
            pass

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(rm, ids))
    return len(ids)


def bench_observe(client: docker.DockerClient, names: list[str], repeat: int, workers: int) -> float:
    """(a): median seconds of a full observation with stats."""
    ours = set(names)
    for mode, reps in (("auto", repeat), ("api", max(1, min(repeat, 3)))):
        obs = ContainerObserver(client, workers=workers, stats=mode)
        try:
            obs.observe(with_stats=True)  # warm-up: first CPU sample
            time.sleep(1.0)
            last: list[model.ContainerState] = []

            def run() -> None:
                last[:] = obs.observe(with_stats=True)

            med, times = _median_time(run, reps, pause_s=0.5)
            mine = [c for c in last if c.name in ours]
            with_cpu = sum(1 for c in mine if c.cpu_percent is not None)
            print(f"(a) observe(with_stats=True), stats={mode} ({obs.stats_source}), workers={workers}: "
                  f"median {med:.3f} s over {reps} runs ({', '.join(f'{t:.3f}' for t in times)}); "
                  f"{len(last)} containers seen, {len(mine)}/{len(names)} of ours, {with_cpu} with CPU %")
            if mode == "auto":
                result = med
        finally:
            obs.close()
    return result


def bench_cli(repeat: int) -> float:
    """(b): median seconds of `docker ps -a` + `docker stats --no-stream`."""

    def run() -> None:
        subprocess.run(["docker", "ps", "-a"], check=True, capture_output=True)
        subprocess.run(["docker", "stats", "--no-stream"], check=True, capture_output=True)

    med, times = _median_time(run, repeat)
    print(f"(b) docker ps -a + docker stats --no-stream: median {med:.3f} s over {repeat} runs "
          f"({', '.join(f'{t:.3f}' for t in times)})")
    return med


def bench_daemon(names: list[str], idle_s: float) -> None:
    """(c): RSS and CPU % of `dockwarden run` watching the containers."""
    with tempfile.TemporaryDirectory(prefix="dwbench-") as d:
        inv = Path(d) / "inventory"
        (inv / "hosts" / "bench").mkdir(parents=True)
        (inv / "hosts" / "bench" / "services.yaml").write_text(
            yaml.safe_dump({"services": [{"name": n} for n in names]}))
        state = Path(d) / "state"
        state.mkdir()
        log_path = Path(d) / "daemon.log"
        cmd = [sys.executable, "-m", "dockwarden", "run", "--inventory", str(inv),
               "--state-dir", str(state), "--resync", "30"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(10)
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                print(f"(c) dockwarden run exited with {proc.returncode} within 10 s; skipped. Output:\n{tail}")
                return
            p = psutil.Process(proc.pid)
            p.cpu_percent(None)
            rss = []
            t_end = time.monotonic() + idle_s
            while time.monotonic() < t_end and proc.poll() is None:
                rss.append(p.memory_info().rss)
                time.sleep(1.0)
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                print(f"(c) dockwarden run exited with {proc.returncode} during sampling. Output:\n{tail}")
                return
            cpu = p.cpu_percent(None)
            world = state / "world.json"
            print(f"(c) dockwarden run over {len(names)} services, idle {idle_s:g} s after 10 s warm-up: "
                  f"CPU {cpu:.2f} % of one core (average); RSS median {statistics.median(rss) / 2**20:.1f} MiB, "
                  f"max {max(rss) / 2**20:.1f} MiB; world.json {'written' if world.exists() else 'MISSING'}")
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def bench_events(client: docker.DockerClient, names: list[str], samples: int) -> None:
    """(d): `docker kill` (start of the API call) to the `die` event on the queue.

    The kill call runs in its own thread: on Engine 20.10 it returns only ~90 ms
    after the signal, later than the die event, so waiting for it first would
    measure the call, not the event.
    """
    q: queue.Queue = queue.Queue()
    stream = EventStream(client, q)
    stream.start()
    lat_ms: list[float] = []
    stamp_ms: list[float] = []
    call_ms: list[float] = []
    try:
        for name in names[:samples]:
            cid = client.api.inspect_container(name)["Id"]
            returned: list[float] = []
            wall0 = time.time()
            t0 = time.perf_counter()
            killer = threading.Thread(target=lambda: (client.api.kill(cid),
                                                      returned.append(time.perf_counter())))
            killer.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    item = q.get(timeout=0.5)
                except queue.Empty:
                    continue
                if isinstance(item, EngineLost):
                    print(f"(d) engine lost: {item.error}")
                    return
                if item.container_id == cid and item.action == "die":
                    lat_ms.append((time.perf_counter() - t0) * 1000)
                    stamp_ms.append((item.time.timestamp() - wall0) * 1000)
                    break
            killer.join()
            if returned:
                call_ms.append((returned[0] - t0) * 1000)
    finally:
        stream.close()
    if lat_ms:
        print(f"(d) docker kill -> die event on the queue: median {statistics.median(lat_ms):.1f} ms, "
              f"min {min(lat_ms):.1f}, max {max(lat_ms):.1f} over {len(lat_ms)} kills "
              f"(engine's own die timestamp: median {statistics.median(stamp_ms):.1f} ms after the kill; "
              f"the kill API call returned after {statistics.median(call_ms):.1f} ms)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--containers", type=int, default=100, help="containers to create (default 100)")
    ap.add_argument("--image", default="dockwarden-test/busybox:latest")
    ap.add_argument("--repeat", type=int, default=5, help="timed observe runs (default 5)")
    ap.add_argument("--cli-repeat", type=int, default=3, help="timed CLI baseline runs (default 3)")
    ap.add_argument("--workers", type=int, default=32, help="inspect workers (default 32)")
    ap.add_argument("--daemon-idle", type=float, default=60, help="seconds to sample `dockwarden run`; 0 skips")
    ap.add_argument("--event-samples", type=int, default=10, help="kills to time; 0 skips")
    args = ap.parse_args(argv)

    client = connect(max_pool_size=64)
    info = client.info()
    print(f"engine {info.get('ServerVersion')} ({info.get('Driver')}, cgroup v{info.get('CgroupVersion')}, "
          f"{info.get('NCPU')} CPUs), {info.get('Containers')} containers before the bench")
    run = uuid.uuid4().hex[:8]
    try:
        t0 = time.perf_counter()
        names = create_containers(client, args.image, args.containers, run)
        print(f"created and started {len(names)} containers in {time.perf_counter() - t0:.1f} s")
        ours = bench_observe(client, names, args.repeat, args.workers)
        cli = bench_cli(args.cli_repeat)
        print(f"=> observe {ours:.3f} s vs CLI {cli:.3f} s: {cli / ours:.1f}x faster "
              f"(targets: <= 1 s, >= 5x)")
        if args.daemon_idle > 0:
            bench_daemon(names, args.daemon_idle)
        if args.event_samples > 0:
            bench_events(client, names, args.event_samples)
    finally:
        n = remove_containers(client, run)
        print(f"removed {n} bench containers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
