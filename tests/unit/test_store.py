from datetime import datetime, timedelta, timezone

from dockwarden.model import (ActionKind, CircuitState, DriftKind, Event, EventType, GuardRecord, Intent,
                              IntentSource, Outcome)
from dockwarden.store import SCHEMA_VERSION, Store

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc)


def test_schema_is_versioned_and_reopens(tmp_path):
    s = Store(tmp_path / "db.sqlite")
    s.set_intent("web", Intent.STOPPED, IntentSource.CLI, T0, "test")
    s.close()
    s2 = Store(tmp_path / "db.sqlite")
    assert s2._q("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    rec = s2.intents()["web"]
    assert rec.intent == Intent.STOPPED and rec.source == IntentSource.CLI and rec.recorded_at == T0


def test_set_intent_reports_change(tmp_path):
    s = Store(tmp_path / "db")
    assert s.set_intent("a", Intent.STOPPED, IntentSource.OBSERVED, T0)
    assert not s.set_intent("a", Intent.STOPPED, IntentSource.OBSERVED, T0)
    assert s.set_intent("a", Intent.RUNNING, IntentSource.CLI, T0)


def test_guard_round_trip(tmp_path):
    s = Store(tmp_path / "db")
    g = GuardRecord(service="x", attempts=3, attempt_times=(T0, T0 + timedelta(seconds=2)), last_attempt=T0,
                    next_attempt=T0 + timedelta(seconds=4), circuit=CircuitState.OPEN, circuit_opened_at=T0,
                    paused=True, message="budget")
    s.put_guard(g)
    assert s.guard("x") == g
    assert s.guard("unknown") == GuardRecord(service="unknown")


def test_actions_pending_judged_and_own_action_window(tmp_path):
    s = Store(tmp_path / "db")
    a1 = s.begin_action("web", "web-1", ActionKind.START, DriftKind.STOPPED, T0)
    assert s.recent_action_on("web-1", T0 - timedelta(seconds=5), T0 + timedelta(seconds=5), (ActionKind.START,))
    s.finish_action(a1, Outcome(ActionKind.START, "web", "web-1", ok=True, result="started"), T0)
    assert not s.recent_action_on("web-1", T0 - timedelta(seconds=5), T0 + timedelta(seconds=5), (ActionKind.STOP,))
    assert not s.recent_action_on("web-1", T0 + timedelta(seconds=60), T0 + timedelta(seconds=90), (ActionKind.START,))
    assert s.pending_actions()["web"].id == a1
    s.judge_action(a1, "failed", T0)
    a2 = s.begin_action("web", "web-1", ActionKind.START, DriftKind.STOPPED, T0)
    s.finish_action(a2, Outcome(ActionKind.START, "web", "web-1", ok=False, error="boom", permanent=True), T0)
    assert "web" not in s.pending_actions()  # a failed call is judged at once
    n, last = s.action_stats()["web"]
    assert n == 2 and last.startswith("permanent: boom")
    a3 = s.begin_action("web", "web-1", ActionKind.START, None, T0)
    s.finish_action(a3, Outcome(ActionKind.START, "web", "web-1", ok=True, result="started"), T0)
    s.judge_action(a3, "succeeded", T0)
    assert s.action_stats()["web"] == (0, None)


def test_events_query_and_sql_injection_is_inert(tmp_path):
    s = Store(tmp_path / "db")
    for i in range(5):
        s.insert_event(Event(type=EventType.DRIFT_DETECTED, ts=T0 + timedelta(seconds=i), node="n",
                             service="x'; DROP TABLE events; --", reason=str(i)))
    rows = s.events(since=T0 + timedelta(seconds=2))
    assert [r["reason"] for r in rows] == ["2", "3", "4"]
    assert len(s.events(service="x'; DROP TABLE events; --")) == 5
    assert [r["reason"] for r in s.events(limit=2)] == ["3", "4"]
    assert s.events(types=("recovered",)) == []


def test_open_and_resolve_drifts(tmp_path):
    s = Store(tmp_path / "db")
    s.open_drift("web", "stopped", "web", "P2", "exited", T0)
    s.open_drift("web", "stopped", "web", "P2", "exited again", T0 + timedelta(seconds=9))
    d = s.open_drifts()[("web", "stopped")]
    assert d["reason"] == "exited" and d["since"].startswith("2026-11-21T10:00:00")
    s.resolve_drift("web", "stopped")
    assert s.open_drifts() == {}


def test_component_migrations_are_tracked_separately(tmp_path):
    import pytest

    from dockwarden.db import StoreError, apply_migrations, connect_db

    Store(tmp_path / "db").close()
    db = connect_db(tmp_path / "db")
    migs = {1: ("CREATE TABLE feat (a INTEGER)",), 2: ("ALTER TABLE feat ADD COLUMN b TEXT",)}
    assert apply_migrations(db, "feat", migs) == 2
    assert apply_migrations(db, "feat", migs) == 2  # idempotent
    db.execute("INSERT INTO feat (a, b) VALUES (1, 'x')")
    with pytest.raises(StoreError, match="newer"):
        apply_migrations(db, "feat", {1: migs[1]})
    # a failing migration leaves the version where it was
    with pytest.raises(Exception):
        apply_migrations(db, "other", {1: ("CREATE TABLE ok (a)",), 2: ("NOT SQL",)})
    assert db.execute("SELECT version FROM schema_migrations WHERE component='other'").fetchone()[0] == 1


def _open_all(path):
    from dockwarden.incidents import IncidentBook
    from dockwarden.sinks.notify import Outbox

    Store(path).close()
    IncidentBook(path, "n").close()
    Outbox(path).close()
    return True


def test_processes_opening_a_fresh_database_at_once_all_succeed(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(6) as pool:
        assert pool.map(_open_all, [str(tmp_path / "fresh.db")] * 12) == [True] * 12
    s = Store(tmp_path / "fresh.db")
    assert s._q("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    rows = s._q("SELECT component, version FROM schema_migrations ORDER BY component")
    from dockwarden.incidents import _MIGRATIONS as INCIDENT_MIGRATIONS

    assert [(r[0], r[1]) for r in rows] == [("incidents", max(INCIDENT_MIGRATIONS)), ("notify", 1)]


def test_action_stats_reads_a_bounded_window(tmp_path):
    s = Store(tmp_path / "db")
    for _ in range(5):
        a = s.begin_action("web", "web-1", ActionKind.START, None, T0)
        s.finish_action(a, Outcome(ActionKind.START, "web", "web-1", ok=False, error="boom"), T0)
    assert s.action_stats()["web"][0] == 5
    assert s.action_stats(window=3)["web"][0] == 3
