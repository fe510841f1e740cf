"""Docker storage usage: the records of one storage observation, and their totals.

Pure: plain frozen dataclasses and arithmetic, no I/O. ``observe/storage.py``
fills them from the Engine API (``GET /system/df``, ``GET /info``), psutil and
``btrfs-progs``; the planner, the trends, the journal and the CLI read them.

Totals follow the docker CLI's ``docker system df`` (docker/cli
``cli/command/formatter/disk_usage.go``, Engine 20.10 era), so both agree:

* images: bytes = the API's ``LayersSize``; reclaimable = bytes minus
  ``Size - SharedSize`` of every image some container uses; active = images
  with containers.
* containers: bytes = sum of ``SizeRw`` (writable layers); reclaimable =
  ``SizeRw`` of containers not running, paused or restarting.
* volumes: bytes = sum of ``UsageData.Size`` (``-1`` = unknown, skipped);
  reclaimable = volumes with ``RefCount == 0`` (what ``docker volume prune``
  would free; dockwarden never removes a volume).
* build cache: bytes = the API's ``BuilderSize``; reclaimable = bytes minus the
  records in use and not shared.

Sizes are bytes, times aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dockwarden.model import rfc3339

#: Container states the docker CLI counts as active (not reclaimable).
ACTIVE_STATES = ("running", "paused", "restarting")
#: What btrfs sizes mean, for people (seed 002: "apparent != exclusive").
BTRFS_COW_CAVEAT = (
    "btrfs shares extents between snapshots (copy-on-write): an image layer's apparent size counts "
    "data it shares with its parent layers, so apparent sizes add up to more than the disk holds, "
    "and removing one layer frees only its exclusive bytes. Exclusive sizes need btrfs quotas "
    "(`btrfs quota enable <root>`)."
)


@dataclass(frozen=True)
class ImageUsage:
    """One image of ``GET /system/df``.

    ``size_bytes`` is the image's whole size (all layers); ``shared_bytes`` the
    part shared with other images (``-1`` when the engine did not compute it).
    """

    id: str
    tags: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    created: datetime | None = None
    size_bytes: int = 0
    shared_bytes: int = 0
    containers: int = 0

    @property
    def dangling(self) -> bool:
        """No tag (``docker images -f dangling=true``)."""
        return not self.tags

    @property
    def unique_bytes(self) -> int:
        """Bytes only this image holds: what removing it frees."""
        if self.shared_bytes < 0:
            return self.size_bytes
        return max(0, self.size_bytes - self.shared_bytes)

    @property
    def name(self) -> str:
        """First tag, else ``<none>@<short id>``."""
        return self.tags[0] if self.tags else f"<none>@{short_id(self.id)}"

    @property
    def repository(self) -> str | None:
        """Repository of the first tag or digest (``app/web:1`` -> ``app/web``), else None."""
        for ref in (*self.tags, *self.digests):
            return split_reference(ref)[0]
        return None


@dataclass(frozen=True)
class ContainerUsage:
    """One container of ``GET /system/df``: its writable layer (``SizeRw``)."""

    id: str
    name: str
    image: str = ""
    image_id: str = ""
    state: str = ""
    size_rw_bytes: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    created: datetime | None = None
    finished_at: datetime | None = None

    @property
    def active(self) -> bool:
        return any(s in self.state for s in ACTIVE_STATES)


@dataclass(frozen=True)
class VolumeUsage:
    """One local volume; ``size_bytes`` is -1 when the engine does not know."""

    name: str
    driver: str = "local"
    size_bytes: int = -1
    ref_count: int = 0


@dataclass(frozen=True)
class CacheUsage:
    """One build-cache record (BuildKit)."""

    id: str
    type: str = ""
    size_bytes: int = 0
    in_use: bool = False
    shared: bool = False
    last_used: datetime | None = None


@dataclass(frozen=True)
class Totals:
    """Count and bytes of one category, as ``docker system df`` reports them."""

    count: int
    active: int
    bytes: int
    reclaimable_bytes: int

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "active": self.active, "bytes": self.bytes,
                "reclaimable_bytes": self.reclaimable_bytes}


@dataclass(frozen=True)
class FilesystemUsage:
    """The filesystem that holds the Docker root dir (psutil ``disk_usage``).

    ``percent`` is psutil's: used / (used + available to unprivileged users) * 100.
    """

    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    percent: float
    mount_point: str | None = None
    fstype: str | None = None
    device: str | None = None


@dataclass(frozen=True)
class Subvolume:
    """A btrfs subvolume (``btrfs subvolume list``) with its qgroup sizes when
    quotas are on (``btrfs qgroup show``): referenced (apparent) and exclusive."""

    id: int
    path: str
    referenced_bytes: int | None = None
    exclusive_bytes: int | None = None


@dataclass(frozen=True)
class BtrfsReport:
    """What btrfs-progs tell about the filesystem of the Docker root dir.

    ``available`` False means nothing below is known and ``reason`` says why
    (not btrfs, btrfs-progs missing, a command failed). ``profiles`` maps
    ``data``, ``metadata``, ``system`` (and ``globalreserve``) to
    ``{"total_bytes", "used_bytes"}`` from ``btrfs filesystem df -b``;
    ``device_*`` come from ``btrfs filesystem usage -b``.
    """

    available: bool
    reason: str | None = None
    profiles: dict[str, dict[str, int]] = field(default_factory=dict)
    device_size_bytes: int | None = None
    device_allocated_bytes: int | None = None
    device_unallocated_bytes: int | None = None
    free_estimated_bytes: int | None = None
    subvolumes: tuple[Subvolume, ...] = ()
    subvolume_count: int = 0
    exclusive_available: bool = False
    exclusive_reason: str | None = None


@dataclass(frozen=True)
class StorageReport:
    """One storage observation of a node.

    ``filesystem`` is None when the Docker root dir is not on this host (a remote
    engine) or cannot be read; ``filesystem_error`` says why. ``engine_error``
    is set (and the Docker lists are empty) when the engine could not be asked.
    """

    observed_at: datetime
    driver: str | None
    root_dir: str | None
    filesystem: FilesystemUsage | None = None
    filesystem_error: str | None = None
    images: tuple[ImageUsage, ...] = ()
    containers: tuple[ContainerUsage, ...] = ()
    volumes: tuple[VolumeUsage, ...] = ()
    build_cache: tuple[CacheUsage, ...] = ()
    layers_size_bytes: int = 0
    builder_size_bytes: int = 0
    btrfs: BtrfsReport = field(default_factory=lambda: BtrfsReport(False, "not asked"))
    engine_error: str | None = None
    duration_s: float = 0.0

    # ---------------------------------------------------------------- totals

    def image_totals(self) -> Totals:
        used = sum(i.unique_bytes for i in self.images if i.containers > 0 and i.shared_bytes >= 0)
        total = self.layers_size_bytes
        return Totals(len(self.images), sum(1 for i in self.images if i.containers > 0), total,
                      max(0, total - used))

    def container_totals(self) -> Totals:
        total = sum(c.size_rw_bytes for c in self.containers)
        idle = sum(c.size_rw_bytes for c in self.containers if not c.active)
        return Totals(len(self.containers), sum(1 for c in self.containers if c.active), total, idle)

    def volume_totals(self) -> Totals:
        known = [v for v in self.volumes if v.size_bytes >= 0]
        return Totals(len(self.volumes), sum(1 for v in self.volumes if v.ref_count > 0),
                      sum(v.size_bytes for v in known), sum(v.size_bytes for v in known if v.ref_count == 0))

    def cache_totals(self) -> Totals:
        in_use = sum(c.size_bytes for c in self.build_cache if c.in_use and not c.shared)
        return Totals(len(self.build_cache), sum(1 for c in self.build_cache if c.in_use),
                      self.builder_size_bytes, max(0, self.builder_size_bytes - in_use))

    def dangling(self) -> tuple[int, int]:
        """(count, unique bytes) of dangling images not used by any container."""
        d = [i for i in self.images if i.dangling and i.containers == 0]
        return len(d), sum(i.unique_bytes for i in d)

    def docker_bytes(self) -> int:
        """Images + writable layers + volumes + build cache, bytes."""
        return sum(t.bytes for t in (self.image_totals(), self.container_totals(),
                                     self.volume_totals(), self.cache_totals()))

    def reclaimable_bytes(self) -> int:
        """Reclaimable images + containers + build cache (volumes excluded: never removed)."""
        return sum(t.reclaimable_bytes for t in (self.image_totals(), self.container_totals(),
                                                 self.cache_totals()))

    # ---------------------------------------------------------------- top consumers

    def top_images(self, n: int) -> list[ImageUsage]:
        return sorted(self.images, key=lambda i: (-i.size_bytes, i.name))[:n]

    def top_volumes(self, n: int) -> list[VolumeUsage]:
        return sorted(self.volumes, key=lambda v: (-v.size_bytes, v.name))[:n]

    def top_containers(self, n: int) -> list[ContainerUsage]:
        return sorted(self.containers, key=lambda c: (-c.size_rw_bytes, c.name))[:n]

    def breakdown_line(self) -> str:
        """One line for people: ``images 3.1 GiB (2.0 GiB reclaimable, 5 dangling), ...``."""
        it, ct, vt, bt = self.image_totals(), self.container_totals(), self.volume_totals(), self.cache_totals()
        dn, _ = self.dangling()
        return (f"images {human_bytes(it.bytes)} ({human_bytes(it.reclaimable_bytes)} reclaimable, {dn} dangling), "
                f"writable layers {human_bytes(ct.bytes)} ({human_bytes(ct.reclaimable_bytes)} in stopped containers), "
                f"volumes {human_bytes(vt.bytes)}, build cache {human_bytes(bt.bytes)}")

    def to_json(self, top_n: int = 5) -> dict[str, Any]:
        """The ``dockwarden storage --json`` shape (issue 3): top-level ``images``,
        ``containers``, ``volumes``, ``build_cache`` (each ``count``, ``active``,
        ``bytes``, ``reclaimable_bytes``), ``driver``, ``root_dir``,
        ``filesystem`` (or null, with ``filesystem_error``), ``dangling``, ``top``
        and ``btrfs``. Sizes in bytes, times RFC 3339 UTC."""
        dn, db = self.dangling()
        fs = self.filesystem
        b = self.btrfs
        images = self.image_totals().to_json()
        images.update(dangling_count=dn, dangling_bytes=db)
        return {
            "observed_at": rfc3339(self.observed_at),
            "driver": self.driver,
            "root_dir": self.root_dir,
            "filesystem": None if fs is None else {
                "path": fs.path, "mount_point": fs.mount_point, "fstype": fs.fstype, "device": fs.device,
                "total_bytes": fs.total_bytes, "used_bytes": fs.used_bytes, "free_bytes": fs.free_bytes,
                "percent": round(fs.percent, 2)},
            "filesystem_error": self.filesystem_error,
            "engine_error": self.engine_error,
            "images": images,
            "containers": self.container_totals().to_json(),
            "volumes": self.volume_totals().to_json(),
            "build_cache": self.cache_totals().to_json(),
            "top": {
                "images": [{"name": i.name, "id": short_id(i.id), "bytes": i.size_bytes,
                            "unique_bytes": i.unique_bytes, "containers": i.containers}
                           for i in self.top_images(top_n)],
                "volumes": [{"name": v.name, "bytes": v.size_bytes, "ref_count": v.ref_count}
                            for v in self.top_volumes(top_n)],
                "containers": [{"name": c.name, "bytes": c.size_rw_bytes, "state": c.state}
                               for c in self.top_containers(top_n)],
            },
            "btrfs": {
                "available": b.available, "reason": b.reason, "profiles": b.profiles,
                "device_size_bytes": b.device_size_bytes, "device_allocated_bytes": b.device_allocated_bytes,
                "device_unallocated_bytes": b.device_unallocated_bytes,
                "free_estimated_bytes": b.free_estimated_bytes, "subvolume_count": b.subvolume_count,
                "subvolumes": [{"id": s.id, "path": s.path, "referenced_bytes": s.referenced_bytes,
                                "exclusive_bytes": s.exclusive_bytes} for s in b.subvolumes],
                "exclusive_available": b.exclusive_available, "exclusive_reason": b.exclusive_reason,
                "caveat": BTRFS_COW_CAVEAT if b.available else None,
            },
            "duration_s": round(self.duration_s, 3),
        }


# --------------------------------------------------------------------------- helpers


def short_id(image_or_container_id: str) -> str:
    """``sha256:0123456789abcdef...`` -> ``0123456789ab`` (Docker's 12 characters)."""
    return image_or_container_id.split(":", 1)[-1][:12]


def split_reference(ref: str) -> tuple[str, str | None]:
    """``repo[:tag][@digest]`` -> (repository, tag or digest). ``localhost:5000/app``
    keeps its registry port: a ``:`` after the last ``/`` starts the tag."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, None


def human_bytes(n: float | None) -> str:
    """Bytes for people, binary units: ``0 B``, ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    if n is None:
        return "-"
    f = float(n)
    sign = "-" if f < 0 else ""
    f = abs(f)
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while round(f, 1) >= 1024 and i < len(units) - 1:
        f /= 1024
        i += 1
    return f"{sign}{f:.0f} B" if i == 0 else f"{sign}{f:.1f} {units[i]}"


def human_duration(seconds: float | None) -> str:
    """Seconds for people: ``45 s``, ``12 min``, ``5 h 20 min``, ``3 d 4 h``; None -> ``-``."""
    if seconds is None:
        return "-"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    m = s // 60
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"
