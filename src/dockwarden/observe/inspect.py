"""From the engine's inspect documents to dockwarden's records. Pure: no
engine, no I/O; tested on hand-written documents.

:func:`container_state_from_inspect` gives a
:class:`dockwarden.model.ContainerState`; :func:`spec_of` the creation spec that
``execute.py`` recreates a removed container from.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from dockwarden import model

#: Labels written by docker compose (v1 and v2) on the containers it creates.
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"

#: Longest healthcheck output kept in ContainerState.health_last_output, characters.
HEALTH_OUTPUT_MAX_CHARS = 500

#: Docker's default /dev/shm size (64 MiB); not repeated in a spec.
_DEFAULT_SHM_BYTES = 64 * 1024 * 1024


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
        auto_remove=bool(hc.get("AutoRemove")),
        stop_signal=str(cfg.get("StopSignal") or "") or None,
        cpu_percent=cpu_percent,
        memory_bytes=memory_bytes,
        memory_limit_bytes=memory_limit_bytes,
        spec=spec_of(attrs),
    )


#: Health as the list's status text shows it: ``Up 2 minutes (healthy)``, ``(unhealthy)``,
#: ``(health: starting)``.
_LIST_HEALTH = {"(healthy)": "healthy", "(unhealthy)": "unhealthy", "(health: starting)": "starting"}


def container_state_from_list(entry: dict[str, Any]) -> model.ContainerState:
    """Map a container list entry (``GET /containers/json?all=1``) to a
    :class:`model.ContainerState`, without an inspect.

    PURE. What the list gives: id, name, image, state, health (from the status
    text), labels, compose project/service, creation time. What only an inspect
    gives stays at its default and ``inspected`` is False: restart count, pid,
    start/finish times, exit code, OOM flag, restart policy, stop signal,
    health streak and output, and the creation ``spec``. Meant for a running
    container whose status shows nothing wrong (``plan_inspection``'s sparse
    mode): the drift rules read none of those fields for it.

    Args:
        entry: one list entry (``Id``, ``Names``, ``Image``, ``State``,
            ``Status``, ``Labels``, ``Created`` in Unix seconds).
    Returns:
        model.ContainerState: with ``inspected=False``.
    Raises:
        KeyError: ``entry`` has no ``Id``.
    """
    labels = dict(entry.get("Labels") or {})
    status_text = str(entry.get("Status") or "")
    health = next((h for k, h in _LIST_HEALTH.items() if k in status_text), None)
    created = entry.get("Created")
    names = entry.get("Names") or [""]
    return model.ContainerState(
        id=entry["Id"],
        name=str(names[0]).lstrip("/"),
        image=str(entry.get("Image") or ""),
        state=str(entry.get("State") or ""),
        health=health,
        created_at=datetime.fromtimestamp(int(created), timezone.utc) if created else None,
        labels=labels,
        compose_project=labels.get(COMPOSE_PROJECT_LABEL),
        compose_service=labels.get(COMPOSE_SERVICE_LABEL),
        inspected=False,
    )
