"""Policy tables for disk pressure: ``[storage]``, ``[housekeeping]`` and ``[journal]``.

Pure pydantic models (no I/O); :mod:`dockwarden.config` composes them into the
policy. Every field name ends in its unit (``_s`` seconds, ``_bytes``,
``_percent``). The disk thresholds themselves are not repeated here: the P1
"act" level is ``thresholds.disk_critical_percent`` (default 80 %) and the warn
level ``thresholds.disk_warn_percent`` (70 %), both from the disinto supervisor
(seed 000). ``examples/policy.toml`` documents every key.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dockwarden.redact import describe_value

#: The tiers of the disk-pressure recipe, in the order they run (issue 3).
TIERS = ("dangling", "containers", "images")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoragePolicy(_Section):
    """Storage telemetry, trends and the tiered disk-pressure recipe."""

    interval_s: float = Field(300.0, ge=5)
    """Seconds between storage samples (``GET /system/df`` can take seconds on big
    hosts; disinto storage sprint, seed 002). Default 300 (issue 3)."""
    pressure_interval_s: float = Field(60.0, ge=5)
    """Seconds between samples while the Docker root dir's filesystem is above
    ``thresholds.disk_warn_percent``, so the recipe reacts sooner. Default 60."""
    df_timeout_s: float = Field(120.0, gt=0)
    """Timeout of one ``GET /system/df`` call, seconds. Default 120."""
    command_timeout_s: float = Field(30.0, gt=0)
    """Timeout of each ``btrfs`` command, seconds. Default 30."""
    tiers: list[str] = Field(default_factory=lambda: list(TIERS))
    """Tiers the recipe may run, from ``dangling`` (dangling images and build cache),
    ``containers`` (stopped containers neither tracked nor intent-stopped) and
    ``images`` (unused images no tracked service's recorded spec references).
    They always run in that order. Default all three."""
    stopped_container_min_age_s: float = Field(3600.0, ge=0)
    """Tier ``containers`` removes only containers stopped at least this long, so
    their logs can still be read. Default 3600 (dockwarden)."""
    keep_images: list[str] = Field(default_factory=list)
    """Image references (shell globs, e.g. ``"myorg/*"``) the recipe never removes,
    on top of every image a tracked service's recorded spec names. Default none."""
    top_n: int = Field(5, ge=1, le=100)
    """How many top consumers (images, volumes, containers) to report. Default 5."""
    retention_s: float = Field(30 * 86400.0, gt=0)
    """Samples older than this are deleted, seconds. Default 2592000 (30 days, issue 3)."""
    full_resolution_s: float = Field(2 * 86400.0, gt=0)
    """Samples younger than this are all kept; older ones are downsampled to one per
    ``downsample_interval_s``. Default 172800 (48 h, so the 24 h trend always has
    every sample)."""
    downsample_interval_s: float = Field(3600.0, gt=0)
    """One sample per this many seconds is kept past ``full_resolution_s``. Default 3600."""
    short_window_s: float = Field(6 * 3600.0, gt=0)
    """Window of the short growth-rate fit (least squares), seconds. Default 21600 (6 h, issue 3)."""
    long_window_s: float = Field(24 * 3600.0, gt=0)
    """Window of the long growth-rate fit, seconds. Default 86400 (24 h, issue 3)."""
    trend_min_points: int = Field(4, ge=2)
    """A fit needs at least this many samples in its window. Default 4."""
    trend_min_span_s: float = Field(1800.0, ge=0)
    """... spanning at least this many seconds (a 5-minute burst is no trend). Default 1800."""
    eta_warn_s: float = Field(86400.0, gt=0)
    """A P2 finding when the short-window ETA to the P1 threshold is below this,
    seconds. Default 86400 (24 h, issue 3)."""

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t not in TIERS]
        if bad:
            raise ValueError(f"expected tier names from {list(TIERS)}, got {', '.join(describe_value(t) for t in bad)}")
        return [t for t in TIERS if t in v]  # always in recipe order, no duplicates


def _check_globs(v: list[str]) -> list[str]:
    """Globs must be absolute and at least two levels deep (``/tmp/*.lock``, not
    ``/*``), so a typo cannot make housekeeping delete a top-level directory."""
    for g in v:
        p = PurePosixPath(g)
        if not p.is_absolute():
            raise ValueError(f"expected an absolute path glob, got {describe_value(g)}")
        if len(p.parts) < 3:
            raise ValueError(f"expected a glob at least two directories deep (e.g. /srv/x/*), got {describe_value(g)}")
    return v


class HousekeepingPolicy(_Section):
    """Stale lock files and worktrees (P4). Source: disinto supervisor (seed 000):
    "worktrees > 2 h with no process, lock files of dead processes"."""

    lock_globs: list[str] = Field(default_factory=list)
    """Lock files to check, absolute shell globs (e.g. ``"/var/lock/myapp-*.lock"``).
    A lock is stale when the PID written in it is dead, or when it is older than
    ``lock_ttl_s``. Default none."""
    lock_ttl_s: float = Field(7200.0, gt=0)
    """A lock file older than this (by mtime) is stale even if its PID lives, seconds.
    Default 7200 (dockwarden, like disinto's 2 h for worktrees)."""
    worktree_globs: list[str] = Field(default_factory=list)
    """Worktree directories to check, absolute shell globs (e.g. ``"/srv/ci/worktrees/*"``).
    Default none."""
    worktree_ttl_s: float = Field(7200.0, gt=0)
    """A worktree is stale when nothing in it changed for this long and no process
    has its cwd or an open file in it, seconds. Default 7200 (disinto: 2 h)."""
    remove_locks: bool = False
    """Remove stale lock files (only in ``auto`` mode, outside maintenance windows).
    Default false: report only."""
    remove_worktrees: bool = False
    """Remove stale worktrees (only in ``auto`` mode, outside maintenance windows).
    Default false: report only."""

    @field_validator("lock_globs", "worktree_globs")
    @classmethod
    def _globs(cls, v: list[str]) -> list[str]:
        return _check_globs(v)


class JournalPolicy(_Section):
    """The daily markdown journal ``<state-dir>/journal/YYYY-MM-DD.md`` (UTC day).
    Shape from the disinto supervisor's journal (seed 000)."""

    enabled: bool = True
    """Write the journal. Default true."""
    quiet_interval_s: float = Field(3600.0, gt=0)
    """At most one section per this many seconds for passes that found nothing new.
    Default 3600 (issue 3: one quiet section per hour)."""
    max_lines: int = Field(25, ge=5, le=200)
    """Lines per section at most, heading included. Default 25 (issue 3)."""
