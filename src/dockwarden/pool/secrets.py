"""Secrets for pool containers: read on the host, written 0600 into the state
dir, bind-mounted read-only at ``/run/secrets/<name>``.

Never environment variables: those show in ``docker inspect`` (Config.Env) to
anyone who can talk to the engine, which was one of the original's defects
(its OAuth token went in with ``-e``). ``docker inspect`` shows only the host
path of the file. The ``/run/secrets/<name>`` location is the one Docker
swarm and compose use for secrets.

Files are owned by the user dockwarden runs as, mode 0600, in a 0700
directory per container: readable in the container by root (or the same uid).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Mapping

from dockwarden.pool.errors import PoolInputError

SECRETS_TARGET = "/run/secrets"


def resolve(secrets: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """Read each secret's value from its source.

    Args:
        secrets: name -> absolute host file path, or environment variable name
            (``[pool].secrets``, validated by ``config_pool``).
        environ: the environment to read variables from (default ``os.environ``).
    Returns:
        name -> value bytes.
    Raises:
        PoolInputError: a file cannot be read or a variable is not set
            (the message names ``secrets.<name>``, never the value).
    """
    env = os.environ if environ is None else environ
    out = {}
    for name, source in secrets.items():
        if source.startswith("/"):
            try:
                out[name] = Path(source).read_bytes()
            except OSError as e:
                raise PoolInputError(f"secrets.{name}: cannot read {source}: {e.strerror or e}") from e
        else:
            if source not in env:
                raise PoolInputError(f"secrets.{name}: environment variable {source} is not set")
            out[name] = env[source].encode("utf-8")
    return out


def secrets_dir(state_dir: Path, container: str) -> Path:
    """``<state-dir>/pool-secrets/<container>``."""
    return Path(state_dir) / "pool-secrets" / container


def write(state_dir: Path, container: str, values: Mapping[str, bytes]) -> list[tuple[str, str, bool]]:
    """Write the values as files for one container.

    Returns:
        Read-only mounts (host path, ``/run/secrets/<name>``, True) for the engine.
    Raises:
        OSError: the state dir is not writable.
    """
    if not values:
        return []
    d = secrets_dir(state_dir, container)
    d.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    d.mkdir(mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    mounts = []
    for name, value in values.items():
        path = d / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, value)
        finally:
            os.close(fd)
        mounts.append((str(path.resolve()), f"{SECRETS_TARGET}/{name}", True))
    return mounts


def remove(state_dir: Path, container: str) -> None:
    """Delete a container's secret files (after the container is gone)."""
    shutil.rmtree(secrets_dir(state_dir, container), ignore_errors=True)
