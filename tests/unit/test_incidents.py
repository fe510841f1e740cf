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


# --------------------------------------------------------------------------- escalation (issue 8)
#
# Findings are made the way a pass makes them: the host's disk drift from
# detect_drift, the storage worker's from storage_drift, merged by
# merge_disk_drifts and assessed (pipeline.Reconciler.evaluate). Default
# thresholds: warn above 70 %, critical above 80 %. /var/lib/docker is on /,
# as on most hosts: the host samples "/" and the root dir (one filesystem, one
# drift: host:disk:/), the storage worker names it host:storage:/var/lib/docker.

from dockwarden.model import Mode  # noqa: E402
from dockwarden.reconcile.assess import assess  # noqa: E402
from dockwarden.reconcile.drift import detect_drift, merge_disk_drifts  # noqa: E402
from dockwarden.reconcile.usage import FilesystemUsage, StorageReport  # noqa: E402
from dockwarden.storage.monitor import storage_drift  # noqa: E402
from tests.unit import builders  # noqa: E402

ROOT = "/var/lib/docker"


def host_world(percent):
    disks = (builders.disk("/", percent, mountpoint="/"), builders.disk(ROOT, percent, mountpoint="/"))
    return builders.world(host_stats=builders.host(disks=disks))


def storage_report(percent):
    total = 100 * builders.GB
    used = int(total * percent / 100)
    fs = FilesystemUsage(path=ROOT, total_bytes=total, used_bytes=used, free_bytes=total - used,
                         percent=percent, mount_point="/", fstype="ext4", device="/dev/sda1")
    return StorageReport(T0, "overlay2", ROOT, fs)


def disk_findings(host_percent, storage_percent=None):
    """One pass's findings: the host's disk drift, plus the storage worker's when it
    measured the root dir's filesystem at ``storage_percent``."""
    drifts = detect_drift(builders.desired(), host_world(host_percent), {}, {}, POLICY, now=T0)
    if storage_percent is not None:
        sd = storage_drift(storage_report(storage_percent), POLICY)
        drifts += [sd] if sd is not None else []
    return assess(merge_disk_drifts(drifts), POLICY)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def test_disk_warn_to_critical_escalates_once_then_reminds_at_the_p1_cadence(book):
    warn, crit = disk_findings(75.0), disk_findings(85.0)
    assert [str(x.priority) for x in warn + crit] == ["P3", "P1"]
    assert book.update(warn, now=at(0), policy=POLICY) == []
    (opened,) = book.update(warn, now=at(60), policy=POLICY)
    assert opened.kind == "opened" and opened.incident.priority == "P3"
    (t,) = book.update(crit, now=at(120), policy=POLICY)
    assert t.kind == "escalated" and t.incident.id == opened.incident.id
    assert (t.previous_priority, t.incident.priority) == ("P3", "P1")
    assert "85.0% full" in t.incident.reason and t.incident.details["level"] == "critical"
    # the next passes: no second escalation, and reminders count from the escalation, at P1
    assert book.update(crit, now=at(180), policy=POLICY) == []
    assert book.update(crit, now=at(120 + 4 * 3600 - 1), policy=POLICY) == []
    (r,) = book.update(crit, now=at(120 + 4 * 3600), policy=POLICY)
    assert r.kind == "reminder" and r.incident.id == opened.incident.id
    assert len(book.list(include_resolved=True)) == 1


def test_deescalation_is_quiet_and_a_return_to_an_announced_priority_is_not_announced_again(book):
    warn, crit = disk_findings(75.0), disk_findings(85.0)
    (opened,) = book.update(crit, now=at(0), policy=POLICY)
    assert opened.incident.priority == "P1"
    # pruned back to warn: quiet, the incident stays open at P3 and is not reminded as P1
    assert book.update(warn, now=at(3600), policy=POLICY) == []
    assert book.get(opened.incident.id).priority == "P3"
    assert book.get(opened.incident.id).peak_priority == "P1"
    assert book.update(warn, now=at(5 * 3600), policy=POLICY) == []
    # critical again: P1 was announced already, so no escalation; the reminder is due (last message at 0)
    (r,) = book.update(crit, now=at(5 * 3600 + 60), policy=POLICY)
    assert r.kind == "reminder" and r.incident.priority == "P1"
    # hovering around the threshold sends nothing more
    for i, fs in enumerate([warn, crit, warn, crit]):
        assert book.update(fs, now=at(5 * 3600 + 120 + i), policy=POLICY) == []
    assert len(book.list(include_resolved=True)) == 1


def test_escalation_of_an_acknowledged_incident_is_announced_and_clears_the_ack(book):
    warn, crit = disk_findings(75.0), disk_findings(85.0)
    book.update(warn, now=at(0), policy=POLICY)
    (opened,) = book.update(warn, now=at(60), policy=POLICY)
    book.ack(opened.incident.id, at(90))
    (t,) = book.update(crit, now=at(120), policy=POLICY)
    assert t.kind == "escalated" and t.incident.state == "open" and t.incident.acknowledged_at is None


def test_disk_to_storage_switch_keeps_one_incident_and_escalates_it(book):
    (opened,) = [x for x in (book.update(disk_findings(75.0), now=at(s), policy=POLICY) for s in (0, 60)) if x][0]
    assert (opened.incident.subject, opened.incident.priority) == ("host:disk:/", "P3")
    # The storage worker measured the filesystem above critical before the host's own
    # sample did: its host:storage:/var/lib/docker drift supersedes the host's.
    switch = disk_findings(79.0, storage_percent=81.0)
    assert [(x.subject, str(x.priority)) for x in switch] == [(f"host:storage:{ROOT}", "P1")]
    (t,) = book.update(switch, now=at(120), policy=POLICY)
    assert t.kind == "escalated" and t.incident.id == opened.incident.id
    assert t.incident.reason.startswith(f"Docker storage: {ROOT} 81.0% full")
    assert book.update(disk_findings(85.0, storage_percent=85.0), now=at(180), policy=POLICY) == []
    # pruned: the storage drift is gone, the host still says warn: the same incident, quietly P3
    assert book.update(disk_findings(75.0), now=at(240), policy=POLICY) == []
    assert [(i.id, i.priority) for i in book.list()] == [(opened.incident.id, "P3")]
    (r,) = book.update([], now=at(300), policy=POLICY)
    assert r.kind == "resolved" and r.incident.id == opened.incident.id
    assert len(book.list(include_resolved=True)) == 1


def test_critical_disk_stays_one_p1_incident_when_the_storage_worker_takes_over(book):
    (opened,) = book.update(disk_findings(85.0), now=at(0), policy=POLICY)
    assert (opened.incident.subject, opened.incident.priority) == ("host:disk:/", "P1")
    for s in (60, 120):  # neither resolved nor opened again, nor escalated
        assert book.update(disk_findings(85.0, storage_percent=85.0), now=at(s), policy=POLICY) == []
    assert [(i.id, i.priority) for i in book.list()] == [(opened.incident.id, "P1")]


def test_a_flapping_incident_that_comes_back_worse_is_reopened_and_escalated(book):
    book.update(disk_findings(75.0), now=at(0), policy=POLICY)
    (opened,) = book.update(disk_findings(75.0), now=at(60), policy=POLICY)
    assert [x.kind for x in book.update([], now=at(120), policy=POLICY)] == ["resolved"]
    t = book.update(disk_findings(85.0), now=at(180), policy=POLICY)  # within the flap window
    assert [(x.kind, x.incident.id) for x in t] == [("reopened", opened.incident.id),
                                                    ("escalated", opened.incident.id)]
    assert t[1].previous_priority == "P3" and t[1].incident.priority == "P1"


def test_pipeline_records_incident_escalated_and_the_notifier_queues_it(tmp_path):
    from dockwarden.config_notify import Channel, Notify
    from dockwarden.pipeline import Reconciler
    from dockwarden.sinks.events import EventLog, read_jsonl
    from dockwarden.sinks.notify import Notifier, Outbox
    from dockwarden.store import Store

    db = tmp_path / "dockwarden.db"
    store, book, outbox = Store(db), IncidentBook(db, "local"), Outbox(db)
    policy = Policy(notify=Notify(channel=[Channel(name="pager", url="json://127.0.0.1:1/x", min_priority="P2")]))
    events = EventLog(tmp_path / "events.jsonl", store)
    events.subscribers.append(Notifier(outbox, lambda: policy).on_event)
    rec = Reconciler(store=store, events=events, executor=None, policy=policy, desired=builders.desired(),
                     mode=Mode.AUTO, incidents=book)
    try:
        for s, percent in ((0, 75.0), (60, 75.0), (120, 85.0), (180, 85.0)):
            rec.run_pass(host_world(percent), now=at(s))
        incident_events = [e for e in read_jsonl(tmp_path / "events.jsonl") if e["type"].startswith("incident_")]
        assert [(e["type"], e["priority"]) for e in incident_events] == [("incident_opened", "P3"),
                                                                        ("incident_escalated", "P1")]
        esc = incident_events[1]
        assert esc["service"] == "host:disk:/" and esc["details"]["previous_priority"] == "P3"
        assert esc["reason"].startswith("incident #1 escalated P3 -> P1: disk / 85.0% full")
        # the P2 channel never heard of the P3 opening, and gets the escalation
        assert [(m["event_type"], m["priority"]) for m in outbox.messages()] == [("incident_escalated", "P1")]
        assert "incident escalated" in outbox.messages()[0]["title"]
    finally:
        outbox.close()
        book.close()
        store.close()


def test_no_incident_for_a_service_whose_operator_stop_is_under_way(tmp_path):
    """A pass that sees a container exited between its `kill` and its `die` events (the
    operator's `docker stop` of a SIGTERM-deaf process: SIGKILL after the timeout) opens
    no incident for it, so no message; the same exit with no stop under way does."""
    from dockwarden.pipeline import Reconciler
    from dockwarden.sinks.events import EventLog, read_jsonl
    from dockwarden.store import Store

    db = tmp_path / "dockwarden.db"
    store, book = Store(db), IncidentBook(db, "local")
    events = EventLog(tmp_path / "events.jsonl", store)
    desired = builders.desired(builders.spec("web"), builders.spec("api"))
    rec = Reconciler(store=store, events=events, executor=None, policy=POLICY, desired=desired,
                     mode=Mode.OBSERVE, incidents=book)
    try:
        w = builders.world(builders.container("web", "exited", exit_code=137),
                           builders.container("api", "exited", exit_code=137))
        rec.run_pass(w, now=at(0), held={"web"})
        opened = [e["service"] for e in read_jsonl(tmp_path / "events.jsonl") if e["type"] == "incident_opened"]
        assert opened == ["api"]
    finally:
        book.close()
        store.close()
