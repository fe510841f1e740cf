"""Settings (environment + flags) and the policy file (thresholds, guardrails).

The policy is a TOML file validated with pydantic. Every field name ends in its
unit (``_s`` seconds, ``_bytes``, ``_percent``). Defaults are the numbers of the
systems we learn from, cited per field (see ``shared/field-notes.md``);
``examples/policy.toml`` documents every key.

Errors: :func:`load_policy` raises :class:`ConfigError` naming the file, the
field path and what was expected.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dockwarden.config_errors import format_validation_error
from dockwarden.config_labels import LabelsPolicy
from dockwarden.config_api import ApiPolicy
from dockwarden.config_notify import Incidents, Notify, Recovery, Spikes
from dockwarden.config_pool import PoolSettings
from dockwarden.config_retention import RetentionPolicy
from dockwarden.config_storage import HousekeepingPolicy, JournalPolicy, StoragePolicy
from dockwarden.model import Mode
from dockwarden.redact import redact_urls_in

MB = 1024 * 1024
GB = 1024 * MB


class ConfigError(ValueError):
    """A configuration file (inventory or policy) or argument is invalid.

    The message names the file, the field path and what was expected, e.g.
    ``policy.toml: backoff.initial_delay_s: Input should be greater than 0 (got -1)``.
    """


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Section):
    """Host resource thresholds. Source: disinto supervisor recipes (seed 000)."""

    memory_crisis_available_bytes: int = Field(500 * MB, ge=0)
    """P0 when RAM available drops below this (disinto: 500 MB)."""
    swap_crisis_used_bytes: int = Field(3 * GB, ge=0)
    """P0 when swap used exceeds this while RAM available < memory_low_available_bytes (disinto: 3 GB)."""
    memory_low_available_bytes: int = Field(2000 * MB, ge=0)
    """The 'RAM is low' level for the swap rule (disinto: 2000 MB)."""
    disk_warn_percent: float = Field(70.0, gt=0, le=100)
    """P3 (degraded) when a watched filesystem is fuller than this (disinto knowledge file: 70 %)."""
    disk_critical_percent: float = Field(80.0, gt=0, le=100)
    """P1 when a watched filesystem is fuller than this (disinto: 80 %)."""


class Backoff(_Section):
    """Per-service exponential backoff between remediation attempts.

    The first attempt after a drift is immediate; attempt n >= 2 waits
    ``min(initial_delay_s * 2**(n-2), max_delay_s)`` after attempt n-1.
    Shape from kubelet (10 s doubling to 300 s, reset after 10 min running);
    dockwarden's defaults: 1 s doubling to 300 s, reset after 600 s stable.
    """

    initial_delay_s: float = Field(1.0, gt=0)
    max_delay_s: float = Field(300.0, gt=0)
    stable_reset_s: float = Field(600.0, gt=0)
    """A service running this long without drift resets its backoff and closes its circuit."""


class RestartBudget(_Section):
    """At most ``max_restarts`` actions per service within ``window_s``; the next
    drift opens the circuit (Nomad: 2 attempts per 30 min; Monit: 3 restarts in
    5 cycles; dockwarden: 5 within 600 s)."""

    max_restarts: int = Field(5, ge=1)
    window_s: float = Field(600.0, gt=0)


class CrashLoop(_Section):
    """When repeated failures become the ``crash_loop`` drift."""

    min_failures: int = Field(3, ge=2)
    """This many remediation attempts without the service becoming stable in between."""


class Window(_Section):
    """A maintenance window, UTC. During it no action runs (recommendations still do)."""

    days: list[str] = Field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
    start: str = Field(..., pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(..., pattern=r"^([01]\d|2[0-3]):[0-5]\d$")

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        allowed = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
        out = [d.lower()[:3] for d in v]
        bad = [d for d in out if d not in allowed]
        if bad:
            raise ValueError(f"expected day names mon..sun, got {bad}")
        return out


class Guardrails(_Section):
    mode: Mode = Mode.AUTO
    """Global mode; ``--mode`` overrides it. A service can only narrow it."""
    unmanaged_mode: Mode = Mode.RECOMMEND
    """Mode for containers neither in the inventory nor labelled (never ``auto`` by default)."""
    maintenance: list[Window] = Field(default_factory=list)
    dependency_wait_s: float = Field(5.0, gt=0)
    """How long a `delay` recommendation waits before looking at a dependency again."""
    action_timeout_s: float = Field(60.0, gt=0)
    """An action not judged by an observation within this time counts as failed."""
    stop_timeout_s: float = Field(10.0, ge=0)
    """Grace period before SIGKILL when dockwarden stops or restarts a container (Docker default 10 s)."""


class Policy(_Section):
    """The whole policy file. Every table is optional; absent keys take defaults."""

    thresholds: Thresholds = Field(default_factory=Thresholds)
    backoff: Backoff = Field(default_factory=Backoff)
    restart_budget: RestartBudget = Field(default_factory=RestartBudget)
    crash_loop: CrashLoop = Field(default_factory=CrashLoop)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    incidents: Incidents = Field(default_factory=Incidents)
    notify: Notify = Field(default_factory=Notify)
    spikes: Spikes = Field(default_factory=Spikes)
    recovery: Recovery = Field(default_factory=Recovery)
    storage: StoragePolicy = Field(default_factory=StoragePolicy)
    housekeeping: HousekeepingPolicy = Field(default_factory=HousekeepingPolicy)
    journal: JournalPolicy = Field(default_factory=JournalPolicy)
    pool: PoolSettings = Field(default_factory=PoolSettings)
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
    labels: LabelsPolicy = Field(default_factory=LabelsPolicy)
    api: ApiPolicy = Field(default_factory=ApiPolicy)
    extra: dict[str, Any] = Field(default_factory=dict)
    """Tables of later features (``storage``, ``notify``, ``pool``...) kept as read."""


_KNOWN_TABLES = {"thresholds", "backoff", "restart_budget", "crash_loop", "guardrails", "pool",
                 "incidents", "notify", "spikes", "recovery",
                 "storage", "housekeeping", "journal", "retention", "labels", "api"}


def load_policy(path: str | Path | None) -> Policy:
    """Read and validate a policy TOML file; ``None`` gives the built-in defaults.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or a field is invalid;
            the message names the file and field.
    """
    if path is None:
        return Policy()
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{p}: <root>: cannot read policy file: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: <root>: not UTF-8 text (byte {e.start}); expected a UTF-8 TOML file") from e
    except tomllib.TOMLDecodeError as e:
        # tomllib may quote a key ("Cannot declare ('k',) twice"): URLs in it are redacted.
        raise ConfigError(f"{p}: <root>: not valid TOML: {redact_urls_in(str(e))}; expected a TOML document") from e
    known = {k: v for k, v in raw.items() if k in _KNOWN_TABLES}
    extra = {k: v for k, v in raw.items() if k not in _KNOWN_TABLES}
    try:
        policy = Policy(**known, extra=extra)
    except ValidationError as e:
        raise ConfigError(format_validation_error(p, e, model=Policy)) from e
    t = policy.thresholds
    if t.disk_warn_percent > t.disk_critical_percent:
        raise ConfigError(
            f"{p}: thresholds.disk_warn_percent: expected <= disk_critical_percent "
            f"({t.disk_critical_percent}), got {t.disk_warn_percent}"
        )
    if policy.backoff.initial_delay_s > policy.backoff.max_delay_s:
        raise ConfigError(f"{p}: backoff.initial_delay_s: expected <= backoff.max_delay_s")
    return policy


# --------------------------------------------------------------------------- settings

# Settings live in their own light module (no pydantic) so the CLI starts fast;
# they are re-exported here for the modules that import them from config.
from dockwarden.settings import Settings, default_state_dir  # noqa: E402,F401
