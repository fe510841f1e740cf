"""Where things are: the state dir, the inventory, the policy, the node and the
engine, resolved from flags, then the environment, then defaults.

Kept apart from ``config`` (the pydantic policy models) so that every CLI
command can read its settings without importing pydantic (issue 9: a CLI that
answers at once).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_state_dir() -> Path:
    """``/var/lib/dockwarden`` as root, else ``~/.local/state/dockwarden``."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/dockwarden")
    return Path.home() / ".local" / "state" / "dockwarden"


@dataclass(frozen=True)
class Settings:
    """Where things are, resolved from flags, then environment, then defaults.

    ``DOCKWARDEN_STATE_DIR``, ``DOCKWARDEN_INVENTORY``, ``DOCKWARDEN_POLICY``;
    the Docker engine is found by the docker SDK from ``DOCKER_HOST`` (default
    the local socket). ``node`` is ``--node``/``DOCKWARDEN_NODE``; when unset the
    inventory decides (its only host, else this machine's hostname).
    """

    state_dir: Path
    inventory: Path | None
    policy_path: Path | None
    node: str | None
    docker_host: str | None = None

    @classmethod
    def resolve(
        cls,
        state_dir: str | Path | None = None,
        inventory: str | Path | None = None,
        policy: str | Path | None = None,
        node: str | None = None,
    ) -> "Settings":
        sd = state_dir or os.environ.get("DOCKWARDEN_STATE_DIR") or default_state_dir()
        inv = inventory or os.environ.get("DOCKWARDEN_INVENTORY") or None
        pol = policy or os.environ.get("DOCKWARDEN_POLICY") or None
        nd = node or os.environ.get("DOCKWARDEN_NODE") or None
        return cls(
            state_dir=Path(sd),
            inventory=Path(inv) if inv else None,
            policy_path=Path(pol) if pol else None,
            node=nd,
            docker_host=os.environ.get("DOCKER_HOST") or None,
        )
