#!/usr/bin/env python3
"""Latency of select+record (choose a container, record the dispatch) with
1 000 pool rows and 10 000 dispatch-log rows, ours against the original's way.

Seeds a temporary ``dockwarden.db`` (no containers needed): 1 000 containers
(900 healthy, 40 unhealthy, 30 rate-limited, 30 starting) and 10 000 dispatches,
100 of them open (100 busy containers). Then, in the same run:

- **ours**: ``PoolDB.select_and_record``, one ``BEGIN IMMEDIATE`` transaction
  on an open connection (what the daemon and ``Pool.dispatch`` do);
- **the original's way** (aidevops PR 2184, seed 004): one ``sqlite3`` CLI
  process per query, as its bash ``db`` helper ran them (``sqlite3 -cmd
  ".timeout 5000" DB SQL``): the SELECT, then the INSERT into the dispatch log,
  then the UPDATE of the pool row. Same SQL as ours, values passed with
  ``.parameter set``; three processes and no transaction around them;
- for context, ``dockwarden pool select`` as a command: one Python process
  (interpreter start-up included).

Each timed select is followed by an untimed completion, so the pool stays in
the same shape. Prints figures; asserts nothing. Target (issue 5): p50 <= 2 ms.

Needs the ``sqlite3`` command (Debian package ``sqlite3``; scripts/ensure-docker.sh
installs it). Usage: python bench/pool.py [--runs 2000] [--cli-runs 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _common import REPO, pct

sys.path.insert(0, str(REPO / "src"))

from dockwarden.model import rfc3339  # noqa: E402
from dockwarden.pool.db import PoolDB  # noqa: E402

POOL_ROWS, LOG_ROWS, OPEN = 1000, 10_000, 100
SELECT_SQL = (
    "SELECT p.id FROM container_pool AS p WHERE p.status IN ('healthy', 'rate_limited') "
    "AND (p.rate_limit_until IS NULL OR p.rate_limit_until <= :now) AND (:host IS NULL OR p.host = :host) "
    "AND NOT EXISTS (SELECT 1 FROM container_dispatch_log AS d WHERE d.container_id = p.id "
    "AND d.completed_at IS NULL) ORDER BY p.last_dispatch_at, p.name, p.id LIMIT 1;"
)
INSERT_SQL = ("INSERT INTO container_dispatch_log (container_id, task_id, command, dispatched_at) "
              "VALUES (:cid, NULL, NULL, :now); SELECT last_insert_rowid();")
UPDATE_SQL = ("UPDATE container_pool SET last_dispatch_at = :now, dispatch_count = dispatch_count + 1, "
              "status = 'healthy', rate_limit_until = NULL, updated_at = :now WHERE id = :cid;")


def seed(path: Path) -> None:
    """1 000 pool rows and 10 000 dispatches (100 open), in one transaction."""
    PoolDB(path).close()  # the schema, by the real migrations
    t0 = datetime.now(timezone.utc) - timedelta(days=1)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    for i in range(POOL_ROWS):
        status = ("unhealthy" if i % 25 == 0 else "starting" if i % 33 == 1 else
                  "rate_limited" if i % 33 == 2 else "healthy")
        until = rfc3339(t0 + timedelta(days=2)) if status == "rate_limited" else None
        db.execute("INSERT INTO container_pool (name, image, status, docker_id, host, last_dispatch_at, "
                   "dispatch_count, rate_limit_until, created_at, updated_at) VALUES (?, 'img', ?, ?, 'n1', ?, 10, "
                   "?, ?, ?)", (f"pool-{i + 1}", status, f"{i:064x}", rfc3339(t0 + timedelta(seconds=i % 600)),
                               until, rfc3339(t0), rfc3339(t0)))
    for j in range(LOG_ROWS):
        cid = j % POOL_ROWS + 1
        at = rfc3339(t0 + timedelta(seconds=j))
        done = None if j >= LOG_ROWS - OPEN else rfc3339(t0 + timedelta(seconds=j + 5))
        db.execute("INSERT INTO container_dispatch_log (container_id, task_id, dispatched_at, completed_at, outcome, "
                   "exit_code) VALUES (?, ?, ?, ?, ?, ?)", (cid, f"t{j}", at, done, "ok" if done else None,
                                                           0 if done else None))
    db.execute("COMMIT")
    db.close()


def run_sqlite3(path: Path, sql: str, params: dict[str, str | int]) -> str:
    """One ``sqlite3`` process running one query, parameters bound with ``.parameter set``."""
    lines = [f".parameter set {k} {v if isinstance(v, int) else repr(v)}" for k, v in params.items()]
    r = subprocess.run(["sqlite3", "-cmd", ".timeout 5000", str(path)], input="\n".join([*lines, sql]) + "\n",
                       capture_output=True, text=True, check=True)
    return r.stdout.strip()


def complete(db: PoolDB, dispatch_id: int) -> None:
    db.complete(dispatch_id, outcome="ok", exit_code=0, error=None, cooldown_s=300, now=datetime.now(timezone.utc))


def bench_ours(db: PoolDB, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        t = time.perf_counter()
        _, d = db.select_and_record(host=None, task_id=f"b{i}", command=None, now=datetime.now(timezone.utc))
        times.append(time.perf_counter() - t)
        complete(db, d.id)
    return times


def bench_original(path: Path, db: PoolDB, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        now = rfc3339(datetime.now(timezone.utc))
        t = time.perf_counter()
        cid = int(run_sqlite3(path, SELECT_SQL, {":now": now, ":host": "NULL"}))
        did = int(run_sqlite3(path, INSERT_SQL, {":cid": cid, ":now": now}))
        run_sqlite3(path, UPDATE_SQL, {":cid": cid, ":now": now})
        times.append(time.perf_counter() - t)
        complete(db, did)
    return times


def bench_cli(state: Path, db: PoolDB, runs: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    argv = [sys.executable, "-m", "dockwarden", "pool", "select", "--json", "--state-dir", str(state), "--node", "n1"]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
        times.append(time.perf_counter() - t)
        import json

        complete(db, json.loads(r.stdout)["dispatch"]["id"])
    return times


def show(label: str, times: list[float]) -> None:
    ms = [t * 1000 for t in times]
    print(f"  {label:<44} n={len(ms):<5} p50 {pct(ms, 50):8.3f} ms   p99 {pct(ms, 99):8.3f} ms   "
          f"mean {sum(ms) / len(ms):8.3f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2000, help="select+record calls of ours (default 2000)")
    ap.add_argument("--cli-runs", type=int, default=200, help="select+record the original's way (default 200)")
    ap.add_argument("--command-runs", type=int, default=20, help="`dockwarden pool select` processes (default 20)")
    args = ap.parse_args()
    if shutil.which("sqlite3") is None:
        sys.exit("bench/pool.py: the sqlite3 command is missing (apt-get install sqlite3)")
    tmp = Path(tempfile.mkdtemp(prefix="dockwarden-bench-pool-"))
    try:
        path = tmp / "dockwarden.db"
        seed(path)
        db = PoolDB(path)
        st = db.stats(datetime.now(timezone.utc))
        cli_version = subprocess.run(["sqlite3", "--version"], capture_output=True, text=True).stdout.split()[0]
        print(f"pool select+record: {st['live']} live pool rows ({st['available']} available, {st['busy']} busy), "
              f"{st['dispatches']} dispatch-log rows; SQLite {sqlite3.sqlite_version} (Python), "
              f"sqlite3 CLI {cli_version}; WAL")
        bench_ours(db, 50)  # warm-up
        show("ours: Pool select+record, one transaction", bench_ours(db, args.runs))
        show("original's way: 3 sqlite3 processes", bench_original(path, db, args.cli_runs))
        show("`dockwarden pool select` (a Python process)", bench_cli(tmp, db, args.command_runs))
        print("  target (issue 5): ours p50 <= 2 ms")
        db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
