"""The pool's schema and records: the two tables with their indices
(migrations of component ``pool``) and the row types read from them.

Columns are the original's (aidevops PR 2184, seed 004: ``container_pool``,
``container_dispatch_log``) plus ``command``, ``exit_code`` and ``error`` on
dispatches, which its defects showed were needed (completions were never
recorded). Times are RFC 3339 UTC text with milliseconds.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from dockwarden.model import parse_time

STATUSES = ("starting", "healthy", "unhealthy", "rate_limited", "stopping", "stopped", "failed")
OUTCOMES = ("ok", "failed", "rate_limited")

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE container_pool (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            image TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('starting','healthy','unhealthy','rate_limited','stopping','stopped','failed')),
            docker_id TEXT,
            host TEXT NOT NULL,
            last_health_check TEXT,
            last_dispatch_at TEXT,
            dispatch_count INTEGER NOT NULL DEFAULT 0,
            rate_limit_until TEXT,
            rate_limit_count INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        # Unique among live rows only: a destroyed container's name can be reused.
        "CREATE UNIQUE INDEX container_pool_live_name ON container_pool (name) WHERE status <> 'stopped'",
        "CREATE INDEX container_pool_select ON container_pool (status, last_dispatch_at, name)",
        """CREATE TABLE container_dispatch_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            container_id INTEGER NOT NULL REFERENCES container_pool (id),
            task_id TEXT,
            command TEXT,
            dispatched_at TEXT NOT NULL,
            completed_at TEXT,
            outcome TEXT CHECK (outcome IS NULL OR outcome IN ('ok','failed','rate_limited')),
            exit_code INTEGER,
            error TEXT
        )""",
        # The busy test of select: open dispatches of one container.
        "CREATE INDEX container_dispatch_open ON container_dispatch_log (container_id) WHERE completed_at IS NULL",
        "CREATE INDEX container_dispatch_container ON container_dispatch_log (container_id, dispatched_at)",
    ),
    # When a container turned unhealthy: a running one failing its probes is
    # replaced only after 3 health intervals (kubelet: liveness failureThreshold 3).
    2: ("ALTER TABLE container_pool ADD COLUMN unhealthy_since TEXT",),
}

#: A pool row with the id of its oldest open dispatch (None when not busy).
ROW_SELECT = ("SELECT p.*, (SELECT MIN(d.id) FROM container_dispatch_log AS d "
              "WHERE d.container_id = p.id AND d.completed_at IS NULL) AS open_dispatch_id "
              "FROM container_pool AS p")
#: The "not busy" condition on a pool row ``p`` (uses the partial index on open dispatches).
NOT_BUSY = ("NOT EXISTS (SELECT 1 FROM container_dispatch_log AS d "
            "WHERE d.container_id = p.id AND d.completed_at IS NULL)")


@dataclass(frozen=True)
class PoolContainer:
    """One row of ``container_pool``; ``open_dispatch_id`` is set while busy."""

    id: int
    name: str
    image: str
    status: str
    docker_id: str | None
    host: str
    last_health_check: datetime | None
    last_dispatch_at: datetime | None
    dispatch_count: int
    rate_limit_until: datetime | None
    rate_limit_count: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    open_dispatch_id: int | None = None
    unhealthy_since: datetime | None = None

    @property
    def busy(self) -> bool:
        return self.open_dispatch_id is not None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> "PoolContainer":
        keys = r.keys()
        return cls(
            id=r["id"], name=r["name"], image=r["image"], status=r["status"], docker_id=r["docker_id"],
            host=r["host"], last_health_check=parse_time(r["last_health_check"]),
            last_dispatch_at=parse_time(r["last_dispatch_at"]), dispatch_count=r["dispatch_count"],
            rate_limit_until=parse_time(r["rate_limit_until"]), rate_limit_count=r["rate_limit_count"],
            error=r["error"], created_at=parse_time(r["created_at"]),  # type: ignore[arg-type]
            updated_at=parse_time(r["updated_at"]),  # type: ignore[arg-type]
            open_dispatch_id=r["open_dispatch_id"] if "open_dispatch_id" in keys else None,
            unhealthy_since=parse_time(r["unhealthy_since"]) if "unhealthy_since" in keys else None,
        )


@dataclass(frozen=True)
class Dispatch:
    """One row of ``container_dispatch_log``; ``container`` is the container's name."""

    id: int
    container_id: int
    container: str
    task_id: str | None
    command: str | None  # JSON argument list, when dispatched by `pool dispatch`
    dispatched_at: datetime
    completed_at: datetime | None
    outcome: str | None
    exit_code: int | None
    error: str | None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> "Dispatch":
        return cls(
            id=r["id"], container_id=r["container_id"], container=r["name"], task_id=r["task_id"],
            command=r["command"], dispatched_at=parse_time(r["dispatched_at"]),  # type: ignore[arg-type]
            completed_at=parse_time(r["completed_at"]), outcome=r["outcome"], exit_code=r["exit_code"],
            error=r["error"],
        )
