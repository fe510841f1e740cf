"""Policy tables for telling people: ``[incidents]``, ``[notify]`` with its
``[[notify.channel]]`` list, ``[spikes]`` and ``[recovery]``.

Pure pydantic models (no I/O); :mod:`dockwarden.config` composes them into the
policy. Every field name ends in its unit.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_PRIORITY = r"^[Pp][0-4]$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Incidents(_Section):
    """When a drift becomes an incident (runtime supervisor, seed 001)."""

    open_after_passes_p3: int = Field(2, ge=1)
    """A P3 drift opens an incident once seen in this many consecutive passes (P0-P2: at once)."""
    open_after_passes_p4: int = Field(0, ge=0)
    """P4 (housekeeping) drifts open incidents after this many passes; 0 never."""
    unresolved_after_s: float = Field(3600.0, gt=0)
    """An incident open longer than this is itself the ``unresolved_incident`` drift (seed 001; 1 h)."""
    reminder_interval_s: float = Field(4 * 3600.0, gt=0)
    """Open P0-P1 incidents are notified again this often (4 h)."""
    flap_window_s: float = Field(900.0, ge=0)
    """Flap damping: a drift returning within this long after its incident resolved
    reopens it without a new message, and a reopened incident resolves only after
    this long without its drift (15 min; 0 turns damping off)."""


class Channel(_Section):
    """One notification channel: an apprise URL.

    ``url`` may name environment variables as ``${NAME}`` for secrets; they are
    expanded only when sending and never written to logs or events.
    """

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    url: str = Field(..., min_length=3)
    min_priority: str = Field("P3", pattern=_PRIORITY)
    """Send only events at this priority or worse (P0 is the worst)."""
    events: list[str] = Field(default_factory=list)
    """Only these event types (empty: the default set: incident_opened, incident_escalated,
    incident_resolved, incident_reminder, reconcile_blocked, recovery_completed, notify_test).
    A channel that lists incident_opened also gets incident_escalated."""
    max_per_hour: int = Field(30, ge=1)
    """Per-channel rate limit; messages over it wait in the queue."""

    @field_validator("url")
    @classmethod
    def _has_scheme(cls, v: str) -> str:
        if "://" not in v:
            raise ValueError("expected an apprise URL like mailto://user:pass@host or json://host/path")
        return v


class Notify(_Section):
    channel: list[Channel] = Field(default_factory=list)
    retry_initial_delay_s: float = Field(5.0, gt=0)
    """A failed delivery is retried after this, doubling up to retry_max_delay_s."""
    retry_max_delay_s: float = Field(600.0, gt=0)
    give_up_after_s: float = Field(24 * 3600.0, gt=0)
    """A message still undelivered after this long is dropped (recorded as such)."""
    timeout_s: float = Field(10.0, gt=0)
    """Connect/read timeout per delivery attempt (apprise cto/rto)."""

    @field_validator("channel")
    @classmethod
    def _unique_names(cls, v: list[Channel]) -> list[Channel]:
        names = [c.name for c in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"channel names must be unique, repeated: {dup}")
        return v


class Spikes(_Section):
    """Resource spikes: sustained high CPU or memory (flatrun agent proposal, seed 003)."""

    container_cpu_percent: float = Field(90.0, gt=0)
    """Container CPU, % of one core (100 = one core busy), as `docker stats` reports it."""
    container_memory_percent: float = Field(90.0, gt=0, le=100)
    """Container memory, % of its limit (of host RAM when it has none)."""
    host_cpu_percent: float = Field(90.0, gt=0, le=100)
    """Host CPU, % of all cores."""
    host_memory_percent: float = Field(90.0, gt=0, le=100)
    """Host memory used, % of RAM (total - available)."""
    sustained_samples: int = Field(3, ge=1)
    """A spike counts only after this many consecutive samples over the threshold (no flapping)."""
    top_consumers: int = Field(5, ge=1)


class Recovery(_Section):
    """Boot-time and engine-restart recovery."""

    timeout_s: float = Field(300.0, gt=0)
    """How long a recovery waits for every intent-running service to come back
    before it reports the rest as failed."""


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def env_names(url: str) -> list[str]:
    """The ``${NAME}`` names a channel URL refers to, in order (names, never values)."""
    return _ENV_REF.findall(url)


def expand_env(url: str, env: dict[str, str]) -> str:
    """Replace ``${NAME}`` in a channel URL by the environment's value.

    Raises:
        KeyError: a named variable is not set (its name, never a value, is in the message).
    """
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in env:
            raise KeyError(f"environment variable {name} is not set")
        return env[name]

    return _ENV_REF.sub(sub, url)
