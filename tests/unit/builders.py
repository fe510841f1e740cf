"""Hand-built states for the pure core's unit tests (no Docker, no clock)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from dockwarden.config import MB, Policy
from dockwarden.model import (
    ContainerState,
    DesiredState,
    DiskUsage,
    Drift,
    DriftKind,
    Finding,
    GuardRecord,
    HostStats,
    Intent,
    IntentRecord,
    IntentSource,
    ServiceHistory,
    ServiceSpec,
    WorldState,
)
from dockwarden.reconcile.assess import priority_of

GB = 1024 * MB
#: A fixed "now" for every test: Saturday 2026-11-21 10:00 UTC.
NOW = datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc)
POLICY = Policy()


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def container(name: str = "web", state: str = "running", **kw: Any) -> ContainerState:
    """A container; running ones started an hour ago, stopped ones finished a minute ago."""
    kw.setdefault("id", f"id-{name}")
    kw.setdefault("image", "dockwarden-test/busybox:latest")
    if state in ("running", "restarting", "paused"):
        kw.setdefault("started_at", ago(3600))
    if state in ("exited", "dead"):
        kw.setdefault("started_at", ago(3600))
        kw.setdefault("finished_at", ago(60))
        kw.setdefault("exit_code", 1)
    return ContainerState(name=name, state=state, **kw)


def compose_container(project: str, service: str, n: int = 1, state: str = "running",
                      **kw: Any) -> ContainerState:
    return container(f"{project}-{service}-{n}", state, compose_project=project,
                     compose_service=service, **kw)


def spec(name: str = "web", **kw: Any) -> ServiceSpec:
    return ServiceSpec(name=name, **kw)


def desired(*specs: ServiceSpec) -> DesiredState:
    return DesiredState(node="local", services={s.name: s for s in specs})


def disk(path: str = "/", percent: float = 50.0, total: int = 100 * GB,
         mountpoint: str | None = None) -> DiskUsage:
    used = int(total * percent / 100)
    return DiskUsage(path=path, total_bytes=total, used_bytes=used, free_bytes=total - used,
                     percent=percent, mountpoint=mountpoint)


def host(*, available: int = 4 * GB, swap_used: int = 0, disks: tuple[DiskUsage, ...] | None = None
         ) -> HostStats:
    """A host with healthy defaults: 8 GiB RAM, 4 GiB available, no swap used, / at 50 %."""
    return HostStats(cpu_percent=5.0, cpu_count=4, load1=0.1, load5=0.1, load15=0.1,
                     mem_total_bytes=8 * GB, mem_available_bytes=available,
                     swap_total_bytes=8 * GB, swap_used_bytes=swap_used,
                     disks=(disk(),) if disks is None else disks)


def world(*containers: ContainerState, host_stats: HostStats | None = None,
          engine_ok: bool = True) -> WorldState:
    return WorldState(node="local", observed_at=NOW,
                      host=host() if host_stats is None else host_stats,
                      containers=containers, engine_ok=engine_ok,
                      engine_error=None if engine_ok else "connection refused")


def guard(service: str = "web", **kw: Any) -> GuardRecord:
    return GuardRecord(service=service, **kw)


def history(service: str = "web", *, attempts: int = 0, **kw: Any) -> ServiceHistory:
    return ServiceHistory(guard=guard(service, attempts=attempts), **kw)


def intent(service: str, value: Intent, source: IntentSource = IntentSource.CLI) -> IntentRecord:
    return IntentRecord(service=service, intent=value, source=source, recorded_at=ago(10))


def drift(kind: DriftKind, subject: str = "web", *, tracked: bool = True,
          container_name: str | None = None, **details: Any) -> Drift:
    return Drift(kind, subject, container=container_name or subject, details=details,
                 tracked=tracked)


def finding(d: Drift) -> Finding:
    return Finding(d, priority_of(d))
