"""Run the tiered disk-pressure recipe: plan a tier, prune it, re-measure, repeat.

Used by the storage worker (``auto`` mode, over the P1 threshold) and by
``dockwarden prune``. Each tier is planned on a fresh observation (so tier 3
sees the images tier 2's containers left unused), executed by
:class:`~dockwarden.prune.Pruner`, and followed by a new observation; the recipe
stops as soon as the Docker root dir's filesystem is at or below the threshold
(issue 3; disinto's "prune, re-check, then prune -a", seed 000). Every tier
that removed something emits one ``prune_tier`` event with the bytes it freed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from dockwarden.config import Policy
from dockwarden.model import Event, EventType
from dockwarden.observe.storage import StorageObserver
from dockwarden.prune import Pruner, TierResult
from dockwarden.reconcile.prune_plan import KeepSet, TierPlan, plan_tier, volume_advice
from dockwarden.reconcile.usage import StorageReport, human_bytes

log = logging.getLogger(__name__)

#: Subject of the storage drift, events and recommendations: ``host:storage:<root dir>``.
SUBJECT = "host:storage:"


def subject_of(report: StorageReport) -> str:
    return f"{SUBJECT}{report.root_dir or '?'}"


@dataclass
class TierOutcome:
    """One tier of a run: its plan, what the pruner did (None: nothing to remove),
    and the filesystem before and after (percent, bytes freed as measured)."""

    plan: TierPlan
    result: TierResult | None
    percent_before: float | None
    percent_after: float | None
    fs_freed_bytes: int | None

    def line(self) -> str:
        """``tier 1 (dangling images and build cache): removed 3, freed 1.2 GiB, 85.1% -> 80.3%``."""
        if self.result is None:
            return f"tier {self.plan.tier} ({self.plan.title}): nothing to remove"
        pct = ""
        if self.percent_before is not None and self.percent_after is not None:
            pct = f", {self.percent_before:.1f}% -> {self.percent_after:.1f}%"
        failed = f", {len(self.result.failed)} failed" if self.result.failed else ""
        return (f"tier {self.plan.tier} ({self.plan.title}): removed {len(self.result.removed)}{failed}, "
                f"freed {human_bytes(self.result.bytes_estimated)}{pct}")


@dataclass
class RecipeRun:
    """A whole run. ``stopped`` says why it ended."""

    threshold_percent: float
    before: StorageReport
    after: StorageReport
    tiers: list[TierOutcome] = field(default_factory=list)
    stopped: str = ""

    @property
    def below(self) -> bool:
        fs = self.after.filesystem
        return fs is not None and fs.percent <= self.threshold_percent

    @property
    def bytes_freed(self) -> int:
        return sum(t.result.bytes_estimated for t in self.tiers if t.result is not None)

    @property
    def ran(self) -> bool:
        """True when some tier removed (or tried to remove) something."""
        return any(t.result is not None for t in self.tiers)

    def escalation(self, n: int = 5) -> str:
        """What a person must look at when the recipe could not get below the
        threshold: the volumes (never removed) and the largest images."""
        fs = self.after.filesystem
        vols = ", ".join(f"{v.name} {human_bytes(v.size_bytes)}" + (" (unused)" if v.ref_count == 0 else "")
                         for v in volume_advice(self.after, n)) or "none"
        imgs = ", ".join(f"{i.name} {human_bytes(i.size_bytes)}" for i in self.after.top_images(n)) or "none"
        where = f"{fs.path} {fs.percent:.1f}%" if fs else (self.after.root_dir or "?")
        return (f"disk {where} still above {self.threshold_percent:g}% after the recipe "
                f"(freed {human_bytes(self.bytes_freed)}): volumes are never removed automatically — review "
                f"them: {vols}; largest images: {imgs}")


def run_recipe(observer: StorageObserver, pruner: Pruner, *, keep_for: Callable[[StorageReport], KeepSet],
               policy: Policy, threshold_percent: float, clock: Callable[[], datetime], node: str,
               emit: Callable[[Event], object] | None = None, all_tiers: bool = False,
               report: StorageReport | None = None) -> RecipeRun:
    """Run the enabled tiers in order until the filesystem is at or below the threshold.

    Args:
        observer: measures (``GET /system/df`` + the filesystem) before and after each tier.
        pruner: removes what a tier plan lists.
        keep_for: the keep set for a report (tracked services, recorded specs,
            intents, ``storage.keep_images``); asked again before every tier.
        policy: ``storage.tiers`` and the planner's settings.
        threshold_percent: stop once the filesystem is at or below this percent.
        clock: returns aware UTC now.
        node: for events.
        emit: records ``prune_tier`` events (None: no events).
        all_tiers: run every enabled tier even when already below the threshold
            (``dockwarden prune --all``).
        report: a fresh observation to start from (None: observe first).
    Returns:
        RecipeRun
    Raises:
        Nothing from the engine: failures are in the tier results.
    """
    before = report or observer.collect(clock())
    run = RecipeRun(threshold_percent, before, before)
    current = before
    for name in policy.storage.tiers:
        fs = current.filesystem
        if current.engine_error:
            run.stopped = f"engine unreachable: {current.engine_error}"
            break
        if not all_tiers:
            if fs is None:
                run.stopped = f"cannot measure the filesystem ({current.filesystem_error})"
                break
            if fs.percent <= threshold_percent:
                run.stopped = f"at {fs.percent:.1f}%, at or below {threshold_percent:g}%"
                break
        plan = plan_tier(name, current, keep_for(current), policy, now=clock())
        if not plan.candidates:
            run.tiers.append(TierOutcome(plan, None, fs.percent if fs else None, fs.percent if fs else None, 0))
            continue
        result = pruner.run(plan)
        after = observer.collect(clock())
        fs2 = after.filesystem
        freed = (fs.used_bytes - fs2.used_bytes) if (fs and fs2) else None
        outcome = TierOutcome(plan, result, fs.percent if fs else None, fs2.percent if fs2 else None, freed)
        run.tiers.append(outcome)
        current = after
        if emit is not None:
            emit(Event(
                type=EventType.PRUNE_TIER, ts=clock(), node=node, service=subject_of(after), action="prune",
                priority="P1", reason=outcome.line(),
                details={"tier": plan.tier, "name": plan.name, "bytes_freed": result.bytes_estimated,
                         "fs_freed_bytes": freed, "percent_before": outcome.percent_before,
                         "percent_after": outcome.percent_after, "threshold_percent": threshold_percent,
                         "removed": [r.to_json() for r in result.removed],
                         "failed": [r.to_json() for r in result.failed],
                         "kept": [{"name": n, "why": w} for n, w in plan.kept][:50]},
            ))
    else:
        fs = current.filesystem
        if fs is not None and fs.percent <= threshold_percent:
            run.stopped = f"at {fs.percent:.1f}%, at or below {threshold_percent:g}%"
        else:
            run.stopped = "every tier ran"
    run.after = current
    log.info("storage recipe: %s; %s", run.stopped, "; ".join(t.line() for t in run.tiers))
    return run
