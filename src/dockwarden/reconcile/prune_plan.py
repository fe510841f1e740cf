"""The tiered disk-pressure recipe, planned: what each tier would remove and free.

Pure: no I/O, no clock. ``prune.py`` executes a :class:`TierPlan`; the storage
worker re-measures after each tier and plans the next one from fresh figures.

Tiers (issue 3; disinto's ``docker system prune -f`` then ``-a -f``, seed 000,
made storage-aware):

1. ``dangling``: dangling images (no tag, no container) and unused build cache.
2. ``containers``: stopped containers that are neither tracked (inventory,
   ``dockwarden.enable=true`` label, recorded spec) nor opted out
   (``dockwarden.enable=false``), stopped for at least
   ``storage.stopped_container_min_age_s``.
3. ``images``: images no container uses, never one a tracked service's recorded
   spec names (intent-stopped services included, so they can be started or
   recreated later) nor one matching ``storage.keep_images``.

Volumes are never candidates: :func:`volume_advice` lists them with their sizes
for a person to decide.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dockwarden.config import Policy
from dockwarden.config_storage import TIERS
from dockwarden.model import DesiredState, Intent, IntentRecord
from dockwarden.reconcile.usage import (
    ContainerUsage, FilesystemUsage, ImageUsage, StorageReport, VolumeUsage, human_bytes, split_reference,
)

#: Label that opts a container out of dockwarden (as in reconcile/drift.py).
ENABLE_LABEL = "dockwarden.enable"
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
#: Container states tier 2 may remove (never running, paused or restarting).
STOPPED_STATES = frozenset({"exited", "created", "dead"})
TIER_TITLES = {
    "dangling": "dangling images and build cache",
    "containers": "stopped containers neither tracked nor intent-stopped",
    "images": "unused images no tracked service references",
}
_HEX_ID = re.compile(r"^(sha256:)?[0-9a-f]{12,64}\Z")


@dataclass(frozen=True)
class KeepSet:
    """What the recipe must never remove, each with the reason.

    ``image_refs`` maps normalised image references (``repo:tag``,
    ``repo@digest``, ``id:<hex prefix>``) to why; ``containers`` maps container
    names to why; ``image_globs`` are ``storage.keep_images``.
    """

    image_refs: dict[str, str] = field(default_factory=dict)
    containers: dict[str, str] = field(default_factory=dict)
    image_globs: tuple[str, ...] = ()

    def image_reason(self, image: ImageUsage) -> str | None:
        """Why ``image`` must stay, or None when nothing protects it."""
        for ref in (*image.tags, *image.digests):
            for n in normalise_ref(ref):
                if n in self.image_refs:
                    return self.image_refs[n]
            for g in self.image_globs:
                if fnmatch.fnmatchcase(ref, g) or any(fnmatch.fnmatchcase(n, g) for n in normalise_ref(ref)):
                    return f"storage.keep_images {g!r}"
        hexid = image.id.split(":", 1)[-1]
        for ref, why in self.image_refs.items():
            if ref.startswith("id:") and hexid.startswith(ref[3:]):
                return why
        return None


def normalise_ref(ref: str) -> set[str]:
    """The forms one image reference may take, so that ``busybox``,
    ``busybox:latest``, ``docker.io/library/busybox:latest`` compare equal.

    Returns:
        set[str]: ``repo:tag`` / ``repo@digest`` forms, plus ``id:<hex>`` when the
        reference looks like an image id (12-64 hex characters, optional ``sha256:``).
    """
    ref = ref.strip()
    if not ref:
        return set()
    out: set[str] = set()
    if _HEX_ID.match(ref):
        out.add("id:" + ref.split(":", 1)[-1])
    repo, tag = split_reference(ref)
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix):]
            break
    if repo.startswith("library/"):
        repo = repo[len("library/"):]
    if tag is None:
        tag = "latest"
    sep = "@" if ":" in tag and tag.split(":", 1)[0].startswith("sha") else ":"
    out.add(f"{repo}{sep}{tag}")
    return out


def _tracked_container(c: ContainerUsage, desired: DesiredState) -> str | None:
    for s in desired.services.values():
        if s.compose_project:
            if (c.labels.get(COMPOSE_PROJECT_LABEL) == s.compose_project
                    and c.labels.get(COMPOSE_SERVICE_LABEL) == (s.compose_service or s.name)):
                return s.name
        elif c.name == s.container_name:
            return s.name
    return None


def keep_set(*, desired: DesiredState, intents: Mapping[str, IntentRecord], specs: Mapping[str, Mapping[str, Any]],
             containers: Sequence[ContainerUsage], policy: Policy) -> KeepSet:
    """Everything the recipe must leave alone.

    Args:
        desired: tracked services (inventory merged with labelled containers).
        intents: recorded intents by service (``stopped`` ones are named in reasons).
        specs: recorded creation specs by service (``Store.specs()``): their
            ``image`` and ``name`` are kept even when the service's container is gone.
        containers: the engine's containers (for compose labels and opt-outs).
        policy: ``storage.keep_images``.
    Returns:
        KeepSet
    """
    def how(service: str) -> str:
        rec = intents.get(service)
        stopped = rec is not None and rec.intent is Intent.STOPPED
        return f"service {service}" + (" (intent stopped)" if stopped else "")

    refs: dict[str, str] = {}
    names: dict[str, str] = {}
    for c in containers:
        svc = _tracked_container(c, desired)
        if svc is not None:
            names.setdefault(c.name, f"container of tracked {how(svc)}")
        elif c.labels.get(ENABLE_LABEL, "").strip().lower() == "false":
            names.setdefault(c.name, "opted out (dockwarden.enable=false)")
    for s in desired.services.values():
        if not s.compose_project:
            names.setdefault(s.container_name, f"container of tracked {how(s.name)}")
    for service, spec in sorted(specs.items()):
        image = str(spec.get("image") or "")
        for n in normalise_ref(image):
            refs.setdefault(n, f"{how(service)} uses it (recorded spec)")
        if spec.get("name"):
            names.setdefault(str(spec["name"]), f"recorded container of {how(service)}")
    return KeepSet(refs, names, tuple(policy.storage.keep_images))


@dataclass(frozen=True)
class Candidate:
    """One thing a tier would remove. ``refs`` are an image's tags (each is
    removed; the last removal deletes the image); ``bytes`` is the estimate."""

    kind: str  # "image" | "container" | "build_cache"
    id: str
    name: str
    bytes: int
    refs: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "name": self.name, "bytes": self.bytes}


@dataclass(frozen=True)
class TierPlan:
    """What one tier would remove (``candidates``) and what it spares (``kept``:
    (name, why) pairs of things that would otherwise qualify)."""

    tier: int
    name: str
    candidates: tuple[Candidate, ...] = ()
    kept: tuple[tuple[str, str], ...] = ()

    @property
    def title(self) -> str:
        return TIER_TITLES[self.name]

    @property
    def bytes(self) -> int:
        """Estimated bytes freed: images' unique bytes, writable layers, reclaimable build cache."""
        return sum(c.bytes for c in self.candidates)

    def summary(self) -> str:
        """``tier 1 (dangling images and build cache): 3 images, build cache, ~1.2 GiB``."""
        kinds: dict[str, int] = {}
        for c in self.candidates:
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        what = ", ".join(("build cache" if k == "build_cache" else f"{n} {k}{'s' if n != 1 else ''}")
                         for k, n in sorted(kinds.items())) or "nothing"
        return f"tier {self.tier} ({self.title}): {what}, ~{human_bytes(self.bytes)}"

    def to_json(self) -> dict[str, Any]:
        return {"tier": self.tier, "name": self.name, "title": self.title, "bytes": self.bytes,
                "candidates": [c.to_json() for c in self.candidates],
                "kept": [{"name": n, "why": w} for n, w in self.kept]}


def _stopped_for_s(c: ContainerUsage, now: datetime) -> float | None:
    ts = c.finished_at or c.created
    return None if ts is None else (now - ts).total_seconds()


def plan_tier(name: str, report: StorageReport, keep: KeepSet, policy: Policy, *, now: datetime,
              removed_containers: frozenset[str] = frozenset()) -> TierPlan:
    """Plan one tier on a storage report.

    Args:
        name: ``dangling``, ``containers`` or ``images``.
        report: the latest storage observation.
        keep: what must stay (:func:`keep_set`).
        policy: ``storage.stopped_container_min_age_s``.
        now: aware UTC time (container ages).
        removed_containers: ids of containers an earlier tier of the same dry run
            would remove, so their images count as unused.
    Returns:
        TierPlan
    Raises:
        ValueError: unknown tier name.
    """
    if name not in TIERS:
        raise ValueError(f"unknown tier {name!r}; expected one of {TIERS}")
    tier = TIERS.index(name) + 1
    cands: list[Candidate] = []
    kept: list[tuple[str, str]] = []
    if name == "containers":
        min_age = policy.storage.stopped_container_min_age_s
        for c in sorted(report.containers, key=lambda c: c.name):
            if c.state not in STOPPED_STATES or c.id in removed_containers:
                continue
            why = keep.containers.get(c.name)
            age = _stopped_for_s(c, now)
            if why is None and min_age > 0 and (age is None or age < min_age):
                why = f"stopped for {0 if age is None else age:.0f} s < storage.stopped_container_min_age_s"
            if why:
                kept.append((c.name, why))
            else:
                cands.append(Candidate("container", c.id, c.name, c.size_rw_bytes))
        return TierPlan(tier, name, tuple(cands), tuple(kept))
    listed = Counter(c.image_id for c in report.containers)
    remaining = Counter(c.image_id for c in report.containers if c.id not in removed_containers)
    for i in sorted(report.images, key=lambda i: (-i.unique_bytes, i.id)):
        # An image counts as used by the containers still there, and by any the
        # engine counts that the report does not list (never guess those away).
        used = remaining[i.id] > 0 or i.containers > listed[i.id]
        if used or (name == "dangling" and not i.dangling):
            continue
        why = keep.image_reason(i)
        if why:
            kept.append((i.name, why))
        else:
            cands.append(Candidate("image", i.id, i.name, i.unique_bytes, i.tags))
    if name == "dangling":
        cache = report.cache_totals()
        if cache.reclaimable_bytes > 0 or any(not c.in_use for c in report.build_cache):
            cands.append(Candidate("build_cache", "build-cache", "build cache", cache.reclaimable_bytes))
    return TierPlan(tier, name, tuple(cands), tuple(kept))


def plan_recipe(report: StorageReport, keep: KeepSet, policy: Policy, *, now: datetime) -> list[TierPlan]:
    """Every enabled tier as a dry run would do them in order: tier 3 counts the
    images of containers tier 2 removes as unused, and skips what tier 1 removes.

    Returns:
        list[TierPlan]: one per tier in ``storage.tiers``, in recipe order.
    """
    plans: list[TierPlan] = []
    removed_c: frozenset[str] = frozenset()
    removed_i: set[str] = set()
    for name in policy.storage.tiers:
        p = plan_tier(name, report, keep, policy, now=now, removed_containers=removed_c)
        if removed_i:
            p = TierPlan(p.tier, p.name, tuple(c for c in p.candidates if c.id not in removed_i), p.kept)
        removed_c = removed_c | {c.id for c in p.candidates if c.kind == "container"}
        removed_i |= {c.id for c in p.candidates if c.kind == "image"}
        plans.append(p)
    return plans


def projected_percent(fs: FilesystemUsage, freed_bytes: int) -> float:
    """The filesystem's percent after freeing ``freed_bytes`` (psutil's formula)."""
    room = fs.used_bytes + fs.free_bytes
    return 100.0 * max(0, fs.used_bytes - freed_bytes) / room if room > 0 else 0.0


def tiers_needed(plans: Sequence[TierPlan], fs: FilesystemUsage | None, threshold_percent: float) -> int:
    """How many tiers (from the first) the estimates say are needed to get at or
    below ``threshold_percent``; all of them when even that is not enough, 0 when
    already below or the filesystem is unknown."""
    if fs is None or fs.percent <= threshold_percent:
        return 0
    freed = 0
    for n, p in enumerate(plans, 1):
        freed += p.bytes
        if projected_percent(fs, freed) <= threshold_percent:
            return n
    return len(plans)


def volume_advice(report: StorageReport, n: int = 10) -> list[VolumeUsage]:
    """Volumes for a person to review, never removed automatically: unused ones
    (no container refers to them) first, then by size, largest first."""
    return sorted(report.volumes, key=lambda v: (v.ref_count > 0, -v.size_bytes, v.name))[:n]
