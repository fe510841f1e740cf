"""The check that lets a resync skip the list call (issue 9): the engine's replay of
a window against what the event stream delivered (``observe.plan.stream_complete``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dockwarden.model import EngineEvent
from dockwarden.observe.events import api_time
from dockwarden.observe.plan import VERIFIABLE_EVENTS, event_key, stream_complete

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


def ev(action: str, i: int, cid: str = "c" * 64) -> EngineEvent:
    return EngineEvent(action=action, container_id=cid, name="web", time=T0 + timedelta(microseconds=i))


def test_a_window_the_stream_delivered_whole_is_complete():
    events = [ev("kill", 1), ev("die", 2), ev("start", 3)]
    assert stream_complete(3, events, {event_key(e) for e in events})
    assert stream_complete(0, [], set())  # a quiet window


def test_one_event_the_stream_never_delivered_makes_it_incomplete():
    events = [ev("kill", 1), ev("die", 2), ev("start", 3)]
    seen = {event_key(e) for e in events if e.action != "die"}
    assert not stream_complete(3, events, seen)
    # The same action of the same container a microsecond apart is another event.
    assert not stream_complete(1, [ev("die", 5)], {event_key(ev("die", 4))})
    # ... and another container's die is not this one's.
    assert not stream_complete(1, [ev("die", 2, cid="d" * 64)], {event_key(ev("die", 2))})


def test_healthcheck_execs_are_not_asked_for_but_counted():
    execs = [ev("exec_create: sh -c true", 1), ev("exec_start: sh -c true", 2), ev("exec_die", 3)]
    assert stream_complete(3, execs, set())  # the stream drops them on purpose
    # A window fuller than the engine's buffer can vouch for cannot be vouched for,
    # even when every container event in it was seen.
    assert not stream_complete(VERIFIABLE_EVENTS, execs, set())
    assert stream_complete(VERIFIABLE_EVENTS - 1, execs, set())


def test_api_time_is_exact_to_the_nanosecond():
    # moby reads "seconds.nanoseconds"; a float's "1.5" would be 5 ns, not half a second.
    assert api_time(1_700_000_000_500_000_000) == "1700000000.500000000"
    assert api_time(1_700_000_000_000_000_007) == "1700000000.000000007"
