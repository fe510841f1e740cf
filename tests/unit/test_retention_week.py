"""A simulated week of a crash-looping service stays within the retention bounds.

The real Store, EventLog, IncidentBook, Outbox and Reconciler run on an injected
clock (no sleeping, no Docker): every ``STEP`` of simulated time the service's
container is seen exited, the Reconciler starts it through a stub executor, and
the next pass sees it running again. Every notification is queued and marked
delivered. Retention runs every simulated hour with small bounds. The database's
row counts and the events files' size stay under the bounds for the whole week,
and the newest records are still there at the end. Flap damping is off, so each
crash opens and resolves one incident: the worst case for the incidents table.

The step is coarser than a real 30 s crash loop (a pass costs several ms of
SQLite; a week at 30 s would be 40 000 passes), but the week is a whole week.
"""

from __future__ import annotations

from datetime import timedelta

from builders import NOW, container, host

from dockwarden.config import Backoff, Policy
from dockwarden.config_notify import Channel, Incidents, Notify
from dockwarden.config_retention import RetentionPolicy
from dockwarden.incidents import IncidentBook
from dockwarden.actions import ActionProtocol
from dockwarden.model import ActionBy, ActionRecord
from dockwarden.model import (ActionKind, DesiredState, DriftKind, Event, Intent, IntentSource, Mode, Outcome,
                              ServiceSpec, WorldState, parse_time, rfc3339)
from dockwarden.pipeline import Reconciler
from dockwarden.retention import apply_retention, tracked_names
from dockwarden.sinks.events import EventLog, event_files, read_events
from dockwarden.sinks.notify import Outbox, render, wants
from dockwarden.store import Store

STEP = timedelta(minutes=20)  # one crash (and one start) per step
WEEK = timedelta(days=7)
HOUR = timedelta(hours=1)

BOUNDS = RetentionPolicy(
    events_max_age_s=86400, events_max_rows=600,  # a day is ~1000 events: the cap binds
    actions_max_age_s=2 * 86400, actions_max_rows=100,  # two days are 144 actions: the cap binds
    incidents_max_age_s=86400, outbox_max_age_s=6 * 3600, untracked_max_age_s=2 * 86400,
    events_jsonl_max_bytes=64 * 1024, events_jsonl_rotated_files=3,
)
POLICY = Policy(
    retention=BOUNDS,
    backoff=Backoff(initial_delay_s=1, max_delay_s=60),
    incidents=Incidents(flap_window_s=0),
    notify=Notify(channel=[Channel(name="ops", url="json://127.0.0.1:9/hook", min_priority="P3")]),
)
CYCLES_PER_HOUR = int(HOUR / STEP)
#: Tables measured, and the SQL counting the rows a bound applies to.
COUNTED = {
    "events": "SELECT COUNT(*) FROM events",
    "actions": "SELECT COUNT(*) FROM actions WHERE verdict != 'pending' AND finished_at IS NOT NULL",
    "incidents": "SELECT COUNT(*) FROM incidents",
    "outbox": "SELECT COUNT(*) FROM outbox",
}


class StubExecutor:
    """Carries out nothing; every action "succeeds" (the next observation judges it)."""

    def __init__(self):
        self.runs = 0

    def run(self, action: ActionKind, *, service: str, container: str, spec=None, compose=None, **_kw) -> Outcome:
        self.runs += 1
        return Outcome(action, service, container, ok=True, result="started")


def world_at(t, *, running: bool, started, finished) -> WorldState:
    c = container("web", "running" if running else "exited", started_at=started,
                  finished_at=None if running else finished, exit_code=None if running else 1)
    return WorldState(node="local", observed_at=t, host=host(), containers=(c,), engine_ok=True)


def count(db, sql: str, *params) -> int:
    with db.tx() as conn:
        return conn.execute(sql, params).fetchone()[0]


def test_a_week_of_crash_loops_stays_within_the_retention_bounds(tmp_path):
    db_path = tmp_path / "dockwarden.db"
    store = Store(db_path)
    log = EventLog(tmp_path / "events.jsonl", store, max_bytes=BOUNDS.events_jsonl_max_bytes,
                   rotated_files=BOUNDS.events_jsonl_rotated_files)
    book = IncidentBook(db_path, "local")
    outbox = Outbox(db_path)

    def queue(ev: Event) -> None:  # the Notifier, on the simulated clock
        for ch in POLICY.notify.channel:
            if wants(ch, ev):
                title, body = render(ev)
                outbox.enqueue(ch.name, ev, title, body, ev.ts)

    log.subscribers.append(queue)
    desired = DesiredState(node="local", services={"web": ServiceSpec(name="web")})
    executor = StubExecutor()
    rec = Reconciler(store=store, events=log, executor=executor, policy=POLICY, desired=desired, mode=Mode.AUTO,
                     incidents=book, protocol=ActionProtocol(store, log.send, "local", by=ActionBy.DAEMON))

    t0 = NOW
    # Rows that must survive: an action whose API call never returned (judged, never
    # finished), and the intent of a container the operator stopped and removed
    # ("gone means gone": kept for untracked_max_age_s after it was recorded).
    stuck = "a-stuck"
    store.begin_action(ActionRecord(uid=stuck, service="stuck", container="stuck", action=ActionKind.START,
                                    drift=DriftKind.STOPPED, started_at=t0 - timedelta(days=3),
                                    deadline_at=t0 + WEEK * 2))
    store.set_intent("gone", Intent.STOPPED, IntentSource.OBSERVED, t0)
    store.put_spec("gone", "gone", {"image": "gone:1"}, t0)

    t = t0
    started = t0 - HOUR
    next_retention = t0 + HOUR
    runs = 0
    max_files_bytes = 0
    inflow = dict.fromkeys(COUNTED, 0)  # the most rows one crash cycle added, per table
    while t < t0 + WEEK:
        before = {name: count(store, sql) for name, sql in COUNTED.items()}
        # The container crashed: a pass sees it exited and starts it.
        w = world_at(t, running=False, started=started, finished=t - timedelta(seconds=1))
        result = rec.run_pass(w, now=t)
        assert [d.recommendation.action for d, _ in result.executed] == [ActionKind.START], t
        # ... and the next pass sees it running again (the start is judged a success).
        started = t + timedelta(seconds=2)
        rec.run_pass(world_at(t + timedelta(seconds=5), running=True, started=started, finished=None),
                     now=t + timedelta(seconds=5))
        for msg in outbox.due(t + timedelta(seconds=5)):  # the delivery worker, on the simulated clock
            outbox.mark(msg["id"], state="delivered", now=t + timedelta(seconds=6), attempts=1)
        for name, sql in COUNTED.items():
            inflow[name] = max(inflow[name], count(store, sql) - before[name])

        if t >= next_retention:
            counts = apply_retention(store, BOUNDS, now=t, keep=tracked_names(desired, w), events_path=log.path)
            assert counts.errors == {}
            runs += 1
            next_retention += HOUR
            _assert_within_bounds(store, t, inflow)
            intents = store.intents()
            if t - t0 < timedelta(seconds=BOUNDS.untracked_max_age_s):
                assert "gone" in intents and "gone" in store.specs(), t
            elif t - t0 > timedelta(seconds=BOUNDS.untracked_max_age_s) + HOUR:
                assert "gone" not in intents and "gone" not in store.specs(), t
        # Between runs a bound may be exceeded by one hour's growth, never more.
        _assert_within_bounds(store, t, inflow, slack=True)
        sizes = [f.stat().st_size for f in event_files(tmp_path)]
        assert len(sizes) <= BOUNDS.events_jsonl_rotated_files + 1
        assert max(sizes) <= BOUNDS.events_jsonl_max_bytes
        max_files_bytes = max(max_files_bytes, sum(sizes))
        t += STEP

    cycles = int(WEEK / STEP)
    assert executor.runs == cycles and runs >= int(WEEK / HOUR) - 1
    assert log.failures == 0 and log.rotation_failures == 0
    # The week wrote far more than the bounds hold, so retention did the bounding.
    assert store.events(limit=1)[0]["id"] > 5 * BOUNDS.events_max_rows
    assert max_files_bytes > 3 * BOUNDS.events_jsonl_max_bytes
    # The newest records are all still there.
    last_file_event = read_events(tmp_path, limit=1)[0]
    last_db_event = store.events(limit=1)[0]
    assert (last_db_event["ts"], last_db_event["type"], last_db_event["reason"]) == (
        last_file_event["ts"], last_file_event["type"], last_file_event["reason"])
    assert parse_time(last_db_event["ts"]) >= t - STEP
    newest_action = store.last_actions(1)[0]
    assert newest_action["service"] == "web" and parse_time(newest_action["started_at"]) >= t - STEP
    assert {a["uid"] for a in store.last_actions(10_000)} >= {stuck}  # never finished: kept all week
    resolved = book.list(include_resolved=True, limit=1)[0]
    assert resolved.resolved_at is not None and resolved.resolved_at >= t - STEP
    assert parse_time(outbox.messages(limit=1)[0]["created_at"]) >= t - STEP
    for closeable in (outbox, book, store):
        closeable.close()


def _assert_within_bounds(store: Store, now, inflow: dict[str, int], *, slack: bool = False) -> None:
    """Row counts and ages within BOUNDS; with ``slack``, plus the growth of the
    hour since the last retention run (``inflow``: the most rows one cycle adds)."""
    extra = {name: CYCLES_PER_HOUR * n if slack else 0 for name, n in inflow.items()}
    counts = {name: count(store, sql) for name, sql in COUNTED.items()}
    assert counts["events"] <= BOUNDS.events_max_rows + extra["events"], (now, counts)
    assert counts["actions"] <= BOUNDS.actions_max_rows + extra["actions"], (now, counts)
    # No row caps here: incidents and messages are bounded by their age, so at most
    # the cycles within the age window (and the hour since the last run) are kept.
    for name, age_s in (("incidents", BOUNDS.incidents_max_age_s), ("outbox", BOUNDS.outbox_max_age_s)):
        window_cycles = int(age_s / STEP.total_seconds()) + 1
        assert counts[name] <= window_cycles * inflow[name] + extra[name], (name, now, counts)
    for sql in ("SELECT COUNT(*) FROM specs", "SELECT COUNT(*) FROM guards", "SELECT COUNT(*) FROM intents",
                "SELECT COUNT(*) FROM drifts", "SELECT COUNT(*) FROM checkpoints"):
        assert count(store, sql) <= 3, sql
    if not slack:  # right after a run, nothing older than its age limit is left
        ages = {
            "events": ("SELECT COUNT(*) FROM events WHERE ts < ?", BOUNDS.events_max_age_s),
            "actions": ("SELECT COUNT(*) FROM actions WHERE started_at < ? AND verdict != 'pending' "
                        "AND finished_at IS NOT NULL", BOUNDS.actions_max_age_s),
            "incidents": ("SELECT COUNT(*) FROM incidents WHERE state = 'resolved' AND resolved_at < ?",
                          BOUNDS.incidents_max_age_s),
            "outbox": ("SELECT COUNT(*) FROM outbox WHERE state != 'pending' AND delivered_at < ?",
                       BOUNDS.outbox_max_age_s),
        }
        for name, (sql, age_s) in ages.items():
            assert count(store, sql, rfc3339(now - timedelta(seconds=age_s))) == 0, (name, now)
