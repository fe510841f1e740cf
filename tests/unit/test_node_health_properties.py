"""Properties of the node state machine (reconcile/node_health.py) over random
sequences of heartbeat results and timer ticks, with an injected clock:

- it agrees with a small reference model (offline exactly when nothing answered
  for ``offline_after_s``, counted from the last answer or, for a node that never
  answered, from its first failure);
- ``node_offline`` is reported once per outage and ``node_online`` only after it;
- detection: heartbeats every ``heartbeat_s`` (a hung one counts as a failure when
  its timeout ends, at the latest by the next heartbeat) report offline by
  ``last answer + offline_after_s + heartbeat_s``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from dockwarden.reconcile.node_health import NodeHealth, NodeState, next_check_s, step

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)

results = st.sampled_from([True, False, None])
steps = st.lists(st.tuples(st.floats(min_value=0.0, max_value=20.0), results), min_size=1, max_size=60)
thresholds = st.floats(min_value=1.0, max_value=60.0)


@settings(max_examples=300, deadline=None)
@given(seq=steps, thr=thresholds)
def test_agrees_with_the_reference_model_and_reports_each_outage_once(seq, thr):
    h = NodeHealth(since=T0)
    model_state, last_ok, fail_since = "online", None, None
    now = T0
    outages = model_outages = 0
    for dt, ok in seq:
        now = now + timedelta(seconds=dt)
        before = h.state
        h, transition = step(h, now=now, offline_after_s=thr, ok=ok, error=None if ok else "x")
        # the reference model
        if ok is True:
            model_state, last_ok, fail_since = "online", now, None
        elif ok is False and model_state == "online":
            model_state, fail_since = "suspect", now
        if model_state == "suspect":
            ref = last_ok or fail_since
            if (now - ref).total_seconds() >= thr:
                model_state = "offline"
                model_outages += 1
        assert h.state.value == model_state, (seq, thr)
        # transitions
        if transition == "offline":
            outages += 1
            assert before is not NodeState.OFFLINE
        if transition == "online":
            assert before is NodeState.OFFLINE and ok is True
        if transition == "recovered":
            assert before is NodeState.SUSPECT and ok is True
        if before is NodeState.OFFLINE and ok is not True:
            assert h.state is NodeState.OFFLINE and transition is None
        # the loop's sleep never overshoots the moment a suspect node turns offline
        wait = next_check_s(h, now=now, offline_after_s=thr)
        if h.state is NodeState.SUSPECT:
            assert wait is not None and 0 <= wait <= thr
            # (+1 us: timedelta rounds to microseconds; the loop re-checks if woken early)
            later, t2 = step(h, now=now + timedelta(seconds=wait, microseconds=1), offline_after_s=thr)
            assert later.state is NodeState.OFFLINE and t2 == "offline"
        else:
            assert wait is None
    assert outages == model_outages


@settings(max_examples=200, deadline=None)
@given(hb=st.floats(min_value=0.2, max_value=10.0), thr=st.floats(min_value=1.0, max_value=60.0),
       answered=st.integers(min_value=0, max_value=20), phase=st.floats(min_value=0.0, max_value=1.0))
def test_detection_within_offline_after_plus_one_heartbeat(hb, thr, answered, phase):
    """The engine answers ``answered`` heartbeats, then none: offline is reported at
    a heartbeat no later than the last answer + offline_after_s + heartbeat_s."""
    h = NodeHealth(since=T0)
    t = T0 + timedelta(seconds=phase * hb)
    last_ok = None
    for _ in range(answered):
        h, _ = step(h, now=t, offline_after_s=thr, ok=True)
        last_ok = t
        t += timedelta(seconds=hb)
    first_fail = t
    reported = None
    for _ in range(int(thr / hb) + 5):
        h, transition = step(h, now=t, offline_after_s=thr, ok=False, error="timeout")
        if transition == "offline":
            reported = t
            break
        t += timedelta(seconds=hb)
    assert reported is not None
    ref = last_ok or first_fail
    took = (reported - ref).total_seconds()
    assert thr <= took <= thr + hb + 1e-6, (took, thr, hb)
