"""The pool's rules in SQL (pool/db.py), against a real SQLite file, no engine.

Each test exercises one rule the original broke (shared/field-notes.md, seed 004):
busy containers selected, completions not recorded, fresh containers destroyed
as idle, and concurrent selects sharing a container.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dockwarden.pool.db import PoolDB
from dockwarden.pool.errors import PoolNotFound, PoolRefused
from dockwarden.pool.schema import MIGRATIONS

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def db(tmp_path: Path) -> PoolDB:
    d = PoolDB(tmp_path / "dockwarden.db")
    yield d
    d.close()


def add(db: PoolDB, name: str | None = None, *, now: datetime = T0, host: str = "n1", max_n: int = 100,
        status: str = "healthy") -> int:
    c = db.reserve(name=name, prefix="p", image="img", host=host, max_n=max_n, taken=set(), now=now)
    db.set_docker_id(c.id, f"{c.id:064x}", now)
    if status == "healthy":
        db.record_health(c.id, healthy=True, error=None, docker_id=None, vanished=False, now=now)
    return c.id


def pick(db: PoolDB, now: datetime = T0, host: str | None = None) -> str | None:
    got = db.select_and_record(host=host, task_id=None, command=None, now=now)
    return got[0].name if got else None


def test_default_names_fill_the_smallest_free_number_and_skip_taken(db: PoolDB) -> None:
    a = db.reserve(name=None, prefix="w", image="i", host="h", max_n=8, taken={"w-2"}, now=T0)
    b = db.reserve(name=None, prefix="w", image="i", host="h", max_n=8, taken={"w-2"}, now=T0)
    assert (a.name, b.name) == ("w-1", "w-3")
    db.spawn_failed(a.id, "boom", T0)  # a released slot frees its name
    c = db.reserve(name=None, prefix="w", image="i", host="h", max_n=8, taken=set(), now=T0)
    assert c.name == "w-1"


def test_max_is_enforced_and_names_are_unique(db: PoolDB) -> None:
    add(db, "a", max_n=2)
    add(db, "b", max_n=2)
    with pytest.raises(PoolRefused, match="pool is full: 2 of max 2"):
        add(db, "c", max_n=2)
    with pytest.raises(PoolRefused, match="already in the pool"):
        add(db, "a", max_n=9)


def test_round_robin_least_recently_dispatched_first_ties_by_name(db: PoolDB) -> None:
    for n in ("c", "a", "b"):
        add(db, n)
    order = []
    for i in range(6):
        c, d = db.select_and_record(host=None, task_id=f"t{i}", command=None, now=at(i))
        order.append(c.name)
        db.complete(d.id, outcome="ok", exit_code=0, error=None, cooldown_s=300, now=at(i + 0.5))
    assert order == ["a", "b", "c", "a", "b", "c"]


def test_a_busy_container_is_never_selected(db: PoolDB) -> None:
    for n in ("a", "b", "c"):
        add(db, n)
    picks = [pick(db, at(i)) for i in range(3)]
    assert sorted(picks) == ["a", "b", "c"]
    assert pick(db, at(10)) is None  # all three have open dispatches
    c = db.get("b")
    assert c.busy and c.dispatch_count == 1
    db.complete(c.open_dispatch_id, outcome="failed", exit_code=1, error=None, cooldown_s=300, now=at(11))
    assert pick(db, at(12)) == "b"


def test_host_filter(db: PoolDB) -> None:
    add(db, "a", host="n1")
    add(db, "b", host="n2")
    assert pick(db, host="n2") == "b"
    assert pick(db, host="n2") is None
    assert pick(db, host="n3") is None


def test_rate_limited_is_skipped_until_the_cooldown_ends(db: PoolDB) -> None:
    a, _ = add(db, "a"), add(db, "b")
    c, d = db.select_and_record(host=None, task_id=None, command=None, now=at(0))
    assert c.name == "a"
    db.complete(d.id, outcome="rate_limited", exit_code=None, error=None, cooldown_s=60, now=at(1))
    row = db.get("a")
    assert row.status == "rate_limited" and row.rate_limit_until == at(61) and row.rate_limit_count == 1
    # b is busy after this; a is rate-limited: nothing until a's cooldown ends.
    assert pick(db, at(2)) == "b"
    assert pick(db, at(60.9)) is None
    assert pick(db, at(61)) == "a"
    assert db.get("a").status == "healthy" and db.get("a").rate_limit_until is None
    db.set_rate_limit(a, 30, at(100))
    assert db.get("a").status == "rate_limited"
    db.clear_rate_limit(a, at(101))
    assert db.get("a").status == "healthy"


def test_health_returns_expired_rate_limits_to_healthy(db: PoolDB) -> None:
    a = add(db, "a")
    db.set_rate_limit(a, 10, at(0))
    assert db.record_health(a, healthy=True, error=None, docker_id=None, vanished=False, now=at(5)) == \
        ("rate_limited", "rate_limited")
    assert db.record_health(a, healthy=True, error=None, docker_id=None, vanished=False, now=at(10)) == \
        ("rate_limited", "healthy")
    assert db.record_health(a, healthy=False, error="exited", docker_id=None, vanished=False, now=at(11)) == \
        ("healthy", "unhealthy")
    assert db.record_health(a, healthy=None, error=None, docker_id=None, vanished=True, now=at(12))[1] == "failed"


def test_complete_records_and_refuses_twice(db: PoolDB) -> None:
    add(db, "a")
    _, d = db.select_and_record(host=None, task_id="job-7", command='["true"]', now=at(0))
    done = db.complete(d.id, outcome="failed", exit_code=3, error=None, cooldown_s=300, now=at(2))
    assert (done.outcome, done.exit_code, done.completed_at, done.task_id) == ("failed", 3, at(2), "job-7")
    with pytest.raises(PoolRefused, match="already completed"):
        db.complete(d.id, outcome="ok", exit_code=0, error=None, cooldown_s=300, now=at(3))
    assert db.dispatch(d.id).outcome == "failed"  # unchanged
    with pytest.raises(PoolNotFound):
        db.complete(999, outcome="ok", exit_code=0, error=None, cooldown_s=300, now=at(3))


def test_destroy_refuses_busy_unless_forced(db: PoolDB) -> None:
    a = add(db, "a")
    _, d = db.select_and_record(host=None, task_id=None, command=None, now=at(0))
    with pytest.raises(PoolRefused, match="busy with dispatch"):
        db.begin_destroy(a, force=False, reason="x", now=at(1))
    assert db.get("a").status == "healthy"
    assert db.begin_destroy(a, force=True, reason="forced", now=at(1)) == [d.id]
    assert db.dispatch(d.id).outcome == "failed" and db.dispatch(d.id).error == "forced"
    db.finish_destroy(a, at(2))
    with pytest.raises(PoolNotFound, match="not in the pool"):
        db.get("a")
    assert [c.name for c in db.containers("stopped")] == ["a"]


def test_lookup_by_name_id_and_docker_id(db: PoolDB) -> None:
    a = add(db, "alpha")
    assert db.get("alpha").id == a
    assert db.get(str(a)).name == "alpha"
    assert db.get(f"{a:064x}"[:12]).name == "alpha"
    with pytest.raises(PoolNotFound, match="'nope' is not in the pool; pool containers: alpha"):
        db.get("nope")


def test_idle_keeps_min_and_never_takes_busy_or_fresh(db: PoolDB) -> None:
    for n in ("a", "b", "c"):
        add(db, n, now=at(0))
    busy = pick(db, at(1))  # "a": busy from now on
    add(db, "fresh", now=at(1990))  # created within the timeout
    assert busy == "a"
    # Timeout 1800 s, checked at 2000 s: b and c are idle; a is busy; fresh is new.
    idle = db.idle(idle_timeout_s=1800, keep=0, now=at(2000), mark=False)
    assert [c.name for c in idle] == ["b", "c"]
    # Four live containers, keep 3: only one may go (oldest activity, then name).
    assert [c.name for c in db.idle(idle_timeout_s=1800, keep=3, now=at(2000), mark=False)] == ["b"]
    assert db.idle(idle_timeout_s=1800, keep=4, now=at(2000), mark=False) == []
    # A dispatch within the timeout makes a container not idle.
    assert [c.name for c in db.idle(idle_timeout_s=1800, keep=0, now=at(1000), mark=False)] == []
    marked = db.idle(idle_timeout_s=1800, keep=0, now=at(2000), mark=True)
    assert {db.by_id(c.id).status for c in marked} == {"stopping"}
    assert pick(db, at(2001)) == "fresh"  # stopping ones are never selected


def test_stats_in_one_query(db: PoolDB) -> None:
    for n in ("a", "b", "c"):
        add(db, n)
    add(db, "s", status="starting")
    pick(db, at(1))
    db.set_rate_limit(db.get("b").id, 60, at(1))
    st = db.stats(at(2))
    assert (st["live"], st["healthy"], st["starting"], st["rate_limited"], st["busy"], st["available"]) == \
        (4, 2, 1, 1, 1, 1)
    assert (st["dispatches"], st["open_dispatches"]) == (1, 1)


def test_foreign_keys_are_enforced_and_migration_is_recorded(db: PoolDB, tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "dockwarden.db")
    raw.execute("PRAGMA foreign_keys=ON")
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("INSERT INTO container_dispatch_log (container_id, dispatched_at) VALUES (424242, 'x')")
    assert raw.execute("SELECT version FROM schema_migrations WHERE component = 'pool'").fetchone() == (max(MIGRATIONS),)
    raw.close()
    PoolDB(tmp_path / "dockwarden.db").close()  # opening again migrates nothing and fails nothing


def test_unhealthy_since_is_kept_while_unhealthy_and_cleared_after(db: PoolDB) -> None:
    a = add(db, "a")
    db.record_health(a, healthy=False, error="probe", docker_id=None, vanished=False, now=at(1))
    db.record_health(a, healthy=False, error="probe", docker_id=None, vanished=False, now=at(5))
    assert db.get("a").unhealthy_since == at(1)
    db.record_health(a, healthy=True, error=None, docker_id=None, vanished=False, now=at(6))
    assert db.get("a").unhealthy_since is None


def test_twenty_threads_never_share_a_container(tmp_path: Path) -> None:
    path = tmp_path / "dockwarden.db"
    setup = PoolDB(path)
    for i in range(8):
        add(setup, f"w{i}")
    barrier = threading.Barrier(20)
    got: list[str | None] = []
    lock = threading.Lock()

    def one() -> None:
        own = PoolDB(path)  # its own connection: the database, not a Python lock, decides
        barrier.wait()
        name = pick(own, datetime.now(timezone.utc))
        with lock:
            got.append(name)
        own.close()

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [g for g in got if g]
    assert len(winners) == 8 and len(set(winners)) == 8, got
    assert setup.stats(datetime.now(timezone.utc))["open_dispatches"] == 8
    setup.close()


def _select_in_process(path: str, start, queue) -> None:
    db = PoolDB(path)
    start.wait()
    queue.put(pick(db, datetime.now(timezone.utc)))
    db.close()


def test_twenty_processes_never_share_a_container(tmp_path: Path) -> None:
    path = tmp_path / "dockwarden.db"
    setup = PoolDB(path)
    for i in range(8):
        add(setup, f"w{i}")
    ctx = multiprocessing.get_context("spawn")
    start, queue = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_select_in_process, args=(str(path), start, queue)) for _ in range(20)]
    for p in procs:
        p.start()
    start.set()
    got = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    winners = [g for g in got if g]
    assert len(winners) == 8 and len(set(winners)) == 8, got
    setup.close()
