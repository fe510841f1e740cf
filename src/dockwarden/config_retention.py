"""Policy table for how long the state dir keeps things: ``[retention]``.

Pure pydantic model (no I/O); :mod:`dockwarden.config` composes it into the
policy and :mod:`dockwarden.retention` applies it. Every field name ends in its
unit (``_s`` seconds, ``_rows``, ``_bytes``, ``_files``). Storage samples are not
repeated here: ``[storage] retention_s`` (30 days, with downsampling) bounds
them, applied by the storage worker. ``examples/policy.toml`` documents every key.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DAY_S = 86400.0
MIB = 1024 * 1024

#: ``events.jsonl`` rotation defaults, also the defaults of every
#: :class:`~dockwarden.sinks.events.EventLog` that is given no limits.
EVENTS_JSONL_MAX_BYTES = 10 * MIB
EVENTS_JSONL_ROTATED_FILES = 5


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetentionPolicy(_Section):
    """Bounds on every table and file of the state dir (issue 8, "unbounded growth").

    Age limits are seconds and at least an hour: the notification rate limit
    reads the last hour of deliveries, and a reconcile_blocked event lists the
    last hour of actions. Row caps delete the oldest rows beyond the cap.
    """

    interval_s: float = Field(3600.0, ge=60)
    """Seconds between retention runs of the daemon (the first runs a minute after
    start, so a large first clean-up does not slow the daemon's start). Default 3600
    (1 h: growth per hour is small against every bound below)."""
    events_max_age_s: float = Field(30 * DAY_S, ge=3600)
    """Rows of the SQLite ``events`` table older than this are deleted, seconds.
    Default 2592000 (30 days, like ``[storage] retention_s``); ``events.jsonl`` and
    its rotated files keep what is older, see ``events_jsonl_*``."""
    events_max_rows: int = Field(200_000, ge=100)
    """At most this many rows in the ``events`` table; the oldest beyond are deleted.
    Default 200000 (about 100 MB of SQLite at ~500 bytes a row; a busy host writes
    a few thousand events a day)."""
    actions_max_age_s: float = Field(30 * DAY_S, ge=3600)
    """Judged actions (verdict not ``pending``, ``finished_at`` set) that started
    longer ago than this are deleted, seconds. Pending or unfinished actions are never
    deleted: the closed loop still has to judge them. Default 2592000 (30 days)."""
    actions_max_rows: int = Field(50_000, ge=100)
    """At most this many judged actions; the oldest judged ones beyond are deleted.
    Default 50000 (far above the 2000 newest that failure streaks read each pass)."""
    incidents_max_age_s: float = Field(90 * DAY_S, ge=3600)
    """Resolved incidents resolved longer ago than this are deleted, seconds; open and
    acknowledged ones are never deleted. Default 7776000 (90 days: a quarter of
    history for `dockwarden incidents --all` and post-mortems)."""
    outbox_max_age_s: float = Field(14 * DAY_S, ge=3600)
    """Notification queue rows that are finished (``delivered``, or ``dropped``:
    given up or channel removed) longer ago than this are deleted, seconds; pending
    ones never (``[notify] give_up_after_s`` bounds them). Default 1209600 (14 days)."""
    untracked_max_age_s: float = Field(30 * DAY_S, ge=3600)
    """Recorded specs, guard records and intents of services that are no longer
    tracked (not in the desired state, no container of that name) are deleted once
    their own timestamps (spec ``seen_at``, intent ``recorded_at``, the guard's
    attempt and circuit times) are older than this, seconds. A paused guard is the
    operator's and is kept. An intent ``stopped`` of a removed container thus
    survives at least this long ("gone means gone"). Default 2592000 (30 days)."""
    events_jsonl_max_bytes: int = Field(EVENTS_JSONL_MAX_BYTES, ge=4096)
    """``events.jsonl`` is rotated (to ``events.jsonl.1``, ``.2``, ...) before an
    append would make it larger than this, bytes; a retention run also rotates a
    file already past it. Default 10485760 (10 MiB, about 20000 events)."""
    events_jsonl_rotated_files: int = Field(EVENTS_JSONL_ROTATED_FILES, ge=0, le=1000)
    """Rotated files kept beside ``events.jsonl``; older ones are deleted, so the
    event files take at most (rotated_files + 1) * max_bytes. Default 5 (60 MiB in
    all, like logrotate's ``rotate 5``)."""
