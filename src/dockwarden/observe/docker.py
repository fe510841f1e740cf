"""Observe containers through the Docker engine: list, inspect, stats.

With ``observe/events.py`` and ``observe/storage.py``, the part of observe that
talks to the engine (``execute.py`` is the part of dockwarden that changes it).
The pure mapping from inspect documents to records lives in
``observe/inspect.py``; the I/O is here, in :class:`ContainerObserver`.

Figures that shaped it (field notes, "Docker Engine API facts", Engine 20.10):
listing all containers takes about 10 ms; inspecting 100 takes about 0.15 s with
32 workers; one-shot stats wait for the daemon's 1 s tick, so the API reader is
only used when the engine's cgroups are not on this host.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import urllib.parse
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import docker.constants
import docker.errors
import docker.tls
import docker.utils
import requests.adapters
import requests.exceptions
import urllib3.exceptions

from dockwarden import model
from dockwarden import ssh_transport
from dockwarden.observe.inspect import container_state_from_inspect, container_state_from_list
from dockwarden.observe.plan import list_key, plan_inspection, sparse_split
from dockwarden.observe.stats import CgroupStatsReader, Stats
from dockwarden.observe.stats_api import ApiStatsReader

log = logging.getLogger(__name__)

#: Exceptions that mean "the engine is unreachable or failed". Callers of this
#: package catch these (and only these) to mark the engine as lost.
#: ``DockerException`` is the SDK's root (APIError, NotFound...); requests wraps
#: socket errors of normal calls in ``RequestException``; urllib3's ``HTTPError``
#: and the builtin ``ConnectionError`` can escape from streamed responses.
ENGINE_ERRORS: tuple[type[BaseException], ...] = (
    docker.errors.DockerException,
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    ConnectionError,
)

# --------------------------------------------------------------------------- connect


def connect(base_url: str | None = None, *, timeout_s: float = 10,
            max_pool_size: int = 64) -> docker.DockerClient:
    """Make a Docker client with a connection pool big enough for concurrent calls.

    Args:
        base_url: engine address (``unix:///var/run/docker.sock``,
            ``tcp://host:2375``); None reads ``DOCKER_HOST`` and friends
            (``docker.from_env``).
        timeout_s: timeout of each API call, seconds (event streams have none).
        max_pool_size: connections kept per engine. The SDK's default is 10, which
            caps concurrent inspects and stats calls (field notes); 64 lets
            :class:`ContainerObserver` run 32 inspects or 64 stats calls at once.
    Returns:
        docker.DockerClient: with the API version negotiated (``version="auto"``).
    Raises:
        docker.errors.DockerException: the engine cannot be reached (version
            negotiation contacts it at once) or the address is invalid.
    """
    kwargs: dict[str, Any] = {"version": "auto", "timeout": timeout_s, "max_pool_size": max_pool_size}
    ssh_transport.ensure_loaded(base_url or os.environ.get("DOCKER_HOST"))
    if base_url:
        client = docker.DockerClient(base_url=base_url, **kwargs)
    else:
        client = docker.from_env(**kwargs)
    api = client.api
    if str(api.base_url).startswith("http://"):
        # Plain TCP engines use requests' default adapter (pool of 10), ignoring
        # max_pool_size; mount one that honours it.
        api.mount("http://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max_pool_size))
    return client


#: Connections kept per ssh:// engine: each is an SSH session, and OpenSSH's
#: ``MaxSessions`` (default 10) caps them per connection (docker-py #2966).
SSH_POOL_SIZE = 4


def connect_node(cfg: model.NodeConfig, *, timeout_s: float = 10) -> docker.DockerClient:
    """A client of one node's engine (``hosts/<node>/node.yaml``).

    ``unix://`` and ``tcp://`` (with ``tls`` client certificates when given,
    docker-py's ``TLSConfig``) use a pool of 64 connections; ``ssh://`` uses
    docker-py's paramiko transport (keys and host keys from ``~/.ssh``) with
    :data:`SSH_POOL_SIZE` connections. No ``docker_host``: ``DOCKER_HOST`` or the
    local socket.

    The client ignores ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``: requests would
    let them replace the node's own CA (docker-py #2433). So the client is made
    with a fixed API version, told not to trust the environment, then the API
    version is negotiated (what ``version="auto"`` would do, without the
    environment's CA). A client that fails is closed (an ssh:// client holds an
    SSH session).

    Raises:
        docker.errors.DockerException: the engine cannot be reached or the TLS
            files cannot be read.
    """
    url = cfg.docker_host
    if not url:
        return connect(None, timeout_s=timeout_s)
    kwargs: dict[str, Any] = {"version": docker.constants.MINIMUM_DOCKER_API_VERSION, "timeout": timeout_s}
    if url.startswith("ssh://"):
        ssh_transport.ensure_loaded(url)
        kwargs["max_pool_size"] = SSH_POOL_SIZE
        kwargs["use_ssh_client"] = False
    else:
        kwargs["max_pool_size"] = 64
    if cfg.tls_client_cert or cfg.tls_ca_cert:
        cert = (cfg.tls_client_cert, cfg.tls_client_key) if cfg.tls_client_cert else None
        kwargs["tls"] = docker.tls.TLSConfig(client_cert=cert, ca_cert=cfg.tls_ca_cert, verify=cfg.tls_verify)
        url = url.replace("tcp://", "https://", 1)
    client = docker.DockerClient(base_url=url, **kwargs)
    try:
        client.api.trust_env = False  # requests.Session: no CA bundle, proxies or netrc from the environment
        server = str(client.api.version(api_version=False).get("ApiVersion") or "")
        if server:
            # The negotiated version, as version="auto" does: the lower of the server's and this SDK's.
            ours = docker.constants.DEFAULT_DOCKER_API_VERSION
            client.api._version = server if docker.utils.version_lt(server, ours) else ours
    except BaseException:
        client.close()
        raise
    return client


def image_present(client: Any, ref: str) -> bool:
    """Whether the engine has the image ``ref`` (no pull: a failover target must
    already hold it, issue 11).

    Raises:
        Exceptions in :data:`ENGINE_ERRORS` other than a 404: the engine failed.
    """
    if not ref:
        return False
    try:
        client.api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.NotFound:
        return False
    return True


def engine_is_local(client: Any) -> bool:
    """Whether the engine behind ``client`` runs on this host (so its containers'
    cgroups are under our ``/sys/fs/cgroup``).

    Args:
        client: a ``docker.DockerClient``.
    Returns:
        bool: True for a unix socket or a loopback TCP address. A unix socket
        forwarded from elsewhere is misjudged; the cgroup reader then finds no
        container and the API reader is used for them.
    """
    base = str(getattr(client.api, "base_url", ""))
    if base.startswith("http+docker://localhost") or base.startswith("http+unix://"):
        return True
    host = urllib.parse.urlsplit(base).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- observer

def _restat(c: model.ContainerState, s: Stats | None) -> model.ContainerState:
    """A kept container state with this pass's CPU/memory figures."""
    if s is None or not c.running:
        return c
    return c.with_usage(s[0], s[1], s[2] if s[2] is not None else c.memory_limit_bytes)


class ContainerObserver:
    """Observe all containers of one engine: list, inspect concurrently, read stats.

    Thread-safe: ``observe`` and ``inspect_one`` may be called from different
    threads (stats reads are serialised).
    """

    def __init__(self, client: Any, *, workers: int = 32, stats: str = "auto",
                 cgroup: CgroupStatsReader | None = None) -> None:
        """
        Args:
            client: a ``docker.DockerClient`` from :func:`connect` (its pool must
                hold ``workers`` connections, more for API stats).
            workers: concurrent inspect calls.
            stats: ``auto`` (cgroup files when the engine is local and its
                cgroups are found, with the API for containers not found there),
                ``cgroup`` (cgroup files only), ``api`` (engine stats only),
                ``none`` (no CPU/memory figures).
            cgroup: the cgroup reader to use (one already primed,
                :meth:`CgroupStatsReader.prime`); None makes one.
        Raises:
            ValueError: unknown ``stats`` mode.
        """
        if stats not in ("auto", "cgroup", "api", "none"):
            raise ValueError(f"stats: expected one of auto, cgroup, api, none; got {stats!r}")
        self.client = client
        self.workers = workers
        self.stats_mode = stats
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dockwarden-inspect")
        self._stats_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._stats_cache: dict[str, Stats] = {}
        self._cgroup: CgroupStatsReader | None = None
        self._api: ApiStatsReader | None = None
        self._info: dict[str, Any] | None = None
        # Last observation per container id: (list key, state), for incremental passes.
        self._known: dict[str, tuple[tuple | None, model.ContainerState]] = {}
        self.last_inspected = 0  # containers inspected by the last observe()
        if stats in ("auto", "cgroup"):
            cg = cgroup if cgroup is not None else CgroupStatsReader()
            if stats == "cgroup" or (cg.available() and engine_is_local(client)):
                self._cgroup = cg
        self._fallback_api = stats == "auto"

    @property
    def stats_source(self) -> str:
        """Which reader is in use: ``cgroup`` (with API fallback in auto mode),
        ``api`` or ``none``."""
        if self.stats_mode == "none":
            return "none"
        return "cgroup" if self._cgroup is not None else "api"

    def _api_reader(self) -> ApiStatsReader:
        if self._api is None:
            self._api = ApiStatsReader(self.client)
        return self._api

    def _read_stats(self, ids: Sequence[str]) -> dict[str, Stats]:
        if self.stats_mode == "none" or not ids:
            return {}
        with self._stats_lock:
            if self._cgroup is not None:
                got = self._cgroup.read(ids)
                missing = [i for i in ids if i not in got]
                if missing and self._fallback_api:
                    got.update(self._api_reader().read(missing))
                return got
            return self._api_reader().read(ids)

    def _inspect(self, cid: str) -> dict[str, Any] | None:
        try:
            return self.client.api.inspect_container(cid)
        except docker.errors.NotFound:
            return None

    def _with_stats(self, attrs: dict[str, Any], stats: dict[str, Stats]) -> model.ContainerState:
        s = stats.get(attrs["Id"]) if (attrs.get("State") or {}).get("Status") == "running" else None
        if s is None:
            return container_state_from_inspect(attrs)
        return container_state_from_inspect(attrs, cpu_percent=s[0], memory_bytes=s[1],
                                            memory_limit_bytes=s[2])

    def observe(self, *, with_stats: bool = True, incremental: bool = False,
                named: Collection[str] = (),
                sparse: Callable[[list[model.ContainerState]], Collection[str]] | None = None,
                ) -> list[model.ContainerState]:
        """Observe every container of the engine.

        Lists all containers (``GET /containers/json?all=1``), inspects them
        concurrently with ``workers`` threads, then reads CPU/memory of the
        running ones. Containers removed between list and inspect are skipped.

        Incremental (issue 9): the list call is cheap (about 10 ms for 100
        containers) and says for each container its state, and in its status
        text its health and exit code (:func:`list_key`). With ``incremental``,
        only containers whose list key changed since the last observation (or
        that an event re-inspected, :meth:`inspect_one`) are inspected again;
        the others keep their last inspected state, with fresh stats. A restart
        that changes none of these (``docker restart`` of a container without a
        healthcheck) is seen through its events; callers run a full
        (non-incremental) observation at a slower cadence as the safety net.

        Args:
            with_stats: read fresh CPU/memory figures. When False, the figures of
                the last pass that read them are attached to containers still
                running (stale but stable), or none.
            incremental: re-inspect only containers the list shows changed.
            named: container ids or names that engine events named since the
                last pass: always inspected (see :func:`plan_inspection`).
            sparse: build running containers with nothing wrong in their status
                from the list entry (:func:`sparse_split`, ``inspected`` False)
                instead of inspecting them, except those the callable names (ids
                or names) when given those list-built states: for a one-shot
                observation (``once``) that must still read, say, the spec of a
                tracked container it never recorded. 1 000 inspects take about
                4 s of the engine's time on 2 cores; the list, 0.2 s.
        Returns:
            list[model.ContainerState]: sorted by name.
        Raises:
            Exceptions in :data:`ENGINE_ERRORS`: the engine is unreachable or
                answered with an error other than 404 for a container.
        """
        listing = self.client.api.containers(all=True)
        with self._cache_lock:
            known = self._known
        keys = {c["Id"]: list_key(c) for c in listing}
        reuse, todo = plan_inspection(keys, known, incremental=incremental, named=named)
        light: list[model.ContainerState] = []
        if sparse is not None:
            light_ids, todo = sparse_split(keys, todo)
            entries = {c["Id"]: c for c in listing}
            light = [container_state_from_list(entries[cid]) for cid in light_ids]
            must = {n.lstrip("/") for n in sparse(light)}
            todo += [c.id for c in light if c.id in must or c.name in must]
            light = [c for c in light if c.id not in must and c.name not in must]
        docs = [d for d in self._pool.map(self._inspect, todo) if d is not None]
        self.last_inspected = len(docs)
        if with_stats:
            running = [d["Id"] for d in docs if (d.get("State") or {}).get("Status") == "running"]
            running += [cid for cid, c in reuse.items() if c.running] + [c.id for c in light]
            stats = self._read_stats(running)
            with self._cache_lock:
                self._stats_cache = dict(stats)
        else:
            with self._cache_lock:
                stats = dict(self._stats_cache)
        states = [self._with_stats(d, stats) for d in docs]
        states += [_restat(c, stats.get(cid)) for cid, c in reuse.items()]
        states += [_restat(c, stats.get(c.id)) for c in light]
        states.sort(key=lambda c: (c.name, c.id))
        # A list-built state is never reused: the next incremental observation inspects it.
        fresh = {c.id: (keys.get(c.id) if c.inspected else None, c) for c in states}
        with self._cache_lock:
            self._known = fresh
        return states

    def restat(self, containers: Sequence[model.ContainerState]) -> list[model.ContainerState]:
        """The same containers with fresh CPU/memory figures (no list, no inspect).

        A second stats read a short interval after an observation gives CPU %
        (``once``: two reads of the cgroup counters instead of two observations).

        Args:
            containers: states from :meth:`observe`.
        Returns:
            list[model.ContainerState]: same order; figures of running ones replaced.
        Raises:
            Exceptions in :data:`ENGINE_ERRORS`: only when the API stats reader is used.
        """
        stats = self._read_stats([c.id for c in containers if c.running])
        with self._cache_lock:
            self._stats_cache = dict(stats)
        return [_restat(c, stats.get(c.id)) for c in containers]

    def inspect_one(self, name_or_id: str) -> model.ContainerState | None:
        """Inspect one container, fast (one API call, no stats read).

        For event-driven passes. The last known CPU/memory figures of the
        container (from the last ``observe(with_stats=True)``) are attached when
        it is running.

        Args:
            name_or_id: container name (with or without "/") or id (full or prefix).
        Returns:
            model.ContainerState | None: None when the container does not exist.
        Raises:
            Exceptions in :data:`ENGINE_ERRORS`: the engine is unreachable.
        """
        attrs = self._inspect(name_or_id.lstrip("/"))
        if attrs is None:
            return None
        with self._cache_lock:
            stats = dict(self._stats_cache)
        c = self._with_stats(attrs, stats)
        with self._cache_lock:
            known = dict(self._known)
            known[c.id] = (None, c)  # the list key is unknown: the next incremental pass looks again
            self._known = known
        return c

    def engine_info(self) -> dict[str, Any]:
        """Facts about the engine (``GET /info``).

        Returns:
            dict: ``root_dir`` (DockerRootDir, e.g. ``/var/lib/docker``),
            ``driver`` (storage driver, e.g. ``overlay2``), ``server_version``
            (e.g. ``20.10.24+dfsg1``), ``api_version`` (negotiated, e.g. ``1.41``),
            ``cgroup_version`` (``"1"`` or ``"2"``), ``cgroup_driver``
            (``cgroupfs``/``systemd``), ``name`` (engine host name),
            ``ncpu``, ``mem_total_bytes``, ``stats_source`` (reader in use),
            ``system_time`` (the engine's clock, RFC 3339).
        Raises:
            Exceptions in :data:`ENGINE_ERRORS`: the engine is unreachable.
        """
        info = self.client.info()
        out = {
            "root_dir": info.get("DockerRootDir"),
            "driver": info.get("Driver"),
            "server_version": info.get("ServerVersion"),
            "api_version": getattr(self.client.api, "api_version", None),
            "cgroup_version": info.get("CgroupVersion"),
            "cgroup_driver": info.get("CgroupDriver"),
            "name": info.get("Name"),
            "ncpu": info.get("NCPU"),
            "mem_total_bytes": info.get("MemTotal"),
            "stats_source": self.stats_source,
            "system_time": info.get("SystemTime"),
        }
        self._info = out
        return out

    def root_dir(self) -> str | None:
        """The engine's DockerRootDir, fetched once and cached.

        Returns:
            str | None: e.g. ``/var/lib/docker``; None if the engine cannot be
            reached and it was never fetched.
        """
        if self._info is None:
            try:
                self.engine_info()
            except ENGINE_ERRORS:
                return None
        return (self._info or {}).get("root_dir")

    def close(self) -> None:
        """Stop the worker threads (the client stays open; it is the caller's)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._api is not None:
            self._api.close()
