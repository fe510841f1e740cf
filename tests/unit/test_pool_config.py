"""The [pool] table: defaults from the original, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from dockwarden.config import ConfigError, load_policy
from dockwarden.config_pool import PoolSettings, parse_mount, parse_size


def test_defaults_are_the_originals() -> None:
    s = PoolSettings()
    # aidevops PR 2184 (seed 004): max 8, min 0, idle timeout 1800 s, cooldown 300 s.
    assert (s.max, s.min, s.idle_timeout, s.rate_limit_cooldown) == (8, 0, 1800, 300)
    assert s.image == "" and s.secrets == {} and s.env == {}


def _policy(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "policy.toml"
    p.write_text("[pool]\n" + body)
    return p


def test_policy_file_loads_the_pool_table(tmp_path: Path) -> None:
    pol = load_policy(_policy(tmp_path, 'image = "img:1"\nmin = 2\nmax = 3\nmemory = "64m"\n'
                                        'secrets = { token = "/run/keys/token", other = "API_TOKEN" }\n'))
    assert pol.pool.image == "img:1" and (pol.pool.min, pol.pool.max) == (2, 3)
    assert pol.pool.memory == 64 * 1024 * 1024
    assert pol.pool.secrets == {"token": "/run/keys/token", "other": "API_TOKEN"}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("max = 0\n", "pool.max"),
        ("idle_timeout = -5\n", "pool.idle_timeout"),
        ('rate_limit_cooldown = "abc"\n', "pool.rate_limit_cooldown"),
        ("min = 9\nmax = 8\n", "min: expected <= max (8), got 9"),
        ('prefix = "has space"\n', "pool.prefix"),
        ('memory = "lots"\n', "pool.memory"),
        ("memory = 1024\n", "6 MiB"),
        ('labels = { "dockwarden.enable" = "true" }\n', "reserved"),
        ('env = { "1BAD" = "x" }\n', "pool.env"),
        ('mounts = ["./rel:/data"]\n', "pool.mounts"),
        ('mounts = ["/src:/dst:rx"]\n', "mode ro or rw"),
        ('secrets = { token = "not a path or name" }\n', "secret 'token'"),
        ('secrets = { "../x" = "/etc/passwd" }\n', "secret name"),
        ('health_http_path = "healthz"\n', "pool.health_http_path"),
        ("surprise = 1\n", "pool.surprise"),
    ],
)
def test_bad_values_name_the_file_and_field(tmp_path: Path, body: str, needle: str) -> None:
    path = _policy(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        load_policy(path)
    assert str(path) in str(e.value)
    assert needle in str(e.value)


def test_sizes_and_mounts() -> None:
    assert parse_size(0) == 0
    assert parse_size("512m") == 512 * 1024**2
    assert parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert parse_size("2k") == 2048
    for bad in (-1, "ten", True, 1.5):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert parse_mount("/host/data:/data:ro") == ("/host/data", "/data", True)
    assert parse_mount("cache:/cache") == ("cache", "/cache", False)
    for bad in ("/a", "/a:b", "/a:/b:ro:x", ":/b"):
        with pytest.raises(ValueError):
            parse_mount(bad)


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        PoolSettings().max = 3  # type: ignore[misc]


@pytest.mark.parametrize("field,value", [("prefix", "worker\n"), ("env", {"PATH\n": "x"}),
                                         ("memory", "512m\n\n")])
def test_a_trailing_newline_is_not_a_valid_name(field: str, value) -> None:
    """``^...$`` lets ``"worker\\n"`` through (``$`` matches before a final newline); names
    end in ``\\Z``. A trailing newline in a prefix would reach Docker as a container name."""
    if field == "memory":
        assert parse_size("512m\n") == 512 * 1024 * 1024  # surrounding blanks are allowed in a size
        value = "512m\nx"
    with pytest.raises(ValidationError):
        PoolSettings(**{field: value})
