"""Drift detection: the differences between desired state and world state.

Pure: no I/O, no clock (``now`` is a parameter), no Docker objects. The same
inputs always give the same list of :class:`~dockwarden.model.Drift` in the same
order (design.md: idempotent runs).

Subjects and keys. ``Drift.key`` is ``(subject, kind)`` and must be unique per
pass, so host drifts use one subject per resource: ``host:memory``,
``host:swap`` and ``host:disk:<path>`` (e.g. ``host:disk:/var/lib/docker``).
Service drifts use the service name; drifts of untracked containers use the
container name.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dockwarden.config import Policy
from dockwarden.model import (
    ContainerState,
    DesiredState,
    Drift,
    DriftKind,
    HostStats,
    Intent,
    IntentRecord,
    ServiceHistory,
    ServiceSpec,
    WorldState,
    rfc3339,
)
from dockwarden.reconcile.resolve import ServiceIndex, find_container

#: Docker ``State.Status`` values in which a service is down (not running).
DOWN_STATES = frozenset({"exited", "dead", "created"})
#: Exit codes of a stop by signal (128 + SIGKILL, 128 + SIGTERM): a person or
#: Containers a dockwarden subsystem manages itself (the pool labels its workers so).
MANAGED_LABEL = "dockwarden.managed"

#: ``docker stop`` ended the container, so an untracked one is not reported.
SIGNAL_EXIT_CODES = frozenset({137, 143})
#: Label that opts a container out of dockwarden (value compared case-insensitively).
ENABLE_LABEL = "dockwarden.enable"
#: Host subject prefix; see the module docstring.
HOST = "host"

_MiB = 1024 * 1024


def effective_intent(spec: ServiceSpec, intent: IntentRecord | None) -> Intent:
    """The intent that governs a service now.

    A recorded intent (source ``cli`` or ``observed``, from the intent store)
    always wins over ``spec.desired``; the caller clears recorded intents when
    the inventory changes.

    Args:
        spec (ServiceSpec): The service, with its inventory/label intent.
        intent (IntentRecord | None): The recorded intent, if any.
    Returns:
        Intent: ``running`` or ``stopped``.
    """
    return intent.intent if intent is not None else spec.desired


def available(c: ContainerState | None) -> bool:
    """True when a container can serve dependants: it exists, is running, and
    its health is ``None`` (no healthcheck) or ``healthy`` (``starting`` is not
    yet available)."""
    return c is not None and c.running and c.health in (None, "healthy")


def _host_drifts(host: HostStats, policy: Policy) -> list[Drift]:
    """Resource pressure on the host; thresholds from disinto (seed 000)."""
    t = policy.thresholds
    out: list[Drift] = []
    avail = host.mem_available_bytes
    mem = {
        "resource": "memory",
        "mem_available_bytes": avail,
        "mem_total_bytes": host.mem_total_bytes,
        "threshold_bytes": t.memory_crisis_available_bytes,
    }
    if avail < t.memory_crisis_available_bytes:
        out.append(Drift(
            DriftKind.RESOURCE_PRESSURE, f"{HOST}:memory",
            reason=f"memory crisis: {avail // _MiB} MiB available "
                   f"< {t.memory_crisis_available_bytes // _MiB} MiB",
            details=mem,
        ))
    if host.swap_used_bytes > t.swap_crisis_used_bytes and avail < t.memory_low_available_bytes:
        out.append(Drift(
            DriftKind.RESOURCE_PRESSURE, f"{HOST}:swap",
            reason=f"swap crisis: {host.swap_used_bytes // _MiB} MiB swap used "
                   f"> {t.swap_crisis_used_bytes // _MiB} MiB with {avail // _MiB} MiB RAM available "
                   f"< {t.memory_low_available_bytes // _MiB} MiB",
            details={
                "resource": "swap",
                "swap_used_bytes": host.swap_used_bytes,
                "swap_total_bytes": host.swap_total_bytes,
                "swap_threshold_bytes": t.swap_crisis_used_bytes,
                "mem_available_bytes": avail,
                "mem_low_threshold_bytes": t.memory_low_available_bytes,
            },
        ))
    seen_fs: set[str] = set()
    for d in host.disks:
        fs = d.mountpoint or d.path
        if fs in seen_fs:
            continue  # one finding per filesystem, not one per path on it
        seen_fs.add(fs)
        if d.percent > t.disk_critical_percent:
            level, limit = "critical", t.disk_critical_percent
        elif d.percent > t.disk_warn_percent:
            level, limit = "warn", t.disk_warn_percent
        else:
            continue
        out.append(Drift(
            DriftKind.RESOURCE_PRESSURE, f"{HOST}:disk:{d.path}",
            reason=f"disk {d.path} {d.percent:.1f}% full (> {limit:g}%, {level})",
            details={
                "resource": "disk", "level": level, "path": d.path, "percent": d.percent,
                "mountpoint": d.mountpoint, "used_bytes": d.used_bytes, "free_bytes": d.free_bytes,
                "total_bytes": d.total_bytes, "threshold_percent": limit,
            },
        ))
    return out


def _down_drift(spec: ServiceSpec, c: ContainerState | None,
                history: ServiceHistory | None, now: datetime) -> Drift | None:
    """The primary drift of a running-intent service, or None when it is fine."""
    name = spec.name
    if c is None:
        where = f"compose project {spec.compose_project!r}" if spec.compose_project else "the engine"
        return Drift(
            DriftKind.MISSING, name, container=spec.container_name,
            reason=f"{name}: no container in {where}",
            details={"compose_project": spec.compose_project,
                     "has_recorded_spec": bool(history and history.recorded_spec)},
        )
    if c.state in DOWN_STATES or c.state == "paused":
        det: dict[str, Any] = {
            "state": c.state, "exit_code": c.exit_code, "oom_killed": c.oom_killed,
            "error": c.error, "finished_at": rfc3339(c.finished_at),
            "paused": c.state == "paused",
        }
        if c.finished_at is not None and c.state != "paused":
            det["down_for_s"] = max(0.0, (now - c.finished_at).total_seconds())
        if c.state == "paused":
            why = "is paused"
        elif c.state == "created":
            why = "was created but never started"
        else:
            why = f"{c.state} with code {c.exit_code}" + (" (OOM-killed)" if c.oom_killed else "")
        return Drift(DriftKind.STOPPED, name, container=c.name,
                     reason=f"{name}: container {c.name} {why}", details=det)
    if c.state == "restarting":
        return Drift(
            DriftKind.CRASH_LOOP, name, container=c.name,
            reason=f"{name}: Docker's restart policy is looping "
                   f"({c.restart_count} restarts, last exit code {c.exit_code})",
            details={"source": "docker_restart_policy", "restart_count": c.restart_count,
                     "exit_code": c.exit_code, "error": c.error, "oom_killed": c.oom_killed},
        )
    if c.running and c.health == "unhealthy":
        return Drift(
            DriftKind.UNHEALTHY, name, container=c.name,
            reason=f"{name}: unhealthy ({c.health_failing_streak} failing checks in a row)",
            details={"health_failing_streak": c.health_failing_streak,
                     "health_last_output": c.health_last_output},
        )
    return None  # running (health none/starting/healthy), or removing: look again next pass


def _service_drifts(spec: ServiceSpec, desired: DesiredState, world: WorldState,
                    intents: Mapping[str, IntentRecord], history: ServiceHistory | None,
                    policy: Policy, now: datetime) -> list[Drift]:
    recorded = intents.get(spec.name)
    if effective_intent(spec, recorded) is not Intent.RUNNING:
        # Never start what the operator stopped (flatrun, Monit); but say so when it runs anyway.
        c = find_container(spec, world)
        if c is None or not c.running:
            return []
        source = recorded.source.value if recorded is not None else spec.source.value
        return [Drift(
            DriftKind.RUNNING_AGAINST_INTENT, spec.name, container=c.name,
            reason=f"{spec.name}: container {c.name} runs though its intent is stopped ({source})",
            details={"intent_source": source, "intent_reason": recorded.reason if recorded else "",
                     "intent_recorded_at": rfc3339(recorded.recorded_at) if recorded else None},
        )]
    c = find_container(spec, world)
    primary = _down_drift(spec, c, history, now)
    problem = primary is not None
    drifts: list[Drift] = [primary] if primary else []
    cname = c.name if c else spec.container_name

    attempts = history.guard.attempts if history else 0
    if problem and attempts >= policy.crash_loop.min_failures:
        if primary.kind is DriftKind.CRASH_LOOP:  # merge: one drift per key
            drifts[0] = Drift(primary.kind, primary.subject, primary.container, primary.reason,
                              {**primary.details, "attempts": attempts}, primary.tracked)
        else:
            drifts.append(Drift(
                DriftKind.CRASH_LOOP, spec.name, container=cname,
                reason=f"{spec.name}: still down after {attempts} remediation attempts",
                details={"source": "history", "attempts": attempts},
            ))
    if problem and history and history.failed_actions_in_row >= 1:
        drifts.append(Drift(
            DriftKind.FAILED_DEPLOYMENT, spec.name, container=cname,
            reason=f"{spec.name}: {history.failed_actions_in_row} action(s) in a row failed: "
                   f"{history.last_failure or 'no reason recorded'}",
            details={"last_failure": history.last_failure,
                     "failed_actions_in_row": history.failed_actions_in_row},
        ))

    missing_deps, unknown, stopped_by_intent = [], [], []
    for dep in spec.depends_on:
        dspec = desired.services.get(dep)
        if dspec is None:
            unknown.append(dep)
            missing_deps.append(dep)
            continue
        if not available(find_container(dspec, world)):
            missing_deps.append(dep)
            if effective_intent(dspec, intents.get(dep)) is Intent.STOPPED:
                stopped_by_intent.append(dep)
    if missing_deps:
        drifts.append(Drift(
            DriftKind.DEPENDENCY_UNAVAILABLE, spec.name, container=cname,
            reason=f"{spec.name}: dependencies not running and healthy: {', '.join(missing_deps)}",
            details={"dependencies": missing_deps, "unknown": unknown,
                     "stopped_by_intent": stopped_by_intent, "dependant_running": not problem,
                     "dependant_state": c.state if c else None},
        ))
    return drifts


def _untracked_drift(c: ContainerState) -> Drift | None:
    """Recommend-only drifts of containers no service claims."""
    if c.state in ("exited", "dead") and c.exit_code not in (None, 0) and (
        c.exit_code not in SIGNAL_EXIT_CODES or c.oom_killed
    ):
        return Drift(
            DriftKind.STOPPED, c.name, container=c.name, tracked=False,
            reason=f"untracked container {c.name} {c.state} with code {c.exit_code}"
                   + (" (OOM-killed)" if c.oom_killed else ""),
            details={"state": c.state, "exit_code": c.exit_code, "oom_killed": c.oom_killed,
                     "error": c.error, "finished_at": rfc3339(c.finished_at), "paused": False},
        )
    if c.running and c.health == "unhealthy":
        return Drift(
            DriftKind.UNHEALTHY, c.name, container=c.name, tracked=False,
            reason=f"untracked container {c.name} unhealthy "
                   f"({c.health_failing_streak} failing checks in a row)",
            details={"health_failing_streak": c.health_failing_streak,
                     "health_last_output": c.health_last_output},
        )
    return None


def detect_drift(desired: DesiredState, world: WorldState, intents: Mapping[str, IntentRecord],
                 histories: Mapping[str, ServiceHistory], policy: Policy, *,
                 now: datetime) -> list[Drift]:
    """Every difference between the desired state and the world, in a fixed order.

    Order: host drifts (memory, swap, then disks in ``host.disks`` order), then
    tracked services sorted by name (per service: the primary drift, then
    ``crash_loop``, ``failed_deployment``, ``dependency_unavailable``), then
    untracked containers sorted by name.

    Rules (thresholds from disinto, seed 000; "never start what the operator
    stopped" from flatrun/Monit; unhealthy-restart from docker-autoheal):

    * ``world.engine_ok`` False: no container drift at all (the caller reports
      "could not check"); host drifts are still computed when ``world.host``.
    * Host ``resource_pressure``: memory when available < ``memory_crisis_available_bytes``;
      swap when used > ``swap_crisis_used_bytes`` and available <
      ``memory_low_available_bytes``; disk per filesystem fuller than
      ``disk_warn_percent`` (``level`` "warn") or ``disk_critical_percent``
      ("critical"). Comparisons are strict, as the policy fields document
      ("drops below", "exceeds", "fuller than").
    * A service whose effective intent is ``stopped`` gets no drift, unless its
      container runs: then ``running_against_intent`` (details ``intent_source``).
    * Running intent: no container -> ``missing``; exited/dead/created/paused ->
      ``stopped``; restarting -> ``crash_loop``; running and unhealthy ->
      ``unhealthy``. While down or unhealthy: ``guard.attempts >=
      crash_loop.min_failures`` adds ``crash_loop`` (merged into the restarting
      one, details ``attempts``); ``failed_actions_in_row >= 1`` adds
      ``failed_deployment``.
    * Any ``depends_on`` entry not running-and-healthy (or not a tracked
      service: details ``unknown``) adds ``dependency_unavailable`` with
      ``dependant_running`` = the dependant itself has no other drift.
    * Untracked containers (matched by no service, not labelled
      ``dockwarden.enable=false``): exited/dead with a non-zero code other than
      137/143 (kept when OOM-killed) -> ``stopped``; unhealthy -> ``unhealthy``;
      both with ``tracked=False``.

    Args:
        desired (DesiredState): Tracked services by name.
        world (WorldState): The observed node.
        intents (Mapping[str, IntentRecord]): Recorded intents by service name.
        histories (Mapping[str, ServiceHistory]): History by service name; absent
            means no history.
        policy (Policy): Thresholds and crash-loop settings.
        now (datetime): Aware UTC time of the pass (for ``down_for_s``).
    Returns:
        list[Drift]: Unique by ``Drift.key``.
    """
    drifts: list[Drift] = []
    if world.host is not None:
        drifts.extend(_host_drifts(world.host, policy))
    if not world.engine_ok:
        return drifts
    for name in sorted(desired.services):
        spec = desired.services[name]
        drifts.extend(_service_drifts(spec, desired, world, intents, histories.get(name), policy, now))
    claimed = ServiceIndex(desired)
    for c in sorted(world.containers, key=lambda c: (c.name, c.id)):
        if claimed.claims(c):
            continue
        if c.labels.get(ENABLE_LABEL, "").strip().lower() == "false":
            continue
        if c.labels.get(MANAGED_LABEL, "").strip().lower() == "true":
            continue  # managed by a dockwarden subsystem (the container pool), which judges it itself
        d = _untracked_drift(c)
        if d is not None:
            drifts.append(d)
    return drifts


def disk_filesystem(drift: Drift) -> str | None:
    """The filesystem a disk-pressure drift is about, or None for any other drift.

    Both reports of a full disk name it the same way: the host's
    ``host:disk:<path>`` drift (:func:`detect_drift`) and the storage worker's
    ``host:storage:<root dir>`` drift (``storage/monitor.py``) carry the
    filesystem's mount point in ``details["mountpoint"]``; a drift without one
    (mount point unknown) falls back to ``details["path"]``. The disk-trend
    forecast (``level`` "trend", ``reconcile/trends.py``) is not a pressure
    report and gets None.

    Returns:
        str | None: e.g. "/" for ``/var/lib/docker`` on the root filesystem.
    """
    det = drift.details
    if (drift.kind is not DriftKind.RESOURCE_PRESSURE or det.get("resource") != "disk"
            or det.get("level") not in ("warn", "critical")):
        return None
    fs = det.get("mountpoint") or det.get("path")
    return str(fs) if fs else None


def merge_disk_drifts(drifts: list[Drift]) -> list[Drift]:
    """One disk-pressure finding per filesystem.

    The storage worker's ``host:storage:<root>`` drift (the same P1 condition,
    with the breakdown of what fills the disk) supersedes the plain
    ``host:disk:<path>`` drift (warn or critical) of the same filesystem, as
    :func:`disk_filesystem` names it (the mount point), so one full disk is one
    finding. The two samples are taken at different times, so the host may
    still say "warn" while the storage worker measured "critical": the storage
    drift exists only above the critical level, so it is the worse and the
    richer report either way. (Incidents key both on the filesystem anyway:
    ``reconcile/incident_rules.py`` ``incident_key``.)

    Args:
        drifts (list[Drift]): One pass's drifts, host's and workers'.
    Returns:
        list[Drift]: The same drifts in the same order, minus the superseded ones.
    """
    richer = {disk_filesystem(d) for d in drifts if d.subject.startswith(f"{HOST}:storage:")} - {None}
    if not richer:
        return drifts
    return [d for d in drifts
            if not (d.subject.startswith(f"{HOST}:disk:") and disk_filesystem(d) in richer)]


def state_write_drift(state_dir: str, *, held: int, dropped: int, error: str) -> Drift:
    """The P1 finding while the state dir cannot be written (disk full,
    read-only): dockwarden keeps observing and healing, and holds what it would
    record in memory (bounded) until it can write again.

    Args:
        state_dir: the state dir's path.
        held: records waiting in memory.
        dropped: records dropped because the in-memory bound was reached.
        error: the write error, e.g. ``database or disk is full``.
    Returns:
        Drift: ``resource_pressure`` on ``host:state`` with ``level`` critical (P1).
    """
    lost = f"; {dropped} dropped (memory bound reached)" if dropped else ""
    return Drift(
        DriftKind.RESOURCE_PRESSURE, f"{HOST}:state",
        reason=f"cannot write the state dir {state_dir} ({error}): {held} records held in memory{lost}; "
               "dockwarden keeps healing and writes them once there is space",
        details={"resource": "state", "level": "critical", "path": state_dir, "held_records": held,
                 "dropped_records": dropped, "error": error},
    )
