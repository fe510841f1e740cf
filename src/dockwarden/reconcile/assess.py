"""Assessment: give each drift a priority, and the host a one-word summary.

Pure: no I/O, no clock. Priorities follow the disinto supervisor (seed 000):
P0 memory crisis, P1 disk pressure, P2 service down or blocked, P3 degraded,
P4 housekeeping. Summary states follow the runtime supervisor (seed 001).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from dockwarden.config import Policy
from dockwarden.model import Drift, DriftKind, Finding, Priority, SummaryState

_SERVICE_DOWN = frozenset({
    DriftKind.MISSING, DriftKind.STOPPED, DriftKind.CRASH_LOOP,
    DriftKind.FAILED_DEPLOYMENT, DriftKind.UNHEALTHY,
})


def priority_of(drift: Drift) -> Priority:
    """The priority of one drift.

    Rules (disinto, seed 000; design.md):

    * ``resource_pressure``: ``details["resource"]`` memory or swap -> P0;
      disk with ``details["level"] == "critical"`` -> P1, ``"trend"`` (P1 within
      24 h at the current growth) -> P2, any other disk level -> P3.
    * Untracked containers (``drift.tracked`` False) -> P3: dockwarden only
      recommends for them.
    * ``missing``, ``stopped``, ``crash_loop``, ``failed_deployment``,
      ``unhealthy`` -> P2 (service down or blocked); ``node_offline`` -> P1.
    * ``dependency_unavailable`` -> P2 when the dependant is down
      (``details["dependant_running"]`` false), P3 when it is running.
    * ``resource_spike`` -> P3; ``housekeeping`` -> P4.
    * ``unresolved_incident`` (an incident open too long, seed 001) -> the
      incident's own priority (``details["priority"]``), escalated to at least P2.

    Args:
        drift (Drift): One drift from :func:`~dockwarden.reconcile.drift.detect_drift`.
    Returns:
        Priority: P0 (worst) .. P4.
    """
    kind = drift.kind
    if kind is DriftKind.OFFLINE_NODE:
        return Priority.P1  # a whole node is out of reach (issue 11)
    if kind is DriftKind.RESOURCE_PRESSURE:
        resource = drift.details.get("resource")
        if resource in ("memory", "swap"):
            return Priority.P0
        if drift.details.get("level") == "trend":
            return Priority.P2  # the disk reaches P1 within 24 h (issue 3): warn before, not after
        return Priority.P1 if drift.details.get("level") == "critical" else Priority.P3
    if not drift.tracked:
        return Priority.P3
    if kind in _SERVICE_DOWN:
        return Priority.P2
    if kind is DriftKind.DEPENDENCY_UNAVAILABLE:
        return Priority.P3 if drift.details.get("dependant_running") else Priority.P2
    if kind is DriftKind.HOUSEKEEPING:
        return Priority.P4
    if kind is DriftKind.UNRESOLVED_INCIDENT:
        own = str(drift.details.get("priority", "P2"))
        level = int(own[1]) if len(own) == 2 and own[0] == "P" and own[1] in "01234" else 2
        return Priority(min(level, int(Priority.P2)))
    return Priority.P3  # resource_spike, and any later kind until it gets a rule


def assess(drifts: Sequence[Drift], policy: Policy) -> list[Finding]:
    """Turn drifts into findings, worst first.

    Args:
        drifts (Sequence[Drift]): The drifts of one pass.
        policy (Policy): Accepted for priority overrides of later features;
            the built-in rules of :func:`priority_of` do not need it.
    Returns:
        list[Finding]: Sorted by ``(priority, subject, kind)``.
    """
    del policy  # no policy-driven priorities yet
    findings = [Finding(d, priority_of(d)) for d in drifts]
    return sorted(findings, key=lambda f: (f.priority, f.subject, f.drift.kind.value))


def summarize(findings: Sequence[Finding], *, blocked: Collection[str] = (),
              in_flight: Collection[str] = ()) -> SummaryState:
    """The host's summary state, first rule that applies wins.

    1. ``unstable``: any P0 or P1 finding, or any ``blocked`` subject (circuit
       open, or a ``reconcile_blocked`` decision this pass).
    2. ``reconciling``: any action in flight (``in_flight`` non-empty).
    3. ``degraded``: any P2 or P3 finding.
    4. ``nominal``: otherwise (P4 housekeeping alone is still nominal).

    Findings about untracked containers (``drift.tracked`` False: neither in
    the inventory nor labelled) are reported by ``drift`` but never move the
    summary: they are not part of the desired state, and an unrelated crashed
    container must not keep a host degraded forever.

    Args:
        findings (Sequence[Finding]): The findings of one pass.
        blocked (Collection[str]): Subjects whose remediation is blocked.
        in_flight (Collection[str]): Subjects with an action not yet judged.
    Returns:
        SummaryState: One of nominal, degraded, unstable, reconciling.
    """
    findings = [f for f in findings if f.drift.tracked]
    if blocked or any(f.priority <= Priority.P1 for f in findings):
        return SummaryState.UNSTABLE
    if in_flight:
        return SummaryState.RECONCILING
    if any(f.priority <= Priority.P3 for f in findings):
        return SummaryState.DEGRADED
    return SummaryState.NOMINAL
