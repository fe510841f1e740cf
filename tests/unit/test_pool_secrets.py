"""Secrets become 0600 files for read-only mounts, never environment values."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dockwarden.pool import secrets
from dockwarden.pool.errors import PoolInputError


def test_resolve_from_file_and_environment(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_bytes(b"from-file\n")
    got = secrets.resolve({"a": str(f), "b": "MY_TOKEN"}, environ={"MY_TOKEN": "from-env"})
    assert got == {"a": b"from-file\n", "b": b"from-env"}


def test_resolve_errors_name_the_secret_and_never_the_value(tmp_path: Path) -> None:
    with pytest.raises(PoolInputError, match=r"secrets\.a: cannot read .*/missing"):
        secrets.resolve({"a": str(tmp_path / "missing")}, environ={})
    with pytest.raises(PoolInputError, match=r"secrets\.b: environment variable NOPE is not set"):
        secrets.resolve({"b": "NOPE"}, environ={"OTHER": "hunter2"})


def test_write_makes_private_files_and_read_only_mounts(tmp_path: Path) -> None:
    mounts = secrets.write(tmp_path, "pool-1", {"token": b"s3cret", "key": b"k"})
    d = secrets.secrets_dir(tmp_path, "pool-1")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for name in ("token", "key"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600
    assert (d / "token").read_bytes() == b"s3cret"
    assert sorted(mounts) == sorted([(str(d / "token"), "/run/secrets/token", True),
                                     (str(d / "key"), "/run/secrets/key", True)])
    secrets.remove(tmp_path, "pool-1")
    assert not d.exists()
    assert secrets.write(tmp_path, "pool-2", {}) == []
