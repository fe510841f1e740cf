"""Carry out one tier of the disk-pressure recipe: remove images, build cache, containers.

The only module besides ``observe/`` and ``execute.py`` that talks to the Docker
engine (``.importlinter``), and the only one that removes images, build cache
and unused containers. It removes exactly what a
:class:`~dockwarden.reconcile.prune_plan.TierPlan` lists, never with ``force``:
the engine itself refuses to remove an image a container uses or a container
that runs (HTTP 409), which closes the race between planning and removing.
Volumes are never removed, not even a container's anonymous ones (``v=False``).

Execution never raises (style.md §3, kopf ``Outcome``): every removal becomes a
:class:`Removal` with ``ok`` and ``error``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import docker.errors
import requests.exceptions
import urllib3.exceptions

from dockwarden.reconcile.prune_plan import Candidate, TierPlan

log = logging.getLogger(__name__)

#: Engine failures a removal turns into ``ok=False`` (as ``observe.docker.ENGINE_ERRORS``,
#: which this sibling layer may not import).
ENGINE_ERRORS: tuple[type[BaseException], ...] = (
    docker.errors.DockerException, requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
    ConnectionError,
)


@dataclass(frozen=True)
class Removal:
    """One removal attempted. ``bytes`` is the plan's estimate for an image or a
    container, and the engine's ``SpaceReclaimed`` for the build cache."""

    kind: str
    id: str
    name: str
    ok: bool
    bytes: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "id": self.id, "ok": self.ok, "bytes": self.bytes,
                "error": self.error}


@dataclass(frozen=True)
class TierResult:
    """What one tier did. ``bytes_estimated`` sums the successful removals' bytes;
    the storage worker adds the filesystem's own before/after figures."""

    tier: int
    name: str
    removals: tuple[Removal, ...]
    duration_s: float

    @property
    def removed(self) -> list[Removal]:
        return [r for r in self.removals if r.ok]

    @property
    def failed(self) -> list[Removal]:
        return [r for r in self.removals if not r.ok]

    @property
    def bytes_estimated(self) -> int:
        return sum(r.bytes for r in self.removals if r.ok)


def _why(e: BaseException) -> str:
    if isinstance(e, docker.errors.APIError):
        return f"{e.status_code}: {e.explanation or e}"
    return f"{type(e).__name__}: {e}"


class Pruner:
    """Removes what a tier plan lists.

    Args:
        client: a ``docker.DockerClient`` (its ``api`` is used).
    """

    def __init__(self, client: Any):
        self.api = client.api

    def run(self, plan: TierPlan) -> TierResult:
        """Remove every candidate of ``plan``, in order.

        Images: by id when they have at most one tag; otherwise each tag but the
        last is untagged first, then the image is removed by id. Containers:
        ``DELETE /containers/{id}`` without ``force`` and without ``v`` (volumes
        stay). Build cache: ``POST /build/prune?all=true`` (every unused record;
        the cache is rebuilt on the next build).

        Returns:
            TierResult: one Removal per candidate. A candidate already gone
            (404) counts as removed with 0 bytes.
        Raises:
            Nothing: engine errors become failed removals.
        """
        t0 = time.monotonic()
        out = [self._remove(c) for c in plan.candidates]
        res = TierResult(plan.tier, plan.name, tuple(out), time.monotonic() - t0)
        log.info("prune tier %d (%s): %d removed, %d failed, ~%d bytes", plan.tier, plan.name,
                 len(res.removed), len(res.failed), res.bytes_estimated)
        return res

    def _remove(self, c: Candidate) -> Removal:
        try:
            if c.kind == "image":
                for tag in c.refs[:-1]:
                    self.api.remove_image(tag, force=False, noprune=False)
                self.api.remove_image(c.id, force=False, noprune=False)
                return Removal(c.kind, c.id, c.name, True, c.bytes)
            if c.kind == "container":
                self.api.remove_container(c.id, v=False, force=False)
                return Removal(c.kind, c.id, c.name, True, c.bytes)
            if c.kind == "build_cache":
                r = self.api.prune_builds(all=True) or {}
                return Removal(c.kind, c.id, c.name, True, int(r.get("SpaceReclaimed") or 0))
            return Removal(c.kind, c.id, c.name, False, 0, f"unknown kind {c.kind!r}")
        except docker.errors.NotFound:
            return Removal(c.kind, c.id, c.name, True, 0, "already gone")
        except ENGINE_ERRORS as e:
            log.warning("prune: %s %s not removed: %s", c.kind, c.name, _why(e))
            return Removal(c.kind, c.id, c.name, False, 0, _why(e))
