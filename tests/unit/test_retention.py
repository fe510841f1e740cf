"""Retention (issue 8): each pruning function deletes what it must and keeps what
it must (pending or unfinished actions, tracked services' rows, recent rows), and
row caps keep the newest rows. The clock is injected (``NOW``); nothing sleeps.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import NOW, container, desired, spec, world

import dockwarden.retention as retention
from dockwarden.config import ConfigError, Policy, Settings, load_policy
from dockwarden.config_retention import RetentionPolicy
from dockwarden.incidents import IncidentBook
from dockwarden.actions import new_action_id
from dockwarden.model import ActionRecord
from dockwarden.model import (ActionKind, CircuitState, DriftKind, Event, EventType, GuardRecord, Intent,
                              IntentSource, Outcome, rfc3339)
from dockwarden.retention import (RetentionWorker, apply_retention, prune_actions, prune_events, prune_incidents,
                                  prune_outbox, prune_untracked, tracked_names)
from dockwarden.sinks.notify import Outbox
from dockwarden.store import Store
from dockwarden.worker import WorkerContext

DAY = 86400.0


def days_ago(n: float):
    return NOW - timedelta(days=n)


def event(ts, reason: str = "", service: str | None = "web") -> Event:
    return Event(type=EventType.DRIFT_DETECTED, ts=ts, node="local", service=service, reason=reason)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "dockwarden.db")
    yield s
    s.close()


# --------------------------------------------------------------------------- events


def test_events_older_than_the_age_go_and_recent_ones_stay(store):
    for d in (40, 31, 29, 1, 0):
        store.insert_event(event(days_ago(d), reason=f"{d}d"))
    n = prune_events(store, now=NOW, max_age_s=30 * DAY, max_rows=1000)
    assert n == 2
    assert [e["reason"] for e in store.events()] == ["29d", "1d", "0d"]


def test_events_row_cap_keeps_the_newest(store):
    for i in range(250):
        store.insert_event(event(NOW - timedelta(seconds=250 - i), reason=str(i)))
    n = prune_events(store, now=NOW, max_age_s=30 * DAY, max_rows=100)
    assert n == 150
    reasons = [e["reason"] for e in store.events(limit=1000)]
    assert reasons == [str(i) for i in range(150, 250)]
    assert prune_events(store, now=NOW, max_age_s=30 * DAY, max_rows=100) == 0  # idempotent


def test_deletes_run_in_batches_and_count_every_row(store, monkeypatch):
    monkeypatch.setattr(retention, "BATCH_ROWS", 7)
    for i in range(50):
        store.insert_event(event(days_ago(60), reason=str(i)))
    for i in range(30):
        store.insert_event(event(NOW, reason=f"new{i}"))
    assert prune_events(store, now=NOW, max_age_s=30 * DAY, max_rows=20) == 60
    assert [e["reason"] for e in store.events()] == [f"new{i}" for i in range(10, 30)]


# --------------------------------------------------------------------------- actions


def _action(store: Store, started, *, verdict: str | None, finished: bool = True, service: str = "web") -> str:
    aid = new_action_id()
    store.begin_action(ActionRecord(uid=aid, service=service, container=service, action=ActionKind.START,
                                    drift=DriftKind.STOPPED, started_at=started,
                                    deadline_at=started + timedelta(seconds=90)))
    if finished:
        store.finish_action(aid, Outcome(ActionKind.START, service, service, ok=True, result="started"),
                            started + timedelta(seconds=1))
    if verdict is not None:
        store.judge_action(aid, verdict, started + timedelta(seconds=2))
    return aid


def test_old_judged_actions_go_pending_and_unfinished_ones_stay(store):
    old_ok = _action(store, days_ago(40), verdict="succeeded")
    old_failed = _action(store, days_ago(35), verdict="failed")
    # (each on its own service: a newer action supersedes its service's pending one)
    old_pending = _action(store, days_ago(40), verdict=None, service="p1")  # finished, never judged
    old_running = _action(store, days_ago(40), verdict=None, finished=False, service="p2")
    # judged (e.g. timed out) while the API call never returned: finished_at is NULL
    old_judged_unfinished = _action(store, days_ago(40), verdict="failed", finished=False, service="p3")
    recent = _action(store, days_ago(1), verdict="succeeded")
    n = prune_actions(store, now=NOW, max_age_s=30 * DAY, max_rows=1000)
    left = {a["uid"] for a in store.last_actions(100)}
    assert n == 2
    assert old_ok not in left and old_failed not in left
    assert {old_pending, old_running, old_judged_unfinished, recent} == left


def test_actions_row_cap_counts_and_deletes_only_judged_ones(store):
    pending = _action(store, days_ago(2), verdict=None, service="p1")  # the oldest row of all
    judged = [_action(store, NOW - timedelta(minutes=300 - i), verdict="failed") for i in range(150)]
    running = _action(store, NOW, verdict=None, finished=False, service="p2")
    assert prune_actions(store, now=NOW, max_age_s=30 * DAY, max_rows=100) == 50
    left = {a["uid"] for a in store.last_actions(1000)}
    assert left == {pending, running, *judged[50:]}


# --------------------------------------------------------------------------- incidents, outbox


def test_resolved_incidents_go_by_resolution_age_open_and_acknowledged_stay(tmp_path):
    book = IncidentBook(tmp_path / "dockwarden.db", "local")
    rows = [  # (state, opened days ago, resolved days ago)
        ("resolved", 200, 100), ("resolved", 200, 80), ("open", 200, None), ("acknowledged", 150, None),
    ]
    with book.tx() as conn:
        for i, (state, opened, resolved) in enumerate(rows):
            conn.execute(
                "INSERT INTO incidents (node, subject, kind, priority, state, opened_at, resolved_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                ("local", f"svc{i}", "stopped", "P2", state, rfc3339(days_ago(opened)),
                 rfc3339(days_ago(resolved)) if resolved is not None else None))
    assert prune_incidents(book, now=NOW, max_age_s=90 * DAY) == 1
    left = sorted((i.subject, i.state) for i in book.list(include_resolved=True))
    assert left == [("svc1", "resolved"), ("svc2", "open"), ("svc3", "acknowledged")]
    book.close()


def test_finished_notifications_go_pending_ones_stay(tmp_path):
    outbox = Outbox(tmp_path / "dockwarden.db")
    ev = event(days_ago(30))
    ids = {}
    for name, created, state, done in (
        ("delivered_old", 30, "delivered", 20), ("delivered_new", 30, "delivered", 10),
        ("dropped_old", 30, "dropped", 29), ("pending_old", 30, "pending", None),
    ):
        ids[name] = outbox.enqueue("ops", ev, name, "body", days_ago(created))
        if state != "pending":
            outbox.mark(ids[name], state=state, now=days_ago(done), attempts=3,
                        next_attempt=days_ago(done) if state == "dropped" else None)
    assert prune_outbox(outbox, now=NOW, max_age_s=14 * DAY) == 2
    assert sorted(m["title"] for m in outbox.messages()) == ["delivered_new", "pending_old"]
    outbox.close()


def test_tables_of_features_not_opened_yet_are_skipped(store):
    assert prune_incidents(store, now=NOW, max_age_s=DAY) == 0
    assert prune_outbox(store, now=NOW, max_age_s=DAY) == 0


# --------------------------------------------------------------------------- untracked services


def test_untracked_rows_go_only_when_old_and_not_tracked(store):
    old, recent = days_ago(31), days_ago(29)
    # "gone" was stopped by the operator and its container removed 29 days ago: its intent must survive
    store.set_intent("gone-recent", Intent.STOPPED, IntentSource.OBSERVED, recent)
    store.set_intent("gone-old", Intent.STOPPED, IntentSource.OBSERVED, old)
    store.set_intent("tracked", Intent.STOPPED, IntentSource.CLI, days_ago(400))
    for name, seen in (("gone-recent", recent), ("gone-old", old), ("tracked", days_ago(400))):
        store.put_spec(name, name, {"image": f"{name}:1"}, seen)
    store.put_guard(GuardRecord(service="gone-old", attempts=3, last_attempt=old, next_attempt=old))
    store.put_guard(GuardRecord(service="gone-open", circuit=CircuitState.OPEN, circuit_opened_at=old,
                                last_attempt=old, next_attempt=recent))  # one recent time keeps it
    store.put_guard(GuardRecord(service="gone-paused", paused=True))  # the operator's: kept
    store.put_guard(GuardRecord(service="gone-blank"))  # no times at all, not paused: nothing to keep
    store.put_guard(GuardRecord(service="tracked", attempts=9, last_attempt=days_ago(400)))

    counts = prune_untracked(store, now=NOW, max_age_s=30 * DAY, keep={"tracked"})

    assert (counts.specs, counts.intents, counts.guards) == (1, 1, 2)
    assert set(store.intents()) == {"gone-recent", "tracked"}
    assert set(store.specs()) == {"gone-recent", "tracked"}
    assert set(store.guards()) == {"gone-open", "gone-paused", "tracked"}


def test_tracked_names_cover_inventory_labels_and_every_container(store):
    d = desired(spec("web"), spec("db", container="db-1"))
    w = world(container("db-1"), container("adhoc", state="exited"),
              container("labelled", labels={"dockwarden.enable": "true"}))
    assert tracked_names(d, w) == {"web", "db", "db-1", "adhoc", "labelled"}


# --------------------------------------------------------------------------- policy, apply, worker


def test_retention_table_is_validated_with_the_file_and_field_named(tmp_path):
    p = tmp_path / "policy.toml"
    p.write_text("[retention]\nevents_max_rows = 10\n")
    with pytest.raises(ConfigError, match=r"policy.toml: retention.events_max_rows"):
        load_policy(p)
    p.write_text("[retention]\nevents_max_age_s = 86400\nevents_jsonl_rotated_files = 2\n")
    pol = load_policy(p)
    assert pol.retention.events_max_age_s == 86400 and pol.retention.events_jsonl_rotated_files == 2
    assert pol.retention.actions_max_rows == RetentionPolicy().actions_max_rows


def test_apply_retention_runs_every_family_and_skips_untracked_without_keep(store):
    store.insert_event(event(days_ago(40)))
    _action(store, days_ago(40), verdict="succeeded")
    store.set_intent("gone", Intent.STOPPED, IntentSource.OBSERVED, days_ago(40))
    pol = RetentionPolicy()
    counts = apply_retention(store, pol, now=NOW, keep=None)
    assert (counts.events, counts.actions, counts.untracked, counts.errors) == (1, 1, None, {})
    assert "gone" in store.intents()
    counts = apply_retention(store, pol, now=NOW, keep=set())
    assert counts.untracked is not None and counts.untracked.intents == 1
    assert counts.line() == "1 intents"


def test_apply_retention_goes_on_when_one_family_fails(tmp_path):
    outbox = Outbox(tmp_path / "dockwarden.db")  # only the notify tables: events and actions do not exist
    mid = outbox.enqueue("ops", event(days_ago(30)), "t", "b", days_ago(30))
    outbox.mark(mid, state="delivered", now=days_ago(20), attempts=1)
    counts = apply_retention(outbox, RetentionPolicy(), now=NOW, keep=None)
    assert set(counts.errors) == {"events", "actions"}
    assert counts.outbox == 1
    outbox.close()


def _worker(tmp_path, store: Store, world_state, *, inventory=None) -> RetentionWorker:
    w = RetentionWorker(clock=lambda: NOW)
    pol = Policy()
    w.ctx = WorkerContext(settings=Settings.resolve(state_dir=tmp_path, inventory=inventory, node="local"),
                          node="local", policy=lambda: pol, mode=lambda: None, world=lambda: world_state,
                          emit=lambda e: True, wake=lambda: None)
    w.store = store
    return w


def test_worker_prunes_untracked_rows_only_after_a_good_observation(tmp_path, store):
    store.set_intent("gone", Intent.STOPPED, IntentSource.OBSERVED, days_ago(40))
    store.set_intent("still-here", Intent.STOPPED, IntentSource.OBSERVED, days_ago(40))
    store.insert_event(event(days_ago(40)))
    for w_state in (None, world(container("still-here", state="exited"), engine_ok=False)):
        w = _worker(tmp_path, store, w_state)
        w.tick()
        assert w.last is not None and w.last.untracked is None
        assert set(store.intents()) == {"gone", "still-here"}
    assert store.events() == []  # the other families ran all the same
    w = _worker(tmp_path, store, world(container("still-here", state="exited")))
    w.tick()
    assert set(store.intents()) == {"still-here"}  # its (stopped) container still exists


def test_worker_reads_its_cadence_from_the_policy_and_is_started_by_the_daemon(tmp_path, store):
    w = _worker(tmp_path, store, None)
    assert w.interval_s() == 3600.0
    from dockwarden.cli import daemon_workers

    assert any(isinstance(x, RetentionWorker) for x in daemon_workers(Settings.resolve(state_dir=tmp_path)))
