"""Benchmark: how long a storage pass takes on a host with many images and containers,
next to `docker system df -v` in the same run.

Prints figures; asserts nothing (design.md: benchmarks print, tests never assert
timings). Issue 3: "`bench/storage.py` prints how long a storage pass takes with 200
images and 100 containers, next to `docker system df -v`".

Steps:
  (1) make N images cheaply: `docker import` of a tiny tar with one unique file each
      (distinct images, not tags of one), and M running containers (`sleep`, no network);
  (2) time, median of --repeat runs each, in alternation:
      - StorageObserver.collect(): GET /info + GET /system/df + the root dir's filesystem
        (+ btrfs when it applies): the observation of one storage pass;
      - a whole storage pass as the worker does it: collect + store a sample (SQLite) +
        the trend fit + planning the three tiers with their keep set;
      - `docker system df -v` and `docker system df` (the CLI, for reference);
  (3) remove everything it made (by label and tag), also on failure or Ctrl-C.

Usage::

    .venv/bin/python bench/storage.py                      # 200 images, 100 containers
    .venv/bin/python bench/storage.py --images 500 --containers 0 --repeat 3
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import docker.errors

from dockwarden.config import Policy
from dockwarden.model import DesiredState, utcnow
from dockwarden.observe.docker import connect
from dockwarden.observe.storage import StorageObserver
from dockwarden.reconcile.prune_plan import plan_recipe
from dockwarden.reconcile.trends import disk_trend
from dockwarden.storage.monitor import keep_for_report
from dockwarden.storage.samples import SampleStore
from dockwarden.store import Store

IMAGE = "dockwarden-test/busybox:latest"


def tiny_tar(i: int, run: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = f"{run}-{i}-".encode() + os.urandom(4096)
        info = tarfile.TarInfo(f"bench-{i}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_images(client, n: int, run: str) -> None:
    def one(i: int) -> None:
        client.api.import_image_from_data(tiny_tar(i, run), repository=f"dwbench-{run}/img", tag=str(i),
                                          changes=[f"LABEL dockwarden.bench={run}"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(n)))


def make_containers(client, n: int, run: str) -> None:
    def one(i: int) -> None:
        client.containers.run(IMAGE, ["sleep", "3600"], name=f"dwbench-{run}-{i:03d}", detach=True,
                              network_mode="none", labels={"dockwarden.test": "1", "dockwarden.bench": run})

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(n)))


def cleanup(client, run: str) -> tuple[int, int]:
    """Remove this run's containers (by label) and images (by label); returns the counts."""
    ids = [c["Id"] for c in client.api.containers(all=True, filters={"label": f"dockwarden.bench={run}"})]

    def rm_c(cid: str) -> None:
        try:
            client.api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass

    imgs = [i["Id"] for i in client.api.images(filters={"label": f"dockwarden.bench={run}"})]

    def rm_i(iid: str) -> None:
        try:
            client.api.remove_image(iid, force=True)
        except docker.errors.NotFound:
            pass

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(rm_c, ids))
        list(pool.map(rm_i, imgs))
    return len(ids), len(imgs)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    client = connect(None, timeout_s=300)
    run = uuid.uuid4().hex[:8]
    policy = Policy()
    try:
        t0 = time.perf_counter()
        make_images(client, args.images, run)
        t_img = time.perf_counter() - t0
        t0 = time.perf_counter()
        make_containers(client, args.containers, run)
        t_ctr = time.perf_counter() - t0
        observer = StorageObserver(client)
        first = observer.collect(utcnow())
        it, ct = first.image_totals(), first.container_totals()
        print(f"engine: {first.driver}, root {first.root_dir}; made {args.images} images in {t_img:.1f} s and "
              f"{args.containers} running containers in {t_ctr:.1f} s; the engine now has {it.count} images, "
              f"{ct.count} containers")
        with tempfile.TemporaryDirectory(prefix="dwbench-") as tmp:
            db = Path(tmp) / "dockwarden.db"
            store, samples = Store(db), SampleStore(db)
            desired = DesiredState(node="bench")

            def storage_pass() -> None:
                now = utcnow()
                report = observer.collect(now)
                samples.add(report, None)
                fs = report.filesystem
                if fs is not None:
                    disk_trend(samples.samples(fs.path, now - timedelta(days=1)), now=now, policy=policy)
                keep = keep_for_report(report, desired=desired, store=store, policy=policy)
                plan_recipe(report, keep, policy, now=now)

            cli_v = ["docker", "system", "df", "-v"]
            cli = ["docker", "system", "df"]
            times: dict[str, list[float]] = {"collect": [], "pass": [], "df -v": [], "df": []}
            for _ in range(args.repeat):
                times["collect"].append(timed(lambda: observer.collect(utcnow())))
                times["pass"].append(timed(storage_pass))
                times["df -v"].append(timed(lambda: subprocess.run(cli_v, check=True, capture_output=True)))
                times["df"].append(timed(lambda: subprocess.run(cli, check=True, capture_output=True)))
            store.close()
            samples.close()
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"median of {args.repeat} runs each (s):")
        print(f"  storage observation (info + /system/df + filesystem): {med['collect']:.3f}"
              f"   [min {min(times['collect']):.3f}, max {max(times['collect']):.3f}]")
        print(f"  storage pass (observation + sample + trend + 3-tier plan): {med['pass']:.3f}"
              f"   [min {min(times['pass']):.3f}, max {max(times['pass']):.3f}]")
        print(f"  docker system df -v: {med['df -v']:.3f}   [min {min(times['df -v']):.3f}, "
              f"max {max(times['df -v']):.3f}]")
        print(f"  docker system df:    {med['df']:.3f}")
        print(f"  storage pass / docker system df -v: {med['pass'] / med['df -v']:.2f}x")
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        nc, ni = cleanup(client, run)
        print(f"cleanup: removed {nc} containers and {ni} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
