from datetime import datetime, timedelta, timezone

import pytest

from dockwarden.config import Policy
from dockwarden.config_notify import Incidents
from dockwarden.incidents import IncidentBook, IncidentError
from dockwarden.model import Drift, DriftKind, Finding, Priority

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
POLICY = Policy()


def f(subject, kind=DriftKind.STOPPED, prio=Priority.P2, tracked=True, **details):
    return Finding(Drift(kind, subject, container=subject, reason=f"{subject} {kind.value}",
                         details=details, tracked=tracked), prio)


@pytest.fixture
def book(tmp_path):
    b = IncidentBook(tmp_path / "db", "n1")
    yield b
    b.close()


def test_p2_opens_at_once_and_only_once(book):
    t = book.update([f("web")], now=T0, policy=POLICY)
    assert [x.kind for x in t] == ["opened"]
    for i in range(5):
        assert book.update([f("web")], now=T0 + timedelta(seconds=i + 1), policy=POLICY) == []
    assert len(book.list()) == 1


def test_p3_needs_two_full_passes(book):
    spike = f("web", DriftKind.RESOURCE_SPIKE, Priority.P3)
    assert book.update([spike], now=T0, policy=POLICY) == []
    # event-driven passes do not count toward persistence
    assert book.update([spike], now=T0, policy=POLICY, full_pass=False) == []
    t = book.update([spike], now=T0 + timedelta(seconds=30), policy=POLICY)
    assert [x.kind for x in t] == ["opened"]


def test_p3_blip_resets_the_streak(book):
    spike = f("web", DriftKind.RESOURCE_SPIKE, Priority.P3)
    book.update([spike], now=T0, policy=POLICY)
    book.update([], now=T0 + timedelta(seconds=30), policy=POLICY)
    assert book.update([spike], now=T0 + timedelta(seconds=60), policy=POLICY) == []


def test_resolved_when_drift_gone_and_reopens_as_new(book):
    book.update([f("web")], now=T0, policy=POLICY)
    t = book.update([], now=T0 + timedelta(seconds=12), policy=POLICY)
    assert [x.kind for x in t] == ["resolved"]
    assert t[0].incident.resolved_at == T0 + timedelta(seconds=12)
    t = book.update([f("web")], now=T0 + timedelta(seconds=12 + 901), policy=POLICY)  # after the flap window
    assert [x.kind for x in t] == ["opened"]
    assert len(book.list(include_resolved=True)) == 2


def test_untracked_and_p4_do_not_open(book):
    assert book.update([f("stray", tracked=False), f("h", DriftKind.HOUSEKEEPING, Priority.P4)], now=T0,
                       policy=POLICY) == []


def test_reminders_for_p0_p1_only_every_interval(book):
    mem = f("host:memory", DriftKind.RESOURCE_PRESSURE, Priority.P0)
    web = f("web")
    book.update([mem, web], now=T0, policy=POLICY)
    assert book.update([mem, web], now=T0 + timedelta(hours=3), policy=POLICY) == []
    t = book.update([mem, web], now=T0 + timedelta(hours=4), policy=POLICY)
    assert [(x.kind, x.incident.subject) for x in t] == [("reminder", "host:memory")]
    assert book.update([mem, web], now=T0 + timedelta(hours=5), policy=POLICY) == []


def test_ack_stops_reminders_but_resolution_still_happens(book):
    mem = f("host:memory", DriftKind.RESOURCE_PRESSURE, Priority.P0)
    (t,) = book.update([mem], now=T0, policy=POLICY)
    book.ack(t.incident.id, T0)
    with pytest.raises(IncidentError, match="acknowledged"):
        book.ack(t.incident.id, T0)
    with pytest.raises(IncidentError, match="no incident"):
        book.ack(999, T0)
    assert book.update([mem], now=T0 + timedelta(hours=5), policy=POLICY) == []
    assert [x.kind for x in book.update([], now=T0 + timedelta(hours=6), policy=POLICY)] == ["resolved"]


def test_unresolved_incident_drift_after_threshold(book):
    book.update([f("web")], now=T0, policy=POLICY)
    assert book.unresolved_drifts(now=T0 + timedelta(minutes=59), policy=POLICY) == []
    (d,) = book.unresolved_drifts(now=T0 + timedelta(minutes=61), policy=POLICY)
    assert d.kind == DriftKind.UNRESOLVED_INCIDENT and d.subject == "web"
    assert d.details["priority"] == "P2" and d.details["incident_kind"] == "stopped"
    # the escalation's own incident does not escalate again
    book.update([f("web"), Finding(d, Priority.P2)], now=T0 + timedelta(minutes=61), policy=POLICY)
    assert len(book.unresolved_drifts(now=T0 + timedelta(hours=3), policy=POLICY)) == 1


def test_incidents_are_per_node(tmp_path):
    a, b = IncidentBook(tmp_path / "db", "a"), IncidentBook(tmp_path / "db", "b")
    a.update([f("web")], now=T0, policy=POLICY)
    assert b.list() == [] and len(a.list()) == 1


def test_configurable_p3_threshold(book):
    pol = Policy(incidents=Incidents(open_after_passes_p3=1))
    t = book.update([f("web", DriftKind.RESOURCE_SPIKE, Priority.P3)], now=T0, policy=pol)
    assert [x.kind for x in t] == ["opened"]


def test_held_drift_keeps_its_incident_open(book):
    book.update([f("web")], now=T0, policy=POLICY)
    assert book.update([], now=T0 + timedelta(seconds=1), policy=POLICY, hold={("web", "stopped")}) == []
    assert [x.kind for x in book.update([], now=T0 + timedelta(seconds=5), policy=POLICY)] == ["resolved"]


def test_flapping_drift_reopens_quietly_and_resolves_after_a_quiet_window(book):
    book.update([f("web")], now=T0, policy=POLICY)
    assert [x.kind for x in book.update([], now=T0 + timedelta(seconds=1), policy=POLICY)] == ["resolved"]
    t = book.update([f("web")], now=T0 + timedelta(seconds=40), policy=POLICY)
    assert [x.kind for x in t] == ["reopened"] and t[0].incident.flaps == 1
    assert len(book.list(include_resolved=True)) == 1  # the same incident
    # gone again, but within the flap window: stays open
    assert book.update([], now=T0 + timedelta(seconds=41), policy=POLICY) == []
    assert book.update([f("web")], now=T0 + timedelta(seconds=80), policy=POLICY) == []
    assert book.update([], now=T0 + timedelta(seconds=81), policy=POLICY) == []
    # quiet for the window: resolved once
    t = book.update([], now=T0 + timedelta(seconds=80 + 901), policy=POLICY)
    assert [x.kind for x in t] == ["resolved"]


def test_flap_damping_off(book):
    pol = Policy(incidents=Incidents(flap_window_s=0))
    book.update([f("web")], now=T0, policy=pol)
    book.update([], now=T0 + timedelta(seconds=1), policy=pol)
    assert [x.kind for x in book.update([f("web")], now=T0 + timedelta(seconds=2), policy=pol)] == ["opened"]
