"""Per-container CPU and memory readers.

Two readers share one interface, ``read(ids) -> {id: (cpu_percent, memory_bytes,
memory_limit_bytes)}``:

- :class:`CgroupStatsReader` reads the container's cgroup files directly, the way
  cAdvisor does. It only works when the engine runs on this host (its cgroup tree
  is ours) and costs about 6 ms for 100 containers (field notes, "Docker Engine
  API facts").
- :class:`~dockwarden.observe.stats_api.ApiStatsReader` (in ``stats_api.py``)
  asks the engine (``GET /containers/{id}/stats`` with ``stream=false&one-shot=true``,
  API 1.41 / Engine 20.10), for engines whose cgroup files are not ours.

Both compute CPU % themselves from two consecutive samples of the same container:
``delta cpu ns / delta wall ns * 100`` (100 = one full core, as ``docker stats``
reports it). The first sample of a container gives ``None``. Memory follows the
docker CLI (``cli/command/container/stats_helpers.go``, ``calculateMemUsageUnixNoCache``):
usage minus inactive page cache (``total_inactive_file`` on cgroup v1,
``inactive_file`` on cgroup v2).
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable, Sequence

#: One container's figures: (cpu_percent, memory_bytes, memory_limit_bytes).
#: cpu_percent is % of one core (None on the first sample); memory_limit_bytes is
#: None when the container has no memory limit.
Stats = tuple[float | None, int | None, int | None]

#: Limits at or above this many bytes mean "no limit". cgroup v1 writes
#: PAGE_COUNTER_MAX * page size (9223372036854771712 with 4 KiB pages) for an
#: unlimited group; anything >= 2**60 (1 EiB) is treated the same way.
UNLIMITED_BYTES = 1 << 60

DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"

#: An idle container's memory figures are read again at least this often, seconds.
#: Between, a container whose CPU counter has not moved since its memory was read
#: keeps those figures (:meth:`CgroupStatsReader.read`). Each container's deadline
#: falls between half and all of this, spread by its id, so that the re-reads of
#: many containers seen at once do not all fall on one pass.
MEMORY_IDLE_REREAD_S = 30.0


def cpu_percent_between(prev: tuple[int, int] | None, cpu_ns: int, wall_ns: int) -> float | None:
    """CPU % of one core between two samples, or None when it cannot be computed.

    Args:
        prev: the previous (cpu_ns, wall_ns) sample of the same container, or None.
        cpu_ns: cumulative CPU time of the container now, nanoseconds.
        wall_ns: the time of this sample, nanoseconds (any monotonic origin that
            ``prev`` shares).
    Returns:
        float | None: ``delta cpu / delta wall * 100``; None on the first sample,
        when wall time did not advance, or when the CPU counter went backwards
        (the container restarted and its cgroup was recreated).
    """
    if prev is None:
        return None
    d_cpu = cpu_ns - prev[0]
    d_wall = wall_ns - prev[1]
    if d_wall <= 0 or d_cpu < 0:
        return None
    return d_cpu / d_wall * 100.0


def limit_or_none(limit: int | None, host_total: int | None = None) -> int | None:
    """Map a reported memory limit to the model's convention (None = unlimited)."""
    if limit is None or limit <= 0 or limit >= UNLIMITED_BYTES:
        return None
    if host_total and limit >= host_total:
        # The engine reports the host's RAM as the "limit" of an unlimited container.
        return None
    return limit


# --------------------------------------------------------------------------- cgroups


def _read_file(path: str) -> bytes:
    """The bytes of a small pseudo-file (cgroup files are at most a few KiB).

    ``os.open``/``os.read`` rather than ``open()``: no buffered-reader object per
    file, which counts at 4 000 files a pass (1 000 containers, issue 9).

    Raises:
        OSError: the file does not exist (the container stopped) or is unreadable.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _read_int(path: str) -> int | None:
    """Read one integer (or ``max``) from a cgroup file; None for ``max``.

    Raises:
        OSError: the file does not exist (the container stopped) or is unreadable.
        ValueError: the file does not hold an integer.
    """
    raw = _read_file(path).strip()
    if raw == b"max":
        return None
    return int(raw)


def _keyed_value(buf: bytes, key: bytes) -> int:
    """The value of the ``key value`` line of ``buf`` (memory.stat, cpu.stat); 0 when absent.

    PURE. ``key`` must match a whole key: ``inactive_file`` does not match
    ``total_inactive_file``.

    Raises:
        ValueError: the value is not an integer.
    """
    if buf.startswith(key + b" "):
        i = 0
    else:
        i = buf.find(b"\n" + key + b" ")
        if i < 0:
            return 0
        i += 1
    start = i + len(key) + 1
    end = buf.find(b"\n", start)
    return int(buf[start:] if end < 0 else buf[start:end])


def _cpu_ns(version: int, cpu_file: str) -> int:
    """A container's CPU time, nanoseconds: ``cpuacct.usage`` (v1) or ``cpu.stat``'s
    ``usage_usec`` (v2).

    Raises:
        OSError: the file is gone (the container stopped) or unreadable.
        ValueError: the file does not hold the counter.
    """
    if version == 1:
        return _read_int(cpu_file) or 0
    return _keyed_value(_read_file(cpu_file), b"usage_usec") * 1000


class CgroupStatsReader:
    """Read container CPU and memory from the host's cgroup files.

    Layouts recognised (``root`` is ``/sys/fs/cgroup``):

    - cgroup v1, cgroupfs driver: ``memory/docker/<id>/memory.usage_in_bytes``,
      ``memory.stat``; ``cpuacct/docker/<id>/cpuacct.usage`` (ns).
    - cgroup v1, systemd driver: the same files under ``system.slice/docker-<id>.scope``.
    - cgroup v2, systemd driver: ``system.slice/docker-<id>.scope/{memory.current,
      memory.stat, cpu.stat}`` (``usage_usec``).
    - cgroup v2, cgroupfs driver: ``docker/<id>/`` with the v2 files.

    The memory limit is not read here: it is the engine's record (``HostConfig.Memory``
    of the inspect, which a ``docker update`` changes and announces with an ``update``
    event that has the container inspected again). This reader's ``memory_limit_bytes``
    is always None, which keeps the inspect's figure (``observe.docker._restat``).

    Containers in another cgroup parent (``--cgroup-parent``, Kubernetes) are not
    found; :meth:`read` leaves them out of its result so a caller can fall back to
    the API for them.

    Memory of idle containers is not read at every call. A container's memory
    charge grows through its own processes' allocations and page faults, which run
    on the CPU and so move its CPU counter. When that counter has not moved since
    the memory files were last read, the figures read then are kept, for at most
    :data:`MEMORY_IDLE_REREAD_S`. What the rule misses, bounded by that deadline:
    the kernel reclaiming the container's page cache under memory pressure (the
    figure falls later than it should), socket buffers filled by the network while
    the container sleeps (a few KiB to MiB). A host of 1 000 sleeping containers
    thus reads 1 000 files a resync instead of 4 000 (issue 9); a busy container is
    read in full each time.

    Not thread-safe for concurrent ``read`` calls on one instance (the previous
    samples are shared state); the observer serialises calls.
    """

    def __init__(self, root: str = DEFAULT_CGROUP_ROOT, *,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        """
        Args:
            root: mount point of the cgroup hierarchy.
            clock_ns: wall clock for CPU % deltas, nanoseconds (monotonic).
        """
        self.root = root
        self._clock_ns = clock_ns
        self._prev: dict[str, tuple[int, int]] = {}
        # id -> (CPU counter when memory was read, memory bytes, read again at, ns)
        self._memory: dict[str, tuple[int, int, int]] = {}
        # id -> (version, cpu counter file, memory usage file, memory.stat)
        self._paths: dict[str, tuple[int, str, str, str]] = {}
        self.version = self._detect_version()

    def _detect_version(self) -> int | None:
        if os.path.isdir(os.path.join(self.root, "memory")) and os.path.isdir(
                os.path.join(self.root, "cpuacct")):
            return 1
        if os.path.exists(os.path.join(self.root, "cgroup.controllers")):
            return 2
        return None

    def _resolve(self, cid: str) -> tuple[int, str, str, str] | None:
        """Find the cgroup files of a container; cached once found.

        Returns:
            (version, cpu counter file, memory usage file, memory.stat file), or
            None when its cgroup is not found.
        """
        hit = self._paths.get(cid)
        if hit is not None:
            return hit
        r = self.root
        if self.version == 1:
            for rel in (f"docker/{cid}", f"system.slice/docker-{cid}.scope"):
                mem = os.path.join(r, "memory", rel)
                cpu = os.path.join(r, "cpuacct", rel)
                if os.path.isdir(mem) and os.path.isdir(cpu):
                    hit = (1, os.path.join(cpu, "cpuacct.usage"), os.path.join(mem, "memory.usage_in_bytes"),
                           os.path.join(mem, "memory.stat"))
                    break
        elif self.version == 2:
            for rel in (f"system.slice/docker-{cid}.scope", f"docker/{cid}"):
                d = os.path.join(r, rel)
                if os.path.exists(os.path.join(d, "memory.current")):
                    hit = (2, os.path.join(d, "cpu.stat"), os.path.join(d, "memory.current"),
                           os.path.join(d, "memory.stat"))
                    break
        if hit is not None:
            self._paths[cid] = hit
        return hit

    def _found(self) -> list[str]:
        """Ids of the containers whose cgroups exist now (the layouts above), found by
        listing the cgroup directories: no engine call."""
        r = self.root
        if self.version == 1:
            parents = [os.path.join(r, "cpuacct", "docker"), os.path.join(r, "cpuacct", "system.slice")]
        elif self.version == 2:
            parents = [os.path.join(r, "system.slice"), os.path.join(r, "docker")]
        else:
            return []
        ids = []
        for parent in parents:
            try:
                names = os.listdir(parent)
            except OSError:  # this layout is not in use here
                continue
            for name in names:
                if name.startswith("docker-") and name.endswith(".scope"):
                    name = name[len("docker-"):-len(".scope")]
                if len(name) == 64 and all(ch in "0123456789abcdef" for ch in name):
                    ids.append(name)
        return ids

    def prime(self) -> int:
        """Take the first CPU sample of every container that has a cgroup now, before
        the engine is asked anything: a later :meth:`read` of the same ids gives CPU %
        over the whole time between (``once`` starts its CPU interval before its
        imports, connect and list call instead of sleeping after them; issue 9).

        Returns:
            int: containers sampled.
        Raises:
            Nothing: unreadable cgroups are skipped.
        """
        n = 0
        for cid in self._found():
            where = self._resolve(cid)
            if where is None:
                continue
            try:
                cpu_ns = _cpu_ns(where[0], where[1])
            except (OSError, ValueError):
                continue
            self._prev[cid] = (cpu_ns, self._clock_ns())
            n += 1
        return n

    def available(self, ids: Sequence[str] = ()) -> bool:
        """Whether this reader can be used.

        Args:
            ids: ids of running containers to probe. With none given, only the
                layout of ``root`` is checked.
        Returns:
            bool: True when a known cgroup layout is mounted at ``root`` and (if
            ``ids`` is not empty) the cgroup of at least one of them is found.
            Whether the engine is local is for the caller to judge (a remote
            engine's containers are simply not found here).
        """
        if self.version is None:
            return False
        if not ids:
            return True
        return any(self._resolve(cid) is not None for cid in ids)

    def _read_memory(self, where: tuple[int, str, str, str]) -> int:
        """Memory bytes without inactive page cache.

        Raises:
            OSError: the files are gone (the container stopped).
            ValueError: a file does not hold what is expected.
        """
        version, _, usage_file, stat_file = where
        inactive_key = b"total_inactive_file" if version == 1 else b"inactive_file"
        usage = _read_int(usage_file) or 0
        inactive = _keyed_value(_read_file(stat_file), inactive_key)
        return usage - inactive if inactive < usage else usage

    def _reread_after_ns(self, cid: str) -> int:
        """How long an idle container's memory figures are kept: between half and all
        of :data:`MEMORY_IDLE_REREAD_S`, the same for one id every time."""
        spread = zlib.crc32(cid.encode()) / 0xFFFFFFFF
        return int(MEMORY_IDLE_REREAD_S * (0.5 + 0.5 * spread) * 1e9)

    def _read_one(self, cid: str, wall: int) -> tuple[int, int] | None:
        """(cpu_ns, memory_bytes) of one container, or None if gone.

        Memory comes from the last read when the CPU counter has not moved since and
        that read is not due again (the class docstring)."""
        where = self._resolve(cid)
        if where is None:
            return None
        try:
            cpu_ns = _cpu_ns(where[0], where[1])
            kept = self._memory.get(cid)
            if kept is None or kept[0] != cpu_ns or wall >= kept[2]:
                kept = (cpu_ns, self._read_memory(where), wall + self._reread_after_ns(cid))
                self._memory[cid] = kept
        except (OSError, ValueError):
            # Stopped between listing and reading: its cgroup is gone.
            self._paths.pop(cid, None)
            self._memory.pop(cid, None)
            return None
        return cpu_ns, kept[1]

    def read(self, ids: Sequence[str]) -> dict[str, Stats]:
        """Read CPU % and memory of running containers.

        Args:
            ids: full container ids (64 hex characters), running ones.
        Returns:
            dict[str, Stats]: ``{id: (cpu_percent, memory_bytes, memory_limit_bytes)}``
            for every id whose cgroup was found; ids not found (stopped, remote
            engine, other cgroup parent) are absent. cpu_percent is % of one core
            since this reader's previous ``read`` of that id (None the first time);
            memory_bytes excludes inactive page cache, and is the last read's
            figure for a container idle since (class docstring); memory_limit_bytes
            is None (the limit is the inspect's, class docstring). Previous samples
            of ids not passed are forgotten.
        Raises:
            Nothing: unreadable files leave the id out.
        """
        out: dict[str, Stats] = {}
        seen = set(ids)
        for cid in ids:
            wall = self._clock_ns()
            got = self._read_one(cid, wall)
            if got is None:
                self._prev.pop(cid, None)
                continue
            cpu_ns, mem = got
            pct = cpu_percent_between(self._prev.get(cid), cpu_ns, wall)
            self._prev[cid] = (cpu_ns, wall)
            out[cid] = (pct, mem, None)
        for cid in list(self._prev):
            if cid not in seen:
                del self._prev[cid]
        for cid in list(self._paths):
            if cid not in seen:
                del self._paths[cid]
        for cid in list(self._memory):
            if cid not in seen:
                del self._memory[cid]
        return out


class NullStatsReader:
    """A reader that reads nothing (``stats="none"``)."""

    def available(self, ids: Sequence[str] = ()) -> bool:
        return True

    def read(self, ids: Sequence[str]) -> dict[str, Stats]:
        """Returns an empty dict: no figures for any id."""
        return {}
