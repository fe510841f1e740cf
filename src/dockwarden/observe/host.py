"""Host resources: CPU, load, RAM, swap, disks (psutil).

The figures the disinto supervisor's preflight collects (field notes: ``free -m``,
``df`` of ``/``, ``/proc/loadavg``), read through psutil without blocking.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import psutil

from dockwarden import model

#: A CPU sample taken sooner than this after the previous one is too coarse to
#: mean anything (the kernel counts CPU time in 10 ms ticks): cpu_percent is
#: None and the previous sample is kept. Seconds.
MIN_CPU_INTERVAL_S = 0.1


def _busy_total(t: object) -> tuple[float, float]:
    """(busy, total) CPU seconds from a psutil ``cpu_times()`` record.

    Same accounting as ``psutil.cpu_percent``: on Linux ``guest`` and
    ``guest_nice`` are already inside ``user``/``nice`` and are subtracted from
    the total; idle time is ``idle + iowait``.
    """
    fields = t._asdict()  # type: ignore[attr-defined]
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return total - idle, total


#: Seconds a path's mount point is reused before the mount table is read again.
MOUNTS_TTL_S = 60.0


class HostSampler:
    """Samples host resources; keeps its own CPU baseline between samples.

    ``psutil.cpu_percent(interval=None)`` keeps one module-wide baseline, so two
    users would steal each other's interval; this class keeps its own, with the
    same accounting. Thread-safe.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        """
        Args:
            clock: monotonic clock in seconds (injectable for tests).
        """
        self._clock = clock
        self._lock = threading.Lock()
        self._prev = (_busy_total(psutil.cpu_times()), clock())
        self._mounts: dict[str, tuple[float, str | None]] = {}  # path -> (read at, mount point)

    def _cpu_percent(self) -> float | None:
        now = self._clock()
        busy, total = _busy_total(psutil.cpu_times())
        with self._lock:
            (pbusy, ptotal), pt = self._prev
            if now - pt < MIN_CPU_INTERVAL_S or total <= ptotal:
                return None
            self._prev = ((busy, total), now)
        return max(0.0, min(100.0, (busy - pbusy) / (total - ptotal) * 100.0))

    def _mountpoints(self, paths: Sequence[str]) -> dict[str, str | None]:
        """:func:`mountpoint_of` for each path, the mount table read at most once a
        call and again for a path at most every :data:`MOUNTS_TTL_S` (psutil reads
        the whole table, one line per container's mounts: 27 ms at 1 000 containers)."""
        now = self._clock()
        stale = [p for p in paths if p not in self._mounts or now - self._mounts[p][0] >= MOUNTS_TTL_S]
        if stale:
            table = mount_table()
            for p in stale:
                self._mounts[p] = (now, mountpoint_of(p, table))
        return {p: self._mounts[p][1] for p in paths}

    def sample(self, paths: Sequence[str | None]) -> model.HostStats:
        """Sample the host.

        Args:
            paths: paths whose filesystems to report (e.g. ``["/",
                "/var/lib/docker"]``). Each existing path gets its own
                :class:`model.DiskUsage` with ``path`` as given, in the order
                given, even when two share one filesystem; repeated, empty
                (None) and missing paths are skipped.
        Returns:
            model.HostStats: ``cpu_percent`` is 0-100 of all cores since the
            previous sample (or since construction); None when less than
            0.1 s passed. Loads from ``os.getloadavg``; memory, swap and disks
            in bytes from psutil (``mem_available`` is the kernel's
            MemAvailable); ``boot_time`` aware UTC.
        Raises:
            Nothing for missing paths; psutil errors on a broken /proc.
        """
        cpu = self._cpu_percent()
        load1, load5, load15 = os.getloadavg()
        vm = psutil.virtual_memory()
        sw = psutil.swap_memory()
        usage: dict[str, Any] = {}
        for p in paths:
            if not p or p in usage:
                continue
            try:
                usage[p] = psutil.disk_usage(p)
            except OSError:  # missing path, permission denied
                continue
        mounts = self._mountpoints(list(usage))
        disks = [model.DiskUsage(path=p, total_bytes=int(du.total), used_bytes=int(du.used),
                                 free_bytes=int(du.free), percent=float(du.percent), mountpoint=mounts[p])
                 for p, du in usage.items()]
        return model.HostStats(
            cpu_percent=cpu,
            cpu_count=psutil.cpu_count() or os.cpu_count() or 1,
            load1=load1,
            load5=load5,
            load15=load15,
            mem_total_bytes=int(vm.total),
            mem_available_bytes=int(vm.available),
            swap_total_bytes=int(sw.total),
            swap_used_bytes=int(sw.used),
            disks=tuple(disks),
            boot_time=datetime.fromtimestamp(psutil.boot_time(), timezone.utc),
        )


def local_engine_started(docker_host: str | None) -> float | None:
    """Start time (Unix seconds) of the local ``dockerd`` serving ``docker_host``
    (default socket when None), found among processes with psutil; None when
    the engine is remote or not found."""
    sock = None
    if docker_host and docker_host.startswith("unix://"):
        sock = docker_host[len("unix://"):]
    elif docker_host:
        return None
    for p in psutil.process_iter(["name", "cmdline", "create_time"]):
        try:
            if p.info["name"] != "dockerd":
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            if sock is None or sock in ("/var/run/docker.sock", "/run/docker.sock"):
                if "-H " in cmd or "--host" in cmd:
                    if "/var/run/docker.sock" not in cmd and "/run/docker.sock" not in cmd:
                        continue
            elif sock not in cmd:
                continue
            return float(p.info["create_time"])
        except (psutil.Error, TypeError):
            continue
    return None


def mount_table() -> list[str] | None:
    """Mount points of every mounted filesystem (psutil, ``all=True``); None when
    the table cannot be read."""
    try:
        return [p.mountpoint for p in psutil.disk_partitions(all=True)]
    except (OSError, psutil.Error):
        return None


def mountpoint_of(path: str, table: list[str] | None = None) -> str | None:
    """The mount point of the filesystem holding ``path`` (the longest mount
    point that is a prefix of its real path); None when unknown.

    Args:
        path: any path.
        table: mount points from :func:`mount_table`, read now when not given.
    """
    if table is None:
        table = mount_table()
    if table is None:
        return None
    try:
        real = os.path.realpath(path)
    except OSError:
        return None
    best = None
    for m in table:
        if real == m or real.startswith(m.rstrip("/") + "/"):
            if best is None or len(m) > len(best):
                best = m
    return best
