"""Observe Docker storage: the Engine API's disk usage, the root dir's filesystem, btrfs.

Sources (issue 3; field notes, "Docker Engine API facts"):

* ``GET /system/df`` (docker SDK ``client.df()``): images (``Size``,
  ``SharedSize``, ``Containers``), containers (``SizeRw``), volumes
  (``UsageData``), build cache, ``LayersSize`` and ``BuilderSize``. It walks
  every writable layer and volume, so it can take seconds on big hosts: the
  storage worker calls it on its own cadence, never in the reconcile loop.
* ``GET /info`` (``client.info()``): ``Driver`` and ``DockerRootDir``.
* psutil: usage, mount point and type of the filesystem holding the root dir.
* btrfs-progs, when that filesystem is btrfs: ``btrfs filesystem df -b``,
  ``btrfs filesystem usage -b``, ``btrfs subvolume list`` and, when quotas are
  on, ``btrfs qgroup show --raw`` (referenced and exclusive bytes). Argument
  lists only, never a shell. Without btrfs-progs, or on another filesystem,
  the report says what is unavailable and why; nothing fails.

The parsing functions are pure and tested without an engine.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import psutil

from dockwarden import model
from dockwarden.observe.docker import ENGINE_ERRORS
from dockwarden.reconcile.usage import (
    BtrfsReport, CacheUsage, ContainerUsage, FilesystemUsage, ImageUsage, StorageReport, Subvolume, VolumeUsage,
)

log = logging.getLogger(__name__)

#: Subvolumes listed in a report at most (largest exclusive first when known).
MAX_SUBVOLUMES = 20
_FS_DF = re.compile(r"^(\w+),\s*[\w\d]+:\s*total=(\d+),\s*used=(\d+)", re.M)
_USAGE = {
    "device_size_bytes": re.compile(r"^\s*Device size:\s+(\d+)", re.M),
    "device_allocated_bytes": re.compile(r"^\s*Device allocated:\s+(\d+)", re.M),
    "device_unallocated_bytes": re.compile(r"^\s*Device unallocated:\s+(\d+)", re.M),
    "free_estimated_bytes": re.compile(r"^\s*Free \(estimated\):\s+(\d+)", re.M),
}
_SUBVOL = re.compile(r"^ID\s+(\d+)\s.*?\bpath\s+(.+)$", re.M)
_QGROUP = re.compile(r"^0/(\d+)\s+(\d+)\s+(\d+)", re.M)


# --------------------------------------------------------------------------- pure parsing


def _time(epoch: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(epoch), tz=timezone.utc) if epoch else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _tags(tags: Any) -> tuple[str, ...]:
    return tuple(t for t in (tags or ()) if t and t != "<none>:<none>")


def parse_df(df: dict[str, Any]) -> dict[str, Any]:
    """Turn a ``GET /system/df`` document into usage records.

    PURE. Missing fields count as 0 (the engine omits ``SizeRw`` when it is 0).

    Args:
        df: the API's JSON (``client.df()``).
    Returns:
        dict: ``images`` (tuple[ImageUsage]), ``containers`` (tuple[ContainerUsage],
        ``finished_at`` unknown), ``volumes``, ``build_cache``, ``layers_size_bytes``,
        ``builder_size_bytes``.
    """
    images = tuple(
        ImageUsage(id=str(i.get("Id") or ""), tags=_tags(i.get("RepoTags")),
                   digests=tuple(d for d in (i.get("RepoDigests") or ()) if d and not d.startswith("<none>")),
                   created=_time(i.get("Created")), size_bytes=int(i.get("Size") or 0),
                   shared_bytes=int(i.get("SharedSize") if i.get("SharedSize") is not None else -1),
                   containers=int(i.get("Containers") or 0))
        for i in (df.get("Images") or ())
    )
    containers = tuple(
        ContainerUsage(id=str(c.get("Id") or ""), name=str((c.get("Names") or ["/?"])[0]).lstrip("/"),
                       image=str(c.get("Image") or ""), image_id=str(c.get("ImageID") or ""),
                       state=str(c.get("State") or ""), size_rw_bytes=int(c.get("SizeRw") or 0),
                       labels=dict(c.get("Labels") or {}), created=_time(c.get("Created")))
        for c in (df.get("Containers") or ())
    )
    volumes = tuple(
        VolumeUsage(name=str(v.get("Name") or ""), driver=str(v.get("Driver") or ""),
                    size_bytes=int((v.get("UsageData") or {}).get("Size", -1)),
                    ref_count=int((v.get("UsageData") or {}).get("RefCount", 0)))
        for v in (df.get("Volumes") or ())
    )
    cache = tuple(
        CacheUsage(id=str(b.get("ID") or ""), type=str(b.get("Type") or ""), size_bytes=int(b.get("Size") or 0),
                   in_use=bool(b.get("InUse")), shared=bool(b.get("Shared")),
                   last_used=model.parse_time(b.get("LastUsedAt")))
        for b in (df.get("BuildCache") or ())
    )
    return {"images": images, "containers": containers, "volumes": volumes, "build_cache": cache,
            "layers_size_bytes": int(df.get("LayersSize") or 0),
            "builder_size_bytes": int(df.get("BuilderSize") or 0)}


def parse_btrfs_df(text: str) -> dict[str, dict[str, int]]:
    """``btrfs filesystem df -b`` -> ``{"data": {"total_bytes", "used_bytes"}, "metadata": ..., ...}``. PURE."""
    return {m.group(1).lower(): {"total_bytes": int(m.group(2)), "used_bytes": int(m.group(3))}
            for m in _FS_DF.finditer(text)}


def parse_btrfs_usage(text: str) -> dict[str, int]:
    """``btrfs filesystem usage -b`` -> device size, allocated, unallocated, free (estimated). PURE."""
    out = {}
    for key, rx in _USAGE.items():
        m = rx.search(text)
        if m:
            out[key] = int(m.group(1))
    return out


def parse_subvolumes(listing: str, qgroups: str | None) -> list[Subvolume]:
    """``btrfs subvolume list`` (+ ``btrfs qgroup show --raw``) -> subvolumes with
    referenced/exclusive bytes when the qgroup text is given. PURE."""
    sizes = {int(m.group(1)): (int(m.group(2)), int(m.group(3))) for m in _QGROUP.finditer(qgroups or "")}
    out = []
    for m in _SUBVOL.finditer(listing):
        sid = int(m.group(1))
        ref, excl = sizes.get(sid, (None, None))
        out.append(Subvolume(sid, m.group(2).strip(), ref, excl))
    return out


def containers_as_states(report: StorageReport) -> list[model.ContainerState]:
    """Minimal ContainerState records (name, image, state, labels, compose labels)
    for ``inventory.merge_labelled`` when no world state is at hand."""
    return [model.ContainerState(id=c.id, name=c.name, image=c.image, state=c.state, labels=c.labels,
                                 compose_project=c.labels.get("com.docker.compose.project"),
                                 compose_service=c.labels.get("com.docker.compose.service"))
            for c in report.containers]


# --------------------------------------------------------------------------- I/O


def filesystem_of(path: str) -> FilesystemUsage:
    """Usage of the filesystem holding ``path`` (psutil), with its mount point,
    type and device (the longest mount point that is a prefix of the real path).

    Raises:
        OSError: the path does not exist here or cannot be read.
    """
    du = psutil.disk_usage(path)
    real = os.path.realpath(path)
    best = None
    for part in psutil.disk_partitions(all=True):
        mp = part.mountpoint
        if real == mp or real.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) > len(best.mountpoint):
                best = part
    return FilesystemUsage(path=path, total_bytes=int(du.total), used_bytes=int(du.used), free_bytes=int(du.free),
                           percent=float(du.percent), mount_point=best.mountpoint if best else None,
                           fstype=best.fstype if best else None, device=best.device if best else None)


def _run(argv: list[str], timeout_s: float) -> tuple[int, str, str]:
    env = {**os.environ, "LC_ALL": "C"}
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout_s:g} s"
    except OSError as e:
        return 127, "", str(e)
    return p.returncode, p.stdout, p.stderr.strip()


def btrfs_report(root_dir: str | None, *, driver: str | None, fstype: str | None, timeout_s: float = 30.0,
                 which: Callable[[str], str | None] = shutil.which) -> BtrfsReport:
    """What btrfs-progs tell about the filesystem of the Docker root dir.

    Args:
        root_dir: the engine's ``DockerRootDir`` (a path on this host).
        driver: the storage driver (``btrfs`` makes the report apply).
        fstype: the root dir's filesystem type (``btrfs`` also makes it apply).
        timeout_s: per command, seconds.
        which: finds the ``btrfs`` program (``shutil.which``; injectable for tests).
    Returns:
        BtrfsReport: ``available`` False with ``reason`` when not btrfs, when
        btrfs-progs is missing, when the root dir is not on this host, or when
        ``btrfs filesystem df`` fails. Exclusive sizes need quotas; without them
        ``exclusive_reason`` says so.
    Raises:
        Nothing.
    """
    if driver != "btrfs" and fstype != "btrfs":
        return BtrfsReport(False, f"storage driver is {driver or 'unknown'} on {fstype or 'an unknown filesystem'}, "
                                  "not btrfs")
    if not root_dir or not os.path.isdir(root_dir):
        return BtrfsReport(False, f"Docker root dir {root_dir!r} is not on this host")
    exe = which("btrfs")
    if exe is None:
        return BtrfsReport(False, "btrfs-progs not installed (no `btrfs` on PATH)")
    rc, out, err = _run([exe, "filesystem", "df", "-b", root_dir], timeout_s)
    if rc != 0:
        return BtrfsReport(False, f"`btrfs filesystem df` failed ({rc}): {err or out}".strip())
    profiles = parse_btrfs_df(out)
    rc, usage_out, err = _run([exe, "filesystem", "usage", "-b", root_dir], timeout_s)
    usage = parse_btrfs_usage(usage_out) if rc == 0 else {}
    rc, listing, err_l = _run([exe, "subvolume", "list", root_dir], timeout_s)
    if rc != 0:
        listing = ""
    rc_q, qgroups, err_q = _run([exe, "qgroup", "show", "--raw", root_dir], timeout_s)
    exclusive = rc_q == 0
    why_not = None if exclusive else ("btrfs quotas are off (`btrfs quota enable`)" if "not enabled" in err_q
                                      else f"`btrfs qgroup show` failed: {err_q}")
    subs = parse_subvolumes(listing, qgroups if exclusive else None)
    subs.sort(key=lambda s: (-(s.exclusive_bytes or 0), -(s.referenced_bytes or 0), s.id))
    return BtrfsReport(True, None, profiles, usage.get("device_size_bytes"), usage.get("device_allocated_bytes"),
                       usage.get("device_unallocated_bytes"), usage.get("free_estimated_bytes"),
                       tuple(subs[:MAX_SUBVOLUMES]), len(subs), exclusive, why_not)


class StorageObserver:
    """Collects a :class:`StorageReport` from one engine.

    Args:
        client: a ``docker.DockerClient``; give it a long timeout (``df`` is slow
            on big hosts: ``connect(timeout_s=storage.df_timeout_s)``).
        command_timeout_s: per btrfs command, seconds.
        which: finds programs on PATH (injectable for tests).
    """

    def __init__(self, client: Any, *, command_timeout_s: float = 30.0,
                 which: Callable[[str], str | None] = shutil.which):
        self.client = client
        self.command_timeout_s = command_timeout_s
        self.which = which

    def collect(self, now: datetime) -> StorageReport:
        """One observation: ``/info``, ``/system/df``, finish times of stopped
        containers, the root dir's filesystem, btrfs.

        Args:
            now: the observation time (aware UTC).
        Returns:
            StorageReport: with ``engine_error`` set (and no Docker figures) when the
            engine failed; with ``filesystem_error`` when the root dir is not here.
        Raises:
            Nothing from the engine or the filesystem.
        """
        t0 = time.monotonic()
        try:
            info = self.client.info()
            driver, root = info.get("Driver"), info.get("DockerRootDir")
            parsed = parse_df(self.client.df())
        except ENGINE_ERRORS as e:
            return StorageReport(now, None, None, engine_error=f"{type(e).__name__}: {e}",
                                 duration_s=time.monotonic() - t0)
        parsed["containers"] = tuple(self._with_finish_time(c) for c in parsed["containers"])
        fs, fs_error = None, None
        try:
            fs = filesystem_of(root) if root else None
            if fs is None:
                fs_error = "the engine reported no root dir"
        except OSError as e:
            fs_error = f"Docker root dir {root} is not readable on this host ({e.strerror or e})"
        btrfs = btrfs_report(root, driver=driver, fstype=fs.fstype if fs else None,
                             timeout_s=self.command_timeout_s, which=self.which)
        return StorageReport(now, driver, root, fs, fs_error, btrfs=btrfs, duration_s=time.monotonic() - t0,
                             **parsed)

    def _with_finish_time(self, c: ContainerUsage) -> ContainerUsage:
        if c.state not in ("exited", "dead"):
            return c
        try:
            state = self.client.api.inspect_container(c.id).get("State") or {}
        except ENGINE_ERRORS as e:  # removed meanwhile: the planner keeps what it cannot date
            log.debug("%s: cannot inspect for its finish time: %s", c.name, e)
            return c
        return ContainerUsage(c.id, c.name, c.image, c.image_id, c.state, c.size_rw_bytes, c.labels, c.created,
                              model.parse_time(state.get("FinishedAt")))
