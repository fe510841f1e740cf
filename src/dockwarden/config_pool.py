"""The ``[pool]`` table of the policy file: the container pool's settings.

Pure (pydantic only: no docker, no sqlite), so the policy loader can validate
it with the rest of the file. Key names follow issue 5 (``idle_timeout`` and
``rate_limit_cooldown`` are seconds, ``memory`` bytes); keys dockwarden adds
beside the issue's end in their unit (``_s``) like the rest of the policy.
Defaults of the original pool manager (aidevops PR 2184, seed 004,
``shared/field-notes.md``): max 8, min 0, idle timeout 1800 s, rate-limit
cooldown 300 s. ``examples/policy.toml`` documents every key.

Errors: invalid values raise pydantic's ``ValidationError``; the policy loader
turns it into ``ConfigError`` naming the file and ``pool.<key>``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dockwarden.redact import describe_value

#: Docker's rule for container names (``[a-zA-Z0-9][a-zA-Z0-9_.-]+``, moby
#: daemon/names.go); a pool name is ``<prefix>-<n>``.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
#: A secret's file name under /run/secrets (no path separators, no dot files).
SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
#: An environment variable name (POSIX portable character set).
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
#: Labels the pool sets itself; ``dockwarden.enable`` would make the reconcile
#: loop treat a pool container as a desired service.
RESERVED_LABELS = frozenset({"dockwarden.pool", "dockwarden.managed", "dockwarden.enable"})

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*\Z", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
#: Docker refuses memory limits below 6 MiB (moby daemon: "Minimum memory limit allowed is 6MB").
MIN_MEMORY_BYTES = 6 * 1024 * 1024


def parse_size(value: Any) -> int:
    """Bytes from an int or a Docker-style size string (``512m``, ``1g``, ``1.5GiB``; 1024-based).

    Raises:
        ValueError: not a non-negative size.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected bytes or a size like 512m, got {describe_value(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a size >= 0, got {value}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    raise ValueError(f"expected bytes or a size like 512m, got {describe_value(value)}")


def parse_mount(spec: str) -> tuple[str, str, bool]:
    """``SOURCE:TARGET[:ro|rw]`` -> (source, target, read_only).

    SOURCE is an absolute host path (bind mount) or a volume name; TARGET an
    absolute path in the container.

    Raises:
        ValueError: any part is missing or malformed (the message quotes the spec).
    """
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ValueError(f"expected SOURCE:TARGET[:ro|rw], got {describe_value(spec)}")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise ValueError(f"expected mode ro or rw after the target, got {describe_value(spec)}")
    if not parts[1].startswith("/"):
        raise ValueError(f"expected an absolute target path in the container, got {describe_value(spec)}")
    if not parts[0].startswith("/") and not NAME_RE.match(parts[0]):
        raise ValueError(f"expected an absolute host path or a volume name as source, got {describe_value(spec)}")
    return parts[0], parts[1], mode == "ro"


class PoolSettings(BaseModel):
    """The container pool (issue 5). Every key is optional; the pool is off
    while ``image`` is empty (the daemon starts no pool worker then).

    Each of ``image`` .. ``memory`` can be overridden per call by the flag of
    the same name on ``dockwarden pool spawn`` and ``ensure-min``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = ""
    """Image of the pool's containers; "" = no pool. Must exist locally (no pull)."""
    command: list[str] = Field(default_factory=list)
    """Command of each container, as an argument list (no shell); [] = the image's CMD.
    It must keep running: dispatched tasks run beside it with ``docker exec``."""
    prefix: str = "dockwarden-pool"
    """Containers are named ``<prefix>-<n>`` (n = 1, 2, ... the smallest free) and
    labelled ``dockwarden.pool=<prefix>``."""
    min: int = Field(0, ge=0)
    """Containers kept by ``ensure-min``, idle cleanup and the daemon (original: 0)."""
    max: int = Field(8, ge=1)
    """``spawn`` refuses beyond this many live containers (original: 8)."""
    idle_timeout: int = Field(1800, gt=0)
    """Seconds without a dispatch (and since creation) after which ``cleanup``
    destroys a container, keeping ``min`` (original: 1800 s)."""
    rate_limit_cooldown: int = Field(300, gt=0)
    """Seconds a rate-limited container is skipped by ``select`` (original: 300 s)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Extra labels; ``dockwarden.pool``, ``dockwarden.managed`` and ``dockwarden.enable`` are reserved."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment of each container. Visible in ``docker inspect``: never put secrets here."""
    mounts: list[str] = Field(default_factory=list)
    """``SOURCE:TARGET[:ro|rw]``; SOURCE an absolute host path or a volume name."""
    cpus: float = Field(0.0, ge=0)
    """CPU limit in CPUs (``docker run --cpus``); 0 = no limit."""
    memory: int = 0
    """Memory limit in bytes (``512m`` style accepted); 0 = no limit; else >= 6 MiB."""
    secrets: dict[str, str] = Field(default_factory=dict)
    """name -> absolute host file path, or environment variable name. Each value is
    written 0600 to the state dir and bind-mounted read-only at /run/secrets/<name>;
    never passed as an environment variable."""
    health_command: list[str] = Field(default_factory=list)
    """Optional probe run with ``docker exec`` in each container; exit 0 = healthy."""
    health_http_port: int = Field(0, ge=0, le=65535)
    """Optional HTTP probe: GET http://<container IP>:<port><health_http_path>,
    2xx/3xx = healthy; 0 = no HTTP probe."""
    health_http_path: str = "/"
    health_timeout_s: float = Field(5.0, gt=0)
    """A probe that takes longer counts as failed."""
    health_interval_s: float = Field(30.0, gt=0)
    """The daemon checks health (and replaces dead containers, keeps min) this
    often; default 30 s, the daemon's default resync interval."""
    cleanup_interval_s: float = Field(60.0, gt=0)
    """The daemon runs idle cleanup this often."""

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"expected letters, digits, '_', '.' or '-' (not first), got {describe_value(v)}")
        return v

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> int:
        n = parse_size(v)
        if 0 < n < MIN_MEMORY_BYTES:
            raise ValueError(f"expected 0 (no limit) or >= {MIN_MEMORY_BYTES} bytes (Docker's minimum, 6 MiB), got {n}")
        return n

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k in v if k.lower() in RESERVED_LABELS)
        if bad:
            raise ValueError(f"labels {bad} are reserved (set by the pool itself)")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k in v if not ENV_NAME_RE.match(k))
        if bad:
            raise ValueError(f"expected environment variable names, got {', '.join(describe_value(k, 'key') for k in bad)}")
        return v

    @field_validator("mounts")
    @classmethod
    def _mounts(cls, v: list[str]) -> list[str]:
        for spec in v:
            parse_mount(spec)
        return v

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, v: dict[str, str]) -> dict[str, str]:
        for name, source in v.items():
            if not SECRET_NAME_RE.match(name):
                raise ValueError(f"secret name {describe_value(name)}: expected letters, digits, '_', '.' or '-' (a file name)")
            if not (source.startswith("/") or ENV_NAME_RE.match(source)):
                # The value itself pasted here is a likely mistake: never echo it.
                raise ValueError(f"secret {name!r}: expected an absolute file path or an environment variable "
                                 f"name, got {describe_value(source, 'secret')}")
        return v

    @field_validator("health_http_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"expected a path starting with '/', got {describe_value(v)}")
        return v

    @model_validator(mode="after")
    def _min_max(self) -> "PoolSettings":
        if self.min > self.max:
            raise ValueError(f"min: expected <= max ({self.max}), got {self.min}")
        return self
