"""Guardrails (decide), guard-record transitions, maintenance windows, judge."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
from builders import NOW, POLICY, ago, container, drift, finding, guard, spec

from dockwarden.config import Policy, Window
from dockwarden.model import ActionKind as A
from dockwarden.model import CircuitState, Intent, Mode, PendingAction, Recommendation, Remediation
from dockwarden.model import DriftKind as K
from dockwarden.model import RecommendationType as T
from dockwarden.reconcile.policy import (
    backoff_delay_s,
    budget_exhausted,
    decide,
    in_maintenance,
    judge,
    maintenance_remaining_s,
    observe_stability,
    open_circuit,
    pause,
    record_attempt,
    resume,
    service_mode,
)

UTC = timezone.utc
OPEN = CircuitState.OPEN
CLOSED = CircuitState.CLOSED


def rec(action=A.START, type_=T.REQUIRED, subject="web"):
    return Recommendation(type_, subject, action, f"{subject}: because", finding(drift(K.STOPPED, subject)),
                          container=subject)


def dec(r=None, *, mode=Mode.AUTO, intent=Intent.RUNNING, g=None, s="default", policy=POLICY, now=NOW):
    return decide(r or rec(), mode=mode, intent=intent, guard=g, spec=spec("web") if s == "default" else s,
                  policy=policy, now=now)


# --------------------------------------------------------------------------- mode


@pytest.mark.parametrize("global_mode,remediation,expected", [
    (Mode.AUTO, Remediation.AUTO, Mode.AUTO),
    (Mode.AUTO, Remediation.RECOMMEND, Mode.RECOMMEND),
    (Mode.AUTO, Remediation.OFF, Mode.OBSERVE),
    (Mode.RECOMMEND, Remediation.AUTO, Mode.RECOMMEND),
    (Mode.OBSERVE, Remediation.AUTO, Mode.OBSERVE),
])
def test_service_mode_only_narrows(global_mode, remediation, expected):
    assert service_mode(global_mode, spec("web", remediation=remediation), POLICY) is expected


def test_service_mode_untracked_uses_unmanaged_mode():
    assert service_mode(Mode.AUTO, None, POLICY) is Mode.RECOMMEND
    auto = Policy(guardrails={"unmanaged_mode": "auto"})
    assert service_mode(Mode.AUTO, None, auto) is Mode.AUTO
    assert service_mode(Mode.OBSERVE, None, auto) is Mode.OBSERVE


# --------------------------------------------------------------------------- maintenance windows (UTC)


def at(day: int, hh: int, mm: int = 0) -> datetime:
    """2026-11-16 is a Monday; day 0=mon .. 6=sun."""
    return datetime(2026, 11, 16 + day, hh, mm, tzinfo=UTC)


def test_window_same_day():
    w = [Window(days=["mon"], start="02:00", end="04:00")]
    assert not in_maintenance(w, at(0, 1, 59))
    assert in_maintenance(w, at(0, 2, 0)) and in_maintenance(w, at(0, 3, 59))
    assert not in_maintenance(w, at(0, 4, 0))
    assert not in_maintenance(w, at(1, 3, 0))


def test_window_crossing_midnight_belongs_to_start_day():
    w = [Window(days=["sat"], start="23:00", end="01:00")]
    assert in_maintenance(w, at(5, 23, 30))
    assert in_maintenance(w, at(6, 0, 30))  # Sunday early morning, started Saturday
    assert not in_maintenance(w, at(6, 1, 0))
    assert not in_maintenance(w, at(6, 23, 30))  # Sunday is not a window day
    assert not in_maintenance(w, at(5, 0, 30))  # Saturday early: Friday had no window


def test_window_default_days_and_whole_day_and_timezone():
    assert in_maintenance([Window(start="22:00", end="06:00")], at(2, 5, 0))
    assert in_maintenance([Window(days=["wed"], start="00:00", end="00:00")], at(2, 13, 0))
    cet = timezone(timedelta(hours=1))
    w = [Window(days=["mon"], start="02:00", end="04:00")]
    assert in_maintenance(w, datetime(2026, 11, 16, 4, 30, tzinfo=cet))  # 03:30 UTC
    assert not in_maintenance([], NOW)


def test_maintenance_remaining_is_until_window_end():
    w = [Window(days=["sat"], start="23:00", end="01:00"), Window(start="23:30", end="00:15")]
    assert maintenance_remaining_s(w, at(5, 23, 45)) == 75 * 60
    assert maintenance_remaining_s(w, at(5, 12, 0)) is None


# --------------------------------------------------------------------------- backoff and budget


def test_backoff_sequence_kubelet_shape_with_cap():
    got = [backoff_delay_s(n, POLICY) for n in range(12)]
    assert got == [0.0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert backoff_delay_s(10_000, POLICY) == 300.0


def test_backoff_uses_policy():
    p = Policy(backoff={"initial_delay_s": 10, "max_delay_s": 30})
    assert [backoff_delay_s(n, p) for n in range(5)] == [0.0, 10, 20, 30, 30]


def test_budget_counts_only_window():
    recent = tuple(ago(s) for s in (10, 100, 200, 300))
    g = guard(attempt_times=recent)
    assert not budget_exhausted(g, spec("web"), POLICY, NOW)
    assert budget_exhausted(guard(attempt_times=recent + (ago(599),)), spec("web"), POLICY, NOW)
    assert not budget_exhausted(guard(attempt_times=recent + (ago(600),)), spec("web"), POLICY, NOW)


def test_budget_spec_overrides():
    g = guard(attempt_times=(ago(1000), ago(5)))
    assert budget_exhausted(g, spec("web", max_restarts=2, restart_window_s=2000), POLICY, NOW)
    assert not budget_exhausted(g, spec("web", max_restarts=2), POLICY, NOW)
    assert not budget_exhausted(g, None, POLICY, NOW)


# --------------------------------------------------------------------------- decide, rule by rule


@pytest.mark.parametrize("action", [A.DIAGNOSTICS, A.FAILOVER_REVIEW])
def test_advice_actions_never_execute(action):
    d = dec(rec(action, T.RECOMMENDED))
    assert not d.execute and not d.blocked and d.requeue_after_s is None


def test_delay_requeues_after_dependency_wait():
    d = dec(rec(A.DELAY), policy=Policy(guardrails={"dependency_wait_s": 7}))
    assert not d.execute and d.requeue_after_s == 7


def test_blocked_recommendation_opens_circuit_for_tracked_only():
    d = dec(rec(A.DIAGNOSTICS, T.BLOCKED))
    assert (d.execute, d.blocked, d.open_circuit) == (False, True, True)
    assert d.event_type is T.BLOCKED
    assert dec(rec(A.DIAGNOSTICS, T.BLOCKED), s=None).open_circuit is False
    already = dec(rec(A.DIAGNOSTICS, T.BLOCKED), g=guard(circuit=OPEN))
    assert already.blocked and not already.open_circuit


@pytest.mark.parametrize("action", [A.START, A.RESTART, A.RECREATE, A.COMPOSE_UP])
def test_never_start_what_operator_stopped(action):
    d = dec(rec(action), intent=Intent.STOPPED)
    assert not d.execute and "operator stopped it" in d.reason


def test_paused_guard():
    d = dec(g=guard(paused=True, circuit=OPEN))
    assert not d.execute and "paused by operator (dockwarden resume web)" in d.reason


def test_open_circuit_blocks_with_message():
    d = dec(g=guard(circuit=OPEN, message="restart budget exhausted"))
    assert not d.execute and d.blocked and not d.open_circuit
    assert "restart budget exhausted" in d.reason and "dockwarden resume web" in d.reason


@pytest.mark.parametrize("mode,word", [(Mode.OBSERVE, "observe"), (Mode.RECOMMEND, "recommend")])
def test_modes_without_action(mode, word):
    d = dec(mode=mode)
    assert not d.execute and not d.blocked and f"mode {word}" in d.reason
    assert d.event_type is T.REQUIRED


def test_maintenance_defers_until_window_end():
    p = Policy(guardrails={"maintenance": [{"days": ["sat"], "start": "09:30", "end": "10:30"}]})
    d = dec(policy=p)
    assert not d.execute and d.requeue_after_s == 1800


def test_budget_exhausted_opens_circuit():
    g = guard(attempts=5, attempt_times=tuple(ago(s) for s in (1, 2, 3, 4, 5)))
    d = dec(g=g)
    assert (d.execute, d.blocked, d.open_circuit) == (False, True, True)
    assert d.reason == ("web: restart budget exhausted: 5 actions within 600 s; circuit open until "
                        "`dockwarden resume web` or the service runs stable for 600 s")


def test_backoff_requeues_for_seconds_left():
    g = guard(attempts=3, attempt_times=(ago(1),), next_attempt=NOW + timedelta(seconds=3))
    d = dec(g=g)
    assert not d.execute and d.requeue_after_s == 3 and "backoff: next attempt in 3 s (attempt 4)" in d.reason
    assert dec(g=dataclasses.replace(g, next_attempt=NOW)).execute


def test_prune_is_left_to_the_storage_worker():
    d = dec(rec(A.PRUNE, T.RECOMMENDED, "host:disk:/"), intent=None, s=None)
    assert not d.execute and not d.blocked and "storage worker" in d.reason


def test_execute_when_all_clear():
    d = dec(g=guard(attempts=1, attempt_times=(ago(700),), next_attempt=ago(1)))
    assert d.execute and d.reason == "web: because" and not d.blocked


def test_rule_order_stopped_before_pause_before_circuit_before_mode():
    g = guard(paused=True, circuit=OPEN)
    assert "operator stopped it" in dec(g=g, intent=Intent.STOPPED, mode=Mode.OBSERVE).reason
    assert "paused" in dec(g=g, mode=Mode.OBSERVE).reason
    assert "circuit open" in dec(g=guard(circuit=OPEN), mode=Mode.OBSERVE).reason
    busy = guard(attempt_times=tuple(ago(s) for s in range(1, 6)), next_attempt=NOW + timedelta(seconds=9))
    assert "mode recommend" in dec(g=busy, mode=Mode.RECOMMEND).reason
    assert "budget exhausted" in dec(g=busy).reason


def decide_example():
    """A decision in backoff (run in other interpreters by hashseed)."""
    g = guard(attempts=2, attempt_times=(ago(3),), next_attempt=NOW + timedelta(seconds=1))
    return dec(g=g)


def test_decide_deterministic():
    from hashseed import assert_same_across_hash_seeds

    out = assert_same_across_hash_seeds("test_policy", "decide_example")
    assert '"requeue_after_s": 1.0' in out  # the example is the backoff case


# --------------------------------------------------------------------------- guard transitions


def test_record_attempt_sequence_and_budget_window():
    g = guard(attempt_times=(ago(601), ago(30)))
    g1 = record_attempt(g, now=NOW, policy=POLICY, spec=spec("web"))
    assert g1.attempts == 1 and g1.last_attempt == NOW
    assert g1.attempt_times == (ago(30), NOW)
    assert g1.next_attempt == NOW + timedelta(seconds=1)
    delays = []
    g, t = guard(), NOW
    for _ in range(10):
        g = record_attempt(g, now=t, policy=POLICY, spec=None)
        delays.append((g.next_attempt - t).total_seconds())
        t = g.next_attempt
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]


def test_open_resume_pause():
    g = open_circuit(guard(attempts=4, attempt_times=(NOW,), next_attempt=NOW), now=NOW, message="boom")
    assert (g.circuit, g.circuit_opened_at, g.message) == (OPEN, NOW, "boom")
    p = pause(g)
    assert p.paused and p.circuit is OPEN
    r = resume(p)
    assert r == guard(last_attempt=None)


def test_budget_exhaustion_opens_then_stability_closes():
    g, t = guard(), NOW
    for _ in range(5):
        assert dec(g=g, now=t).execute
        g = record_attempt(g, now=t, policy=POLICY, spec=spec("web"))
        t = g.next_attempt
    d = dec(g=g, now=t)
    assert d.open_circuit and d.blocked
    g = open_circuit(g, now=t, message=d.reason)
    assert dec(g=g, now=t + timedelta(hours=1)).blocked
    later = t + timedelta(seconds=700)
    up = container("web", started_at=later - timedelta(seconds=600))
    g2 = observe_stability(g, container=up, drifting=False, now=later, policy=POLICY)
    assert g2.circuit is CLOSED and g2.attempts == 0 and g2.attempt_times == () and g2.next_attempt is None
    assert g2.message == "stable for 600 s"
    assert dec(g=g2, now=later).execute


@pytest.mark.parametrize("c,drifting", [
    (container("web", started_at=ago(599)), False),
    (container("web", started_at=ago(3600)), True),
    (container("web", started_at=ago(3600), health="unhealthy"), False),
    (container("web", "exited"), False),
    (None, False),
])
def test_stability_not_reached_leaves_guard(c, drifting):
    g = guard(attempts=3, attempt_times=(ago(5),), next_attempt=ago(1), circuit=OPEN, message="m")
    assert observe_stability(g, container=c, drifting=drifting, now=NOW, policy=POLICY) is g


def test_stability_keeps_pause_and_leaves_clean_guard_alone():
    g = guard(attempts=2, paused=True)
    g2 = observe_stability(g, container=container("web"), drifting=False, now=NOW, policy=POLICY)
    assert g2.paused and g2.attempts == 0 and g2.circuit is CLOSED
    clean = guard()
    assert observe_stability(clean, container=container("web"), drifting=False, now=NOW,
                             policy=POLICY) is clean


# --------------------------------------------------------------------------- judge (closed loop)


def pending(action=A.START, started=ago(10)):
    return PendingAction(id=1, service="web", container="web", action=action, started_at=started)


@pytest.mark.parametrize("c,action,expected", [
    (container("web", started_at=ago(9)), A.START, "succeeded"),
    (container("web", started_at=ago(10.5)), A.RESTART, "succeeded"),  # within 1 s slack
    (container("web", started_at=ago(3600)), A.RESTART, "pending"),  # never restarted
    (container("web", started_at=ago(9), health="unhealthy"), A.RESTART, "pending"),
    (container("web", started_at=ago(9), health="starting"), A.RESTART, "succeeded"),
    (container("web", "exited", finished_at=ago(5)), A.START, "failed"),
    (container("web", "dead", finished_at=ago(5)), A.START, "failed"),
    (container("web", "exited", finished_at=ago(300)), A.START, "pending"),  # not started yet
    (container("web", "restarting", started_at=ago(8)), A.START, "pending"),
    (None, A.START, "failed"),
    (None, A.RESTART, "failed"),
    (None, A.RECREATE, "pending"),
    (None, A.COMPOSE_UP, "pending"),
])
def test_judge(c, action, expected):
    assert judge(pending(action), c, now=NOW, policy=POLICY) == expected


def test_judge_times_out():
    p = pending(A.RECREATE, started=ago(61))
    assert judge(p, None, now=NOW, policy=POLICY) == "failed"
    assert judge(pending(A.RECREATE, started=ago(60)), None, now=NOW, policy=POLICY) == "pending"
    stale = container("web", started_at=ago(3600))
    assert judge(pending(A.RESTART, started=ago(61)), stale, now=NOW, policy=POLICY) == "failed"
    # success is still success after the timeout
    assert judge(pending(started=ago(61)), container("web", started_at=ago(59)), now=NOW,
                 policy=POLICY) == "succeeded"


def test_one_action_per_service_until_an_observation_judges_it():
    """The closed loop: while the last action is in flight, or finished but not yet
    judged (an observation older than its end cannot judge it), no new action
    runs; once judged (no pending action) the guardrails decide as usual."""
    r = rec()
    base = dict(mode=Mode.AUTO, intent=Intent.RUNNING, guard=None, spec=spec("web"), policy=POLICY, now=NOW)
    flight = PendingAction(id="a-1", service="web", container="web", action=A.START, started_at=ago(2),
                           finished=False)
    d = decide(r, pending=flight, **base)
    assert not d.execute and "in flight" in d.reason and d.requeue_after_s
    done = dataclasses.replace(flight, finished=True)
    d = decide(r, pending=done, **base)
    assert not d.execute and "judge" in d.reason and d.requeue_after_s
    assert decide(r, pending=None, **base).execute


def test_an_operator_stop_under_way_holds_every_action():
    d = decide(rec(), mode=Mode.AUTO, intent=Intent.RUNNING, guard=None, spec=spec("web"), policy=POLICY,
               now=NOW, held=True)
    assert not d.execute and "operator is stopping it" in d.reason
