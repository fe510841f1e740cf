"""Observe containers through the Docker engine: list, inspect, stats.

The only module besides ``execute.py`` that talks to the engine. It turns the
engine's inspect documents into :class:`dockwarden.model.ContainerState` records
(pure functions :func:`container_state_from_inspect` and :func:`spec_of`, tested
without an engine) and does the I/O in :class:`ContainerObserver`.

Figures that shaped it (field notes, "Docker Engine API facts", Engine 20.10):
listing all containers takes about 10 ms; inspecting 100 takes about 0.15 s with
32 workers; one-shot stats wait for the daemon's 1 s tick, so the API reader is
only used when the engine's cgroups are not on this host.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import docker.errors
import requests.adapters
import requests.exceptions
import urllib3.exceptions

from dockwarden import model
from dockwarden.observe.stats import ApiStatsReader, CgroupStatsReader, Stats

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

#: Labels written by docker compose (v1 and v2) on the containers it creates.
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"

#: Longest healthcheck output kept in ContainerState.health_last_output, characters.
HEALTH_OUTPUT_MAX_CHARS = 500

#: Docker's default /dev/shm size (64 MiB); not repeated in a spec.
_DEFAULT_SHM_BYTES = 64 * 1024 * 1024


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


# --------------------------------------------------------------------------- pure mapping


def _nonempty(value: Any) -> bool:
    return value not in (None, "", [], {})


def spec_of(attrs: dict[str, Any]) -> dict[str, Any]:
    """The creation spec of a container, to recreate it with the docker SDK.

    PURE. ``client.containers.create(**spec)`` (or ``create(spec.pop("image"),
    **spec)``) makes a container with the same image, command, environment,
    labels, healthcheck, restart policy, ports, volumes, network and limits.

    Args:
        attrs: a container inspect document (``GET /containers/{id}/json``,
            ``client.api.inspect_container``).
    Returns:
        dict: JSON-serialisable keyword arguments of ``ContainerCollection.create``:
        always ``image``, ``name`` and ``labels``; ``command``, ``entrypoint``,
        ``environment`` (``["K=V", ...]``), ``working_dir``, ``user``,
        ``hostname`` (only when set explicitly, i.e. not the id's first 12
        characters), ``domainname``, ``healthcheck`` (``{test, interval, timeout,
        retries, start_period}``, durations in ns as the SDK expects),
        ``restart_policy`` (``{"Name", "MaximumRetryCount"}``), ``ports``
        (``{"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}``, a form
        the SDK accepts and that survives a JSON round trip, unlike tuples),
        ``publish_all_ports``, ``volumes`` (bind strings ``src:dst[:mode]``,
        including the container's anonymous volumes by their current name so
        their data survives a recreate, as compose does), ``mounts``
        (HostConfig.Mounts in API form), ``network_mode``, ``mem_limit`` and
        ``memswap_limit`` (bytes), CPU limits, capabilities, ``privileged``,
        ``read_only``, ``extra_hosts``, ``dns``, ``tmpfs``, ``init``,
        ``shm_size``, ``sysctls``, ``ulimits``, ``log_config``, ``stop_signal``,
        ``tty``, ``stdin_open`` -- each only when set.

        Not included: ``stop_timeout`` (``ContainerCollection.create`` rejects
        it; docker SDK 7.1), secondary networks and their aliases, devices,
        and ``Config`` values inherited from the image are pinned as they are now
        (an updated image's new CMD is not picked up).
    """
    cfg = attrs.get("Config") or {}
    hc = attrs.get("HostConfig") or {}
    cid = str(attrs.get("Id") or "")
    spec: dict[str, Any] = {
        "image": cfg.get("Image") or attrs.get("Image"),
        "name": str(attrs.get("Name") or "").lstrip("/"),
        "labels": dict(cfg.get("Labels") or {}),
    }

    def put(key: str, value: Any) -> None:
        if _nonempty(value):
            spec[key] = value

    put("command", list(cfg["Cmd"]) if cfg.get("Cmd") else None)
    put("entrypoint", list(cfg["Entrypoint"]) if cfg.get("Entrypoint") else None)
    put("environment", list(cfg["Env"]) if cfg.get("Env") else None)
    put("working_dir", cfg.get("WorkingDir"))
    put("user", cfg.get("User"))

    network_mode = hc.get("NetworkMode") or ""
    shares_uts = network_mode == "host" or network_mode.startswith("container:")
    hostname = cfg.get("Hostname") or ""
    if hostname and not shares_uts and not (len(hostname) == 12 and cid.startswith(hostname)):
        spec["hostname"] = hostname
    if not shares_uts:
        put("domainname", cfg.get("Domainname"))

    hcheck = cfg.get("Healthcheck")
    if hcheck and hcheck.get("Test"):
        spec["healthcheck"] = {
            "test": list(hcheck["Test"]),
            "interval": hcheck.get("Interval") or None,
            "timeout": hcheck.get("Timeout") or None,
            "retries": hcheck.get("Retries") or None,
            "start_period": hcheck.get("StartPeriod") or None,
        }

    rp = hc.get("RestartPolicy") or {}
    if rp.get("Name") and rp["Name"] != "no":
        spec["restart_policy"] = {"Name": rp["Name"],
                                  "MaximumRetryCount": int(rp.get("MaximumRetryCount") or 0)}

    bindings = hc.get("PortBindings") or {}
    ports: dict[str, list[dict[str, str]]] = {}
    for port, binds in sorted(bindings.items()):
        ports[port] = [{"HostIp": b.get("HostIp") or "", "HostPort": str(b.get("HostPort") or "")}
                       for b in (binds or [])] or [{"HostIp": "", "HostPort": ""}]
    put("ports", ports)
    if hc.get("PublishAllPorts"):
        spec["publish_all_ports"] = True

    # "src:dst[:mode]" entries are kept; a bare "/dst" (docker-py's way of asking
    # for an anonymous volume) is replaced by the volume's name below.
    binds = [b for b in (hc.get("Binds") or []) if ":" in b]
    covered = {b.split(":")[1] for b in binds}
    mounts = [dict(m) for m in (hc.get("Mounts") or [])]
    covered |= {m.get("Target") for m in mounts}
    for m in attrs.get("Mounts") or []:
        # Anonymous volumes (image VOLUME or `-v /path`): bind them by name.
        dest = m.get("Destination")
        if m.get("Type") == "volume" and m.get("Name") and dest and dest not in covered:
            binds.append(f"{m['Name']}:{dest}" + ("" if m.get("RW", True) else ":ro"))
            covered.add(dest)
    put("volumes", binds)
    put("mounts", mounts)

    if network_mode and network_mode != "default":
        spec["network_mode"] = network_mode

    memory = int(hc.get("Memory") or 0)
    if memory > 0:
        spec["mem_limit"] = memory
        swap = int(hc.get("MemorySwap") or 0)
        if swap:
            spec["memswap_limit"] = swap
    if hc.get("MemoryReservation"):
        spec["mem_reservation"] = int(hc["MemoryReservation"])
    for key, src in (("nano_cpus", "NanoCpus"), ("cpu_shares", "CpuShares"),
                     ("cpu_quota", "CpuQuota"), ("cpu_period", "CpuPeriod"),
                     ("cpuset_cpus", "CpusetCpus"), ("pids_limit", "PidsLimit")):
        val = hc.get(src)
        if val not in (None, 0, "", -1) and not (src == "PidsLimit" and val <= 0):
            spec[key] = val
    put("cap_add", list(hc.get("CapAdd") or []))
    put("cap_drop", list(hc.get("CapDrop") or []))
    if hc.get("Privileged"):
        spec["privileged"] = True
    if hc.get("ReadonlyRootfs"):
        spec["read_only"] = True
    put("extra_hosts", list(hc.get("ExtraHosts") or []))
    put("dns", list(hc.get("Dns") or []))
    put("dns_search", list(hc.get("DnsSearch") or []))
    put("tmpfs", dict(hc.get("Tmpfs") or {}))
    if hc.get("Init"):
        spec["init"] = True
    shm = int(hc.get("ShmSize") or 0)
    if shm and shm != _DEFAULT_SHM_BYTES:
        spec["shm_size"] = shm
    put("sysctls", dict(hc.get("Sysctls") or {}))
    put("ulimits", [dict(u) for u in (hc.get("Ulimits") or [])])
    log_cfg = hc.get("LogConfig") or {}
    if log_cfg.get("Config"):
        spec["log_config"] = {"Type": log_cfg.get("Type") or "json-file", "Config": dict(log_cfg["Config"])}
    put("stop_signal", cfg.get("StopSignal"))
    if cfg.get("Tty"):
        spec["tty"] = True
    if cfg.get("OpenStdin"):
        spec["stdin_open"] = True
    return spec


def container_state_from_inspect(attrs: dict[str, Any], *, cpu_percent: float | None = None,
                                 memory_bytes: int | None = None,
                                 memory_limit_bytes: int | None = None) -> model.ContainerState:
    """Map a container inspect document to a :class:`model.ContainerState`.

    PURE.

    Args:
        attrs: a container inspect document (``GET /containers/{id}/json``).
        cpu_percent: % of one core from a stats reader, or None.
        memory_bytes: memory in use from a stats reader, bytes, or None.
        memory_limit_bytes: memory limit from a stats reader, bytes; when None,
            ``HostConfig.Memory`` is used if > 0.
    Returns:
        model.ContainerState: ``state`` is ``State.Status``; ``health`` is
        ``State.Health.Status`` or None without a healthcheck;
        ``health_last_output`` the last ``Health.Log`` entry's output, stripped
        and cut to 500 characters (None when empty); ``exit_code`` is
        ``State.ExitCode``, but None for running and paused containers (the
        engine resets it to 0 on start) and for never-started created ones (a
        failed start leaves ``created`` with e.g. 127 and ``error`` set, kept); times are None for Docker's
        "never" (``0001-01-01T00:00:00Z``); compose project/service come from
        the ``com.docker.compose.*`` labels; ``spec`` is :func:`spec_of`.
    Raises:
        KeyError: ``attrs`` has no ``Id`` (not an inspect document).
    """
    state = attrs.get("State") or {}
    cfg = attrs.get("Config") or {}
    hc = attrs.get("HostConfig") or {}
    labels = dict(cfg.get("Labels") or {})
    status = str(state.get("Status") or "")

    health = state.get("Health") or None
    health_status = None
    streak = 0
    last_output = None
    if health:
        health_status = health.get("Status") or None
        if health_status == "none":
            health_status = None
        streak = int(health.get("FailingStreak") or 0)
        logs = health.get("Log") or []
        if logs:
            out = str(logs[-1].get("Output") or "").strip()
            last_output = out[:HEALTH_OUTPUT_MAX_CHARS] or None

    ec = state.get("ExitCode")
    exit_code = int(ec) if ec is not None else None
    if status in ("running", "paused") or (status == "created" and not exit_code):
        exit_code = None

    if memory_limit_bytes is None:
        mem = int(hc.get("Memory") or 0)
        memory_limit_bytes = mem if mem > 0 else None

    rp = (hc.get("RestartPolicy") or {}).get("Name") or None

    return model.ContainerState(
        id=attrs["Id"],
        name=str(attrs.get("Name") or "").lstrip("/"),
        image=str(cfg.get("Image") or attrs.get("Image") or ""),
        state=status,
        health=health_status,
        health_failing_streak=streak,
        health_last_output=last_output,
        exit_code=exit_code,
        oom_killed=bool(state.get("OOMKilled")),
        error=state.get("Error") or None,
        restart_count=int(attrs.get("RestartCount") or 0),
        pid=int(state.get("Pid") or 0),
        created_at=model.parse_time(attrs.get("Created")),
        started_at=model.parse_time(state.get("StartedAt")),
        finished_at=model.parse_time(state.get("FinishedAt")),
        labels=labels,
        compose_project=labels.get(COMPOSE_PROJECT_LABEL),
        compose_service=labels.get(COMPOSE_SERVICE_LABEL),
        restart_policy=rp,
        cpu_percent=cpu_percent,
        memory_bytes=memory_bytes,
        memory_limit_bytes=memory_limit_bytes,
        spec=spec_of(attrs),
    )


# --------------------------------------------------------------------------- observer


class ContainerObserver:
    """Observe all containers of one engine: list, inspect concurrently, read stats.

    Thread-safe: ``observe`` and ``inspect_one`` may be called from different
    threads (stats reads are serialised).
    """

    def __init__(self, client: Any, *, workers: int = 32, stats: str = "auto") -> None:
        """
        Args:
            client: a ``docker.DockerClient`` from :func:`connect` (its pool must
                hold ``workers`` connections, more for API stats).
            workers: concurrent inspect calls.
            stats: ``auto`` (cgroup files when the engine is local and its
                cgroups are found, with the API for containers not found there),
                ``cgroup`` (cgroup files only), ``api`` (engine stats only),
                ``none`` (no CPU/memory figures).
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
        if stats in ("auto", "cgroup"):
            cg = CgroupStatsReader()
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

    def observe(self, *, with_stats: bool = True) -> list[model.ContainerState]:
        """Observe every container of the engine.

        Lists all containers (``GET /containers/json?all=1``), inspects them
        concurrently with ``workers`` threads, then reads CPU/memory of the
        running ones. Containers removed between list and inspect are skipped.

        Args:
            with_stats: read fresh CPU/memory figures. When False, the figures of
                the last pass that read them are attached to containers still
                running (stale but stable), or none.
        Returns:
            list[model.ContainerState]: sorted by name.
        Raises:
            Exceptions in :data:`ENGINE_ERRORS`: the engine is unreachable or
                answered with an error other than 404 for a container.
        """
        listing = self.client.api.containers(all=True)
        ids = [c["Id"] for c in listing]
        docs = [d for d in self._pool.map(self._inspect, ids) if d is not None]
        if with_stats:
            running = [d["Id"] for d in docs if (d.get("State") or {}).get("Status") == "running"]
            stats = self._read_stats(running)
            with self._cache_lock:
                self._stats_cache = dict(stats)
        else:
            with self._cache_lock:
                stats = dict(self._stats_cache)
        states = [self._with_stats(d, stats) for d in docs]
        states.sort(key=lambda c: (c.name, c.id))
        return states

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
        return self._with_stats(attrs, stats)

    def engine_info(self) -> dict[str, Any]:
        """Facts about the engine (``GET /info``).

        Returns:
            dict: ``root_dir`` (DockerRootDir, e.g. ``/var/lib/docker``),
            ``driver`` (storage driver, e.g. ``overlay2``), ``server_version``
            (e.g. ``20.10.24+dfsg1``), ``api_version`` (negotiated, e.g. ``1.41``),
            ``cgroup_version`` (``"1"`` or ``"2"``), ``cgroup_driver``
            (``cgroupfs``/``systemd``), ``name`` (engine host name),
            ``ncpu``, ``mem_total_bytes``, ``stats_source`` (reader in use).
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
