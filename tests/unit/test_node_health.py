"""The node state machine (reconcile/node_health.py), with an injected clock."""

from datetime import datetime, timedelta, timezone

from dockwarden.reconcile.node_health import NodeHealth, NodeState, next_check_s, step

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_online_suspect_offline_online():
    h, t = step(NodeHealth(since=T0), now=at(0), offline_after_s=30, ok=True)
    assert h.state is NodeState.ONLINE and t is None
    h, t = step(h, now=at(5), offline_after_s=30, ok=False, error="timeout")
    assert h.state is NodeState.SUSPECT and t == "suspect"
    h, t = step(h, now=at(20), offline_after_s=30, ok=False)
    assert h.state is NodeState.SUSPECT and t is None
    assert next_check_s(h, now=at(20), offline_after_s=30) == 10
    h, t = step(h, now=at(30), offline_after_s=30)  # a timer tick, 30 s after the last answer
    assert h.state is NodeState.OFFLINE and t == "offline" and h.error == "timeout"
    h, t = step(h, now=at(40), offline_after_s=30, ok=False)
    assert h.state is NodeState.OFFLINE and t is None
    h, t = step(h, now=at(50), offline_after_s=30, ok=True)
    assert h.state is NodeState.ONLINE and t == "online" and h.last_ok_at == at(50)


def test_a_blip_shorter_than_the_threshold_is_quiet():
    h, _ = step(NodeHealth(since=T0), now=at(0), offline_after_s=30, ok=True)
    h, t = step(h, now=at(1), offline_after_s=30, ok=False)
    h, t = step(h, now=at(6), offline_after_s=30, ok=True)
    assert h.state is NodeState.ONLINE and t == "recovered"


def test_a_node_that_never_answered_goes_offline_from_its_start():
    h = NodeHealth(state=NodeState.SUSPECT, since=T0)
    h, t = step(h, now=at(29), offline_after_s=30, ok=False)
    assert t is None
    h, t = step(h, now=at(31), offline_after_s=30, ok=False)
    assert t == "offline"


def test_detection_within_threshold_plus_one_heartbeat():
    """Heartbeats every 5 s, last answer at 0: offline is reported at the first
    heartbeat at or after 30 s, i.e. by 35 s."""
    h, _ = step(NodeHealth(since=T0), now=at(0), offline_after_s=30, ok=True)
    t_off = None
    for k in range(1, 10):
        h, t = step(h, now=at(5 * k), offline_after_s=30, ok=False)
        if t == "offline":
            t_off = 5 * k
            break
    assert t_off is not None and 30 <= t_off <= 35
