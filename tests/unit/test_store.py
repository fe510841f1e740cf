from datetime import datetime, timedelta, timezone

from dockwarden.model import (ActionKind, ActionRecord, CircuitState, DriftKind, Event, EventType, GuardRecord,
                              Intent, IntentRecord, IntentSource, Outcome)
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


def _rec(uid, action=ActionKind.START, *, service="web", cid="c1", at=T0, deadline_s=60.0, drift=DriftKind.STOPPED):
    return ActionRecord(uid=uid, service=service, container="web-1", container_id=cid, action=action, drift=drift,
                        started_at=at, deadline_at=at + timedelta(seconds=deadline_s), pid=1)


def test_actions_pending_judged_and_stats(tmp_path):
    s = Store(tmp_path / "db")
    s.begin_action(_rec("a1"))
    p = s.pending_actions()["web"]
    assert p.id == "a1" and not p.finished and p.container_id == "c1"
    s.finish_action("a1", Outcome(ActionKind.START, "web", "web-1", ok=True, result="started"), T0)
    assert s.pending_actions()["web"].finished
    s.judge_action("a1", "failed", T0)
    s.begin_action(_rec("a2"))
    s.finish_action("a2", Outcome(ActionKind.START, "web", "web-1", ok=False, error="boom", permanent=True), T0)
    assert "web" not in s.pending_actions()  # a failed call is judged at once
    n, last = s.action_stats()["web"]
    assert n == 2 and last.startswith("permanent: boom")
    s.begin_action(_rec("a3", drift=None))
    s.finish_action("a3", Outcome(ActionKind.START, "web", "web-1", ok=True, result="started"), T0)
    s.judge_action("a3", "succeeded", T0)
    assert s.action_stats()["web"] == (0, None)


def test_a_newer_action_supersedes_an_older_pending_one(tmp_path):
    s = Store(tmp_path / "db")
    s.begin_action(_rec("old"))
    s.begin_action(_rec("new", at=T0 + timedelta(seconds=5)))
    assert s.pending_actions()["web"].id == "new"
    assert {r["uid"]: r["verdict"] for r in s.last_actions()} == {"old": "superseded", "new": "pending"}
    assert "web" not in s.action_stats()  # superseded counts neither way


def test_own_action_window_is_bounded_by_finish_and_deadline(tmp_path):
    """An unfinished action explains events only until its deadline; a finished
    one only until its finish (+ slack): one interrupted action cannot blind the
    daemon to every later operator stop (issue 8, finding 2)."""
    s = Store(tmp_path / "db")
    kinds = (ActionKind.STOP,)
    s.begin_action(_rec("st", ActionKind.STOP, deadline_s=40))
    assert s.own_action("web", "c1", T0 + timedelta(seconds=10), 2, kinds) == "st"  # in flight
    assert s.own_action("web", "c1", T0 + timedelta(seconds=10), 2, (ActionKind.START,)) is None  # other kind
    assert s.own_action("web", "c2", T0 + timedelta(seconds=10), 2, kinds) is None  # other container
    assert s.own_action("other", "c1", T0 + timedelta(seconds=10), 2, kinds) is None  # other service
    assert s.own_action("web", "c1", T0 + timedelta(seconds=45), 2, kinds) is None  # past its deadline
    assert s.own_action("web", "c1", T0 - timedelta(seconds=5), 2, kinds) is None  # before it began
    assert s.interrupt_action("st", T0 + timedelta(seconds=12), "interrupted")
    assert not s.interrupt_action("st", T0 + timedelta(seconds=13), "again")  # closed once
    assert s.own_action("web", "c1", T0 + timedelta(seconds=13), 2, kinds) == "st"  # within the slack
    assert s.own_action("web", "c1", T0 + timedelta(seconds=20), 2, kinds) is None  # after it was closed
    assert s.last_actions()[0]["verdict"] == "interrupted"
    assert s.unfinished_actions() == []


def test_creating_actions_explain_events_of_new_containers(tmp_path):
    s = Store(tmp_path / "db")
    s.begin_action(_rec("rc", ActionKind.RECREATE))
    assert s.own_action("web", "new-id", T0 + timedelta(seconds=1), 2, (ActionKind.RECREATE,)) == "rc"


def test_observed_stops_round_trip(tmp_path):
    s = Store(tmp_path / "db")
    prev = IntentRecord("web", Intent.STOPPED, IntentSource.CLI, T0, "dockwarden stop")
    s.put_observed_stop("web", "web-1", "c1", T0, "die", prev)
    s.put_observed_stop("db", "db-1", "c2", T0 + timedelta(seconds=100), "stop", None)
    [old, new] = s.observed_stops()
    assert old["service"] == "web" and old["previous"].source is IntentSource.CLI and new["previous"] is None
    assert s.forget_observed_stops_before(T0 + timedelta(seconds=50)) == 1
    assert [x["service"] for x in s.observed_stops()] == ["db"]


def test_migration_from_version_1_keeps_actions_and_closes_unfinished_ones(tmp_path):
    import sqlite3

    from dockwarden.store import _MIGRATIONS

    db = sqlite3.connect(tmp_path / "db", isolation_level=None)
    for stmt in _MIGRATIONS[1]:
        db.execute(stmt)
    db.execute("INSERT INTO actions (service, container, action, started_at, finished_at, verdict) "
               "VALUES ('web', 'web', 'start', '2026-11-21T10:00:00.000Z', '2026-11-21T10:00:01.000Z', 'succeeded')")
    db.execute("INSERT INTO actions (service, container, action, started_at) "
               "VALUES ('web', 'web', 'stop', '2026-11-21T10:01:00.000Z')")
    db.close()
    s = Store(tmp_path / "db")
    rows = {r["action"]: r for r in s.last_actions()}
    assert rows["start"]["verdict"] == "succeeded" and rows["start"]["uid"] == "legacy-1"
    assert rows["stop"]["verdict"] == "interrupted" and rows["stop"]["finished_at"] is not None
    assert s.unfinished_actions() == [] and s.pending_actions() == {}


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
    import sqlite3

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
    # a failing migration leaves the version where it was, and its own error reaches the caller
    with pytest.raises(sqlite3.OperationalError, match="syntax error"):
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
    for i in range(5):
        s.begin_action(_rec(f"a{i}", drift=None))
        s.finish_action(f"a{i}", Outcome(ActionKind.START, "web", "web-1", ok=False, error="boom"), T0)
    assert s.action_stats()["web"][0] == 5
    assert s.action_stats(window=3)["web"][0] == 3


def test_rows_are_keyed_by_node(tmp_path):
    """issue 11: one database, several nodes; a node sees only its own rows."""
    a, b = Store(tmp_path / "db", "a"), Store(tmp_path / "db", "b")
    a.set_intent("web", Intent.STOPPED, IntentSource.CLI, T0)
    b.set_intent("web", Intent.RUNNING, IntentSource.CLI, T0)
    a.put_guard(GuardRecord(service="web", attempts=3))
    a.set_checkpoint("engine", "lost")
    a.begin_action(_rec("x1"))
    assert a.intents()["web"].intent is Intent.STOPPED and b.intents()["web"].intent is Intent.RUNNING
    assert a.guard("web").attempts == 3 and b.guard("web").attempts == 0
    assert a.checkpoint("engine") == "lost" and b.checkpoint("engine") is None
    assert "web" in a.pending_actions() and b.pending_actions() == {}
    assert b.own_action("web", "c1", T0, 2, (ActionKind.START,)) is None
    b.begin_action(_rec("y1"))  # supersedes only b's pending action
    assert a.pending_actions()["web"].id == "x1"


def test_rows_from_before_nodes_are_claimed_by_their_node(tmp_path):
    old = Store(tmp_path / "db")  # rows without a node, as a single-node dockwarden wrote them
    old.set_intent("web", Intent.STOPPED, IntentSource.OBSERVED, T0)
    old.insert_event(Event(type=EventType.DAEMON_STARTED, ts=T0, node="box1"))
    old.close()
    assert Store(tmp_path / "db", "box2").intents() == {}  # not box2's: the events name box1
    assert Store(tmp_path / "db", "box1").intents()["web"].intent is Intent.STOPPED


def test_opening_another_store_keeps_this_process_locks(tmp_path):
    """Closing any descriptor of a database file drops every POSIX lock the process
    holds on it (sqlite.org, How To Corrupt An SQLite Database File, 2.2). A store
    opened while another connection of the process is open must not drop its
    lock: else another process closing its own connection believes it is the last
    one, checkpoints and deletes the WAL under the first (an index was corrupted
    here this way: two rows, one primary key)."""
    import subprocess
    import sys

    from dockwarden.db import connect_db

    a = Store(tmp_path / "db", "n")
    a.set_checkpoint("k", "v")  # the WAL is in use
    connect_db(tmp_path / "db").close()  # what opening another store does first
    r = subprocess.run([sys.executable, "-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
                        "c.execute('PRAGMA journal_mode=WAL'); c.execute('SELECT count(*) FROM checkpoints'); "
                        "c.close()", str(tmp_path / "db")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "db-wal").exists(), "another process took this one's connection for gone and removed the WAL"
    a.set_checkpoint("k2", "v2")
    assert a._q("PRAGMA integrity_check")[0][0] == "ok"
