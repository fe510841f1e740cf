"""priority_of, assess, summarize."""

from __future__ import annotations

import pytest
from builders import POLICY, drift, finding

from dockwarden.model import DriftKind as K
from dockwarden.model import Priority as P
from dockwarden.model import SummaryState as S
from dockwarden.reconcile.assess import assess, priority_of, summarize


@pytest.mark.parametrize("d,expected", [
    (drift(K.RESOURCE_PRESSURE, "host:memory", resource="memory"), P.P0),
    (drift(K.RESOURCE_PRESSURE, "host:swap", resource="swap"), P.P0),
    (drift(K.RESOURCE_PRESSURE, "host:disk:/", resource="disk", level="critical"), P.P1),
    (drift(K.RESOURCE_PRESSURE, "host:disk:/", resource="disk", level="warn"), P.P3),
    (drift(K.MISSING), P.P2),
    (drift(K.STOPPED), P.P2),
    (drift(K.CRASH_LOOP), P.P2),
    (drift(K.FAILED_DEPLOYMENT), P.P2),
    (drift(K.UNHEALTHY), P.P2),
    (drift(K.OFFLINE_NODE, "node:node2"), P.P1),
    (drift(K.DEPENDENCY_UNAVAILABLE, dependant_running=False), P.P2),
    (drift(K.DEPENDENCY_UNAVAILABLE, dependant_running=True), P.P3),
    (drift(K.RESOURCE_SPIKE), P.P3),
    (drift(K.HOUSEKEEPING, "worktree"), P.P4),
    (drift(K.STOPPED, "stray", tracked=False), P.P3),
    (drift(K.UNHEALTHY, "stray", tracked=False), P.P3),
])
def test_priority_of(d, expected):
    assert priority_of(d) is expected


def test_assess_sorts_by_priority_subject_kind():
    ds = [
        drift(K.HOUSEKEEPING, "lock"),
        drift(K.UNHEALTHY, "web"),
        drift(K.STOPPED, "api"),
        drift(K.CRASH_LOOP, "api"),
        drift(K.RESOURCE_PRESSURE, "host:disk:/", resource="disk", level="critical"),
        drift(K.RESOURCE_PRESSURE, "host:memory", resource="memory"),
    ]
    got = [(f.priority, f.subject, f.drift.kind.value) for f in assess(ds, POLICY)]
    assert got == [
        (P.P0, "host:memory", "resource_pressure"),
        (P.P1, "host:disk:/", "resource_pressure"),
        (P.P2, "api", "crash_loop"),
        (P.P2, "api", "stopped"),
        (P.P2, "web", "unhealthy"),
        (P.P4, "lock", "housekeeping"),
    ]
    assert assess(list(reversed(ds)), POLICY) == assess(ds, POLICY)


def f_of(priority_drift):
    return finding(priority_drift)


MEM = f_of(drift(K.RESOURCE_PRESSURE, "host:memory", resource="memory"))
DISK_CRIT = f_of(drift(K.RESOURCE_PRESSURE, "host:disk:/", resource="disk", level="critical"))
DOWN = f_of(drift(K.STOPPED))
DEGRADED = f_of(drift(K.RESOURCE_PRESSURE, "host:disk:/", resource="disk", level="warn"))
HOUSE = f_of(drift(K.HOUSEKEEPING, "lock"))


@pytest.mark.parametrize("findings,blocked,in_flight,expected", [
    ([], (), (), S.NOMINAL),
    ([HOUSE], (), (), S.NOMINAL),
    ([DEGRADED, HOUSE], (), (), S.DEGRADED),
    ([DOWN], (), (), S.DEGRADED),
    ([DOWN], (), ("web",), S.RECONCILING),
    ([], (), ("web",), S.RECONCILING),
    ([DOWN], ("web",), ("web",), S.UNSTABLE),
    ([], ("web",), (), S.UNSTABLE),
    ([MEM], (), ("web",), S.UNSTABLE),
    ([DISK_CRIT, HOUSE], (), (), S.UNSTABLE),
])
def test_summarize(findings, blocked, in_flight, expected):
    assert summarize(findings, blocked=blocked, in_flight=in_flight) is expected


def test_untracked_findings_do_not_move_the_summary():
    from dockwarden.model import Drift, DriftKind, Finding, Priority, SummaryState
    from dockwarden.reconcile.assess import summarize

    untracked = Finding(Drift(DriftKind.STOPPED, "stray", container="stray", tracked=False), Priority.P3)
    tracked = Finding(Drift(DriftKind.STOPPED, "web", container="web"), Priority.P2)
    assert summarize([untracked]) == SummaryState.NOMINAL
    assert summarize([untracked, tracked]) == SummaryState.DEGRADED


def test_unresolved_incident_escalates_to_at_least_p2():
    from dockwarden.model import Drift, DriftKind, Priority
    from dockwarden.reconcile.assess import priority_of

    def d(p):
        return Drift(DriftKind.UNRESOLVED_INCIDENT, "web", details={"priority": p})

    assert priority_of(d("P3")) == Priority.P2
    assert priority_of(d("P4")) == Priority.P2
    assert priority_of(d("P1")) == Priority.P1
    assert priority_of(d("bogus")) == Priority.P2
