"""Per-container CPU and memory from the engine's stats API (remote engines).

:class:`ApiStatsReader` has the interface of :mod:`dockwarden.observe.stats`
(``read(ids) -> {id: (cpu_percent, memory_bytes, memory_limit_bytes)}``) for
engines whose cgroup files are not ours to read: ``GET /containers/{id}/stats``
with ``stream=false&one-shot=true`` (API 1.41 / Engine 20.10). On Engine 20.10
each call waits for the daemon's 1 s collection tick, so calls are made
concurrently, as many as the client's connection pool allows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker.errors
import requests.exceptions

from dockwarden import model
from dockwarden.observe.stats import Stats, cpu_percent_between, limit_or_none

log = logging.getLogger(__name__)


def pool_size(client: Any, default: int = 10) -> int:
    """The connection pool size of a docker client, for sizing worker pools.

    Args:
        client: a ``docker.DockerClient`` or ``docker.APIClient``.
        default: returned when the size cannot be found (requests' default is 10).
    Returns:
        int: maximum connections kept per host.
    """
    api = getattr(client, "api", client)
    adapter = getattr(api, "_custom_adapter", None)
    size = getattr(adapter, "max_pool_size", None) or getattr(adapter, "_pool_maxsize", None)
    if not size:
        try:
            size = api.get_adapter(api.base_url)._pool_maxsize  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - best effort only
            size = None
    return int(size or default)


def stats_from_api(doc: dict[str, Any], *, host_total: int | None = None) -> tuple[int | None, int | None, int | None, int | None]:
    """Pick the figures out of one ``GET /containers/{id}/stats`` document.

    PURE.

    Args:
        doc: the decoded stats JSON (Engine API ``ContainerStatsResponse``).
        host_total: the engine host's RAM in bytes (``MemTotal`` of ``docker info``);
            a limit >= this is the engine's way of saying "unlimited".
    Returns:
        tuple: (cpu_ns, read_ns, memory_bytes, memory_limit_bytes) where cpu_ns is
        ``cpu_stats.cpu_usage.total_usage`` (cumulative ns), read_ns the sample time
        (``read``) in ns since the epoch, memory_bytes usage minus inactive file
        cache, and the limit None when unlimited. Missing parts are None.
    """
    cpu = ((doc.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
    read_at = model.parse_time(doc.get("read"))
    read_ns = None
    if read_at is not None:
        read_ns = int(read_at.timestamp()) * 1_000_000_000 + read_at.microsecond * 1000
    mem = doc.get("memory_stats") or {}
    usage = mem.get("usage")
    if usage is not None:
        st = mem.get("stats") or {}
        inactive = st.get("total_inactive_file", st.get("inactive_file", 0)) or 0
        if inactive < usage:
            usage -= inactive
    return cpu, read_ns, usage, limit_or_none(mem.get("limit"), host_total)


class ApiStatsReader:
    """Read container CPU and memory through the engine's stats endpoint.

    Calls ``client.api.stats(id, stream=False, one_shot=True)`` for each id
    concurrently in a thread pool. One-shot stats carry no ``precpu_stats``
    (API 1.41), so CPU % comes from this reader's previous sample of the same id,
    using the engine's ``read`` timestamps as the wall clock.
    """

    def __init__(self, client: Any, *, workers: int | None = None) -> None:
        """
        Args:
            client: a ``docker.DockerClient``; its pool should hold at least
                ``workers`` connections (see ``observe.docker.connect``).
            workers: concurrent stats calls; default: the client's pool size.
                Engine 20.10 answers each call at its next 1 s collection tick,
                so N containers take about ceil(N / workers) seconds.
        """
        self.client = client
        self.workers = workers or pool_size(client)
        self._pool = ThreadPoolExecutor(max_workers=self.workers,
                                        thread_name_prefix="dockwarden-stats")
        self._prev: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._host_total: int | None = None
        self._one_shot = True

    def _fetch(self, cid: str) -> dict[str, Any] | None:
        try:
            if self._one_shot:
                try:
                    return self.client.api.stats(cid, stream=False, one_shot=True)
                except docker.errors.InvalidVersion:
                    # API < 1.41: no one-shot; stream=false then waits two ticks
                    # but fills precpu_stats.
                    self._one_shot = False
            return self.client.api.stats(cid, stream=False)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as e:
            log.debug("%s: stats failed: %s", cid[:12], e)
            return None
        except requests.exceptions.ReadTimeout:
            log.debug("%s: stats timed out", cid[:12])
            return None
        except ValueError as e:
            # Empty or truncated body: the container stopped during the call
            # (seen on Engine 20.10). requests' JSONDecodeError is a ValueError.
            log.debug("%s: stats unreadable: %s", cid[:12], e)
            return None

    def read(self, ids: Sequence[str]) -> dict[str, Stats]:
        """Read CPU % and memory of running containers from the engine.

        Args:
            ids: container ids, running ones.
        Returns:
            dict[str, Stats]: ``{id: (cpu_percent, memory_bytes, memory_limit_bytes)}``
            for ids the engine answered for (removed or failing ones are absent).
            cpu_percent is % of one core since the previous sample of that id
            (None the first time, unless the engine supplied ``precpu_stats``).
            Previous samples of ids not passed are forgotten.
        Raises:
            docker.errors.DockerException, requests.exceptions.RequestException:
                the engine is unreachable (connection refused, reset).
        Source: Engine API ``GET /containers/{id}/stats``; one-shot needs API 1.41.
        """
        if self._host_total is None:
            try:
                self._host_total = int(self.client.info().get("MemTotal") or 0)
            except docker.errors.APIError:
                self._host_total = 0
        docs = dict(zip(ids, self._pool.map(self._fetch, ids)))
        out: dict[str, Stats] = {}
        with self._lock:
            for cid, doc in docs.items():
                if doc is None:
                    self._prev.pop(cid, None)
                    continue
                cpu_ns, read_ns, mem, limit = stats_from_api(doc, host_total=self._host_total)
                pct = None
                if cpu_ns is not None and read_ns is not None:
                    pre = (doc.get("precpu_stats") or {}).get("cpu_usage") or {}
                    pre_read = model.parse_time(doc.get("preread"))
                    if pre.get("total_usage") and pre_read is not None:
                        pre_ns = int(pre_read.timestamp()) * 1_000_000_000 + pre_read.microsecond * 1000
                        pct = cpu_percent_between((pre["total_usage"], pre_ns), cpu_ns, read_ns)
                    else:
                        pct = cpu_percent_between(self._prev.get(cid), cpu_ns, read_ns)
                    self._prev[cid] = (cpu_ns, read_ns)
                out[cid] = (pct, mem, limit)
            seen = set(ids)
            for cid in list(self._prev):
                if cid not in seen:
                    del self._prev[cid]
        return out

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
