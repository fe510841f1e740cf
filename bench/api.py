#!/usr/bin/env python3
"""The HTTP API's costs (issue 10), with N tracked services on the real engine.

Prints figures; asserts nothing (timings are never asserted in tests). Targets:
``GET /api/v1/status`` p50 <= 5 ms and ``/metrics`` <= 20 ms with 100 services;
SSE delivery <= 50 ms after the event is recorded; the API adds <= 10 MiB RSS
and no measurable idle CPU. (Crash-to-running while a client hammers the API:
``bench/mttr.py --hammer 4``.)

Steps:
  1. N sleeping containers, an inventory tracking them all.
  2. ``dockwarden run --listen none``: RSS and CPU over ``--idle`` seconds.
  3. ``dockwarden run --listen 127.0.0.1:0``: RSS and CPU over ``--idle`` seconds,
     before any request.
  4. ``GET /api/v1/status`` and ``GET /metrics``, ``--requests`` each, one
     keep-alive connection at 15 requests/s (below the API's pacing):
     p50/p95/max; then 400 back-to-back requests show the pacing.
  5. SSE: a stream open; ``--events`` pause/resume writes each record a
     ``guard_changed`` event; delivery = receipt time minus the event's
     recorded ``ts`` (same clock), p50/p95/max.
  6. RSS after the traffic.

Usage: .venv/bin/python bench/api.py [--services 100] [--idle 30] [--requests 300] [--events 30]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import docker
import docker.errors
import psutil
import yaml

from _common import IMAGE, REPO, pct, stop_daemon  # noqa: E402

#: The bench's clients stay below the API's pacing (20 requests/s sustained,
#: app.py), so the figures are serving times; a back-to-back run shows the pacing.
RATE_PER_S = 15.0


def ms(values: list[float]) -> str:
    return (f"p50 {statistics.median(values) * 1000:.2f} ms   p95 {pct(values, 95) * 1000:.2f} ms   "
            f"max {max(values) * 1000:.2f} ms   (n={len(values)})")


def start_daemon(tmp: Path, name: str, listen: str) -> tuple[subprocess.Popen, Path]:
    state = tmp / f"state-{name}"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    log = open(tmp / f"{name}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "dockwarden", "run", "--inventory", str(tmp / "inv"),
                             "--state-dir", str(state), "--resync", "30", "--listen", listen],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        p = state / "events.jsonl"
        if p.exists() and '"daemon_ready"' in p.read_text():
            return proc, state
        time.sleep(0.2)
    raise RuntimeError(f"{name}: no daemon_ready within 60 s; see {tmp / (name + '.log')}")


def idle_cost(proc: subprocess.Popen, seconds: float) -> tuple[float, float]:
    """(RSS MiB at the end, CPU % of one core over the window)."""
    p = psutil.Process(proc.pid)
    p.cpu_percent(None)
    time.sleep(seconds)
    return p.memory_info().rss / 2**20, p.cpu_percent(None)


def timed_gets(url: str, path: str, n: int, rate_per_s: float | None = RATE_PER_S) -> list[float]:
    """n GETs on one keep-alive connection, at most ``rate_per_s`` (None: back to back)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        out.append(time.perf_counter() - t0)
        assert r.status == 200 and body, (path, r.status)
        if rate_per_s:
            time.sleep(max(0.0, 1 / rate_per_s - (time.perf_counter() - t0)))
    conn.close()
    return out


def cold_metrics(url: str, token: str, service: str, n: int) -> list[float]:
    """Scrapes that each follow a recorded event (pause/resume), so the text is rendered afresh."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    out = []
    for i in range(n):
        conn.request("POST", f"/api/v1/services/{service}/{'pause' if i % 2 == 0 else 'resume'}",
                     headers={"Authorization": f"Bearer {token}"})
        conn.getresponse().read()
        t0 = time.perf_counter()
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        r.read()
        out.append(time.perf_counter() - t0)
        time.sleep(2 / RATE_PER_S)  # two requests per round, below the API's pacing
    conn.close()
    return out


def sse_delivery(url: str, token: str, service: str, n: int) -> list[float]:
    u = urlsplit(url)
    got: list[tuple[float, dict]] = []
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=None)
    conn.request("GET", "/api/v1/events/stream?type=guard_changed", headers={"Accept": "text/event-stream"})
    resp = conn.getresponse()

    def read() -> None:
        data = ""
        for raw in resp:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data:"):
                data = line[5:].strip()
            elif line == "" and data:
                got.append((time.time(), json.loads(data)))
                data = ""

    t = threading.Thread(target=read, daemon=True)
    t.start()
    time.sleep(0.5)
    w = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    for i in range(n):
        w.request("POST", f"/api/v1/services/{service}/{'pause' if i % 2 == 0 else 'resume'}",
                  headers={"Authorization": f"Bearer {token}"})
        w.getresponse().read()
        time.sleep(0.1)
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    w.close()
    if conn.sock is not None:
        conn.sock.close()
    return [rx - datetime.fromisoformat(ev["ts"].replace("Z", "+00:00")).timestamp() for rx, ev in got]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle sampling per daemon")
    ap.add_argument("--requests", type=int, default=150)
    ap.add_argument("--events", type=int, default=30)
    args = ap.parse_args()

    client = docker.from_env(timeout=120)
    run = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix="dw-api-bench-"))
    names = [f"dwbench-api-{run}-{i:03d}" for i in range(args.services)]
    inv = tmp / "inv" / "hosts" / "bench"
    inv.mkdir(parents=True)
    (inv / "services.yaml").write_text(yaml.safe_dump({"services": [{"name": f"svc-{n[-3:]}", "container": n} for n in names]}))
    procs: list[subprocess.Popen] = []
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda n: client.containers.run(IMAGE, ["sleep", "3600"], name=n, detach=True,
                                                          labels={"dockwarden.bench": run}), names))
        print(f"{args.services} tracked services, engine {client.version()['Version']}, {os.cpu_count()} cores")

        base, _ = start_daemon(tmp, "none", "none")
        procs.append(base)
        time.sleep(5)  # let start-up settle
        rss0, cpu0 = idle_cost(base, args.idle)
        stop_daemon(base)
        procs.remove(base)

        withapi, state = start_daemon(tmp, "api", "127.0.0.1:0")
        procs.append(withapi)
        url = json.loads((state / "api.json").read_text())["url"]
        token = (state / "api-token").read_text().strip()
        time.sleep(5)
        rss1, cpu1 = idle_cost(withapi, args.idle)
        print(f"idle over {args.idle:g} s (resync 30 s), daemon without the API: RSS {rss0:.1f} MiB, CPU {cpu0:.2f} %")
        print(f"idle over {args.idle:g} s (resync 30 s), daemon with the API:    RSS {rss1:.1f} MiB, CPU {cpu1:.2f} %")
        print(f"  the API adds {rss1 - rss0:+.1f} MiB RSS and {cpu1 - cpu0:+.2f} % CPU idle "
              "(targets: <= 10 MiB, no measurable CPU)")

        timed_gets(url, "/api/v1/status", 20)  # warm-up
        st = timed_gets(url, "/api/v1/status", args.requests)
        doc_len = len(json.dumps(json.loads(http_get(url, "/api/v1/status"))))
        print(f"GET /api/v1/status ({args.services} services, {doc_len / 1024:.0f} KiB): {ms(st)}   target p50 <= 5 ms")
        timed_gets(url, "/metrics", 10)
        me = timed_gets(url, "/metrics", args.requests)
        print(f"GET /metrics ({args.services} services), repeated scrapes (text cached until something changes): "
              f"{ms(me)}")
        cold = cold_metrics(url, token, "svc-001", 50)
        print(f"GET /metrics ({args.services} services), each after a new event (rendered afresh): {ms(cold)}   "
              "target <= 20 ms")
        burst = timed_gets(url, "/api/v1/status", 400, rate_per_s=None)
        print(f"GET /api/v1/status back to back, 400 requests (the API paces clients to 20/s after a burst of "
              f"100): {sum(burst):.1f} s in all, {400 / sum(burst):.0f}/s")
        sse = sse_delivery(url, token, "svc-000", args.events)
        print(f"SSE delivery after the event is recorded: {ms(sse) if sse else 'no events received'}   "
              "target <= 50 ms")
        rss2 = psutil.Process(withapi.pid).memory_info().rss / 2**20
        print(f"RSS after the traffic: {rss2:.1f} MiB ({rss2 - rss0:+.1f} MiB over the daemon without the API)")
        return 0
    finally:
        for p in procs:
            stop_daemon(p)
        for c in client.api.containers(all=True, filters={"label": f"dockwarden.bench={run}"}):
            try:
                client.api.remove_container(c["Id"], force=True)
            except docker.errors.NotFound:
                pass


def http_get(url: str, path: str) -> bytes:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    return body


if __name__ == "__main__":
    sys.exit(main())
