"""What every benchmark shares: the test image, the repository root, percentiles
and stopping a daemon. Not a benchmark itself (``make bench`` skips ``bench/_*``)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

#: The busybox image scripts/build-test-image.sh builds (no registry needed).
IMAGE = os.environ.get("DOCKWARDEN_TEST_IMAGE", "dockwarden-test/busybox:latest")
REPO = Path(__file__).resolve().parents[1]


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values`` by nearest rank on the sorted list."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))]


def stop_daemon(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM ``proc`` (a ``dockwarden run``) and wait; SIGKILL after ``timeout`` s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_running(api, name: str, old_pid: int | None, timeout: float = 30) -> float | None:
    """Poll ``docker inspect`` until ``name`` runs with a PID other than ``old_pid``;
    returns the ``time.monotonic()`` it was seen at, or None after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = api.inspect_container(name)["State"]
        if st["Running"] and st["Pid"] and st["Pid"] != old_pid:
            return time.monotonic()
        time.sleep(0.005)
    return None
