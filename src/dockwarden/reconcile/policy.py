"""Guardrails: whether a recommendation may run now, and the guard-record transitions.

Pure: no I/O, no clock (``now`` is a parameter, aware UTC). Guard records are
frozen; every transition returns a new one (``dataclasses.replace``).

Sources of the numbers and shapes (shared/field-notes.md): exponential backoff
and its reset after a stable period from kubelet's CrashLoopBackOff (dockwarden
defaults 1 s doubling to 300 s, reset after 600 s); restart budget and "give up,
then a person resumes" from Nomad and Monit; "never start what the operator
stopped" from flatrun and Monit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, time, timedelta, timezone
from typing import Literal

from dockwarden.config import Policy, Window
from dockwarden.reconcile.backoff import exponential_delay_s
from dockwarden.model import (
    MUTATING_ACTIONS,
    ActionKind,
    CircuitState,
    ContainerState,
    Decision,
    GuardRecord,
    Intent,
    Mode,
    PendingAction,
    Recommendation,
    RecommendationType,
    ServiceSpec,
)

#: Actions that would run a container the operator may have stopped.
STARTING_ACTIONS = frozenset({ActionKind.START, ActionKind.RESTART, ActionKind.RECREATE,
                              ActionKind.COMPOSE_UP})
#: Actions whose container may be absent until the action completes.
CREATING_ACTIONS = frozenset({ActionKind.RECREATE, ActionKind.COMPOSE_UP})
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Tolerance between the engine's ``StartedAt`` and our clock when judging, seconds.
CLOCK_SLACK_S = 1.0
#: Look again this soon while an operator's stop is under way, seconds.
HOLD_REQUEUE_S = 0.5
#: Look again this soon while an action of the service is in flight, seconds.
IN_FLIGHT_REQUEUE_S = 1.0


def service_mode(global_mode: Mode, spec: ServiceSpec | None, policy: Policy) -> Mode:
    """The mode for one subject: a service can only narrow the global mode.

    Args:
        global_mode (Mode): Policy or ``--mode``.
        spec (ServiceSpec | None): None for untracked containers (and host subjects).
        policy (Policy): For ``guardrails.unmanaged_mode``.
    Returns:
        Mode: ``Mode.least(global, unmanaged_mode)`` untracked, else
        ``Mode.least(global, spec.remediation.as_mode())``.
    """
    if spec is None:
        return Mode.least(global_mode, policy.guardrails.unmanaged_mode)
    return Mode.least(global_mode, spec.remediation.as_mode())


def _hm(s: str) -> time:
    h, m = s.split(":")
    return time(int(h), int(m))


def _window_end(w: Window, now: datetime) -> datetime | None:
    """End of the occurrence of ``w`` that contains ``now`` (UTC), else None.

    ``start > end`` crosses midnight (the occurrence belongs to the start day);
    ``start == end`` is a whole 24 h from ``start``.
    """
    now = now.astimezone(timezone.utc)
    start, end = _hm(w.start), _hm(w.end)
    length = (datetime.combine(now.date(), end) - datetime.combine(now.date(), start))
    if length <= timedelta(0):
        length += timedelta(days=1)
    for back in (0, 1):  # an occurrence started today or yesterday
        day = now.date() - timedelta(days=back)
        if _DAYS[day.weekday()] not in w.days:
            continue
        begin = datetime.combine(day, start, tzinfo=timezone.utc)
        if begin <= now < begin + length:
            return begin + length
    return None


def in_maintenance(windows: Sequence[Window], now: datetime) -> bool:
    """True when ``now`` (UTC) falls in any maintenance window.

    A window is ``[start, end)`` on each listed day (the day the window starts);
    ``start > end`` crosses midnight, e.g. sat 23:00-01:00 covers Sunday 00:30.
    """
    return any(_window_end(w, now) is not None for w in windows)


def maintenance_remaining_s(windows: Sequence[Window], now: datetime) -> float | None:
    """Seconds until the latest-ending window containing ``now`` ends; None outside."""
    ends = [e for w in windows if (e := _window_end(w, now)) is not None]
    return max((e - now).total_seconds() for e in ends) if ends else None


def backoff_delay_s(attempts: int, policy: Policy) -> float:
    """Delay before the next remediation attempt, seconds.

    Args:
        attempts (int): Attempts already made since the service was last stable.
    Returns:
        float: 0.0 for 0 (the first attempt is immediate), else
        ``min(initial_delay_s * 2**(attempts-1), max_delay_s)``: with defaults
        1, 2, 4, ... 256, 300, 300 s. Shape: kubelet CrashLoopBackOff.
    """
    return exponential_delay_s(attempts, policy.backoff.initial_delay_s, policy.backoff.max_delay_s)


def _budget(spec: ServiceSpec | None, policy: Policy) -> tuple[int, float]:
    rb = policy.restart_budget
    max_r = spec.max_restarts if spec is not None and spec.max_restarts is not None else rb.max_restarts
    win = spec.restart_window_s if spec is not None and spec.restart_window_s is not None else rb.window_s
    return max_r, win


def _in_window(guard: GuardRecord, window_s: float, now: datetime) -> tuple[datetime, ...]:
    return tuple(t for t in guard.attempt_times if (now - t).total_seconds() < window_s)


def budget_exhausted(guard: GuardRecord, spec: ServiceSpec | None, policy: Policy,
                     now: datetime) -> bool:
    """True when the actions within the restart window reach the budget.

    Window and maximum come from ``spec.restart_window_s`` / ``spec.max_restarts``
    when set, else ``policy.restart_budget`` (default 5 within 600 s). An
    attempt counts while ``now - t < window_s``.
    """
    max_r, win = _budget(spec, policy)
    return len(_in_window(guard, win, now)) >= max_r


def decide(rec: Recommendation, *, mode: Mode, intent: Intent | None, guard: GuardRecord | None,
           spec: ServiceSpec | None, policy: Policy, now: datetime,
           pending: PendingAction | None = None, held: bool = False) -> Decision:
    """The guardrails' verdict: may this recommendation's action run now?

    First rule that applies wins:

    1. Non-mutating action (diagnostics, delay, failover_review) or a BLOCKED
       recommendation: no execution; DELAY requeues after
       ``guardrails.dependency_wait_s``; BLOCKED sets ``blocked`` and, for a
       tracked service whose circuit is not already open, ``open_circuit``.
    2. Intent stopped and a starting action: "operator stopped it".
    2a. ``held``: the operator's own stop is under way (a ``kill`` was seen and
        its ``die`` not yet): wait, requeue after :data:`HOLD_REQUEUE_S`.
    2b. An action of the service still in flight (``pending`` not finished),
        or finished and not yet judged by an observation (the closed loop: the
        next action waits for the verdict on the last one; an observation made
        before the action finished cannot judge it): wait, requeue after
        :data:`IN_FLIGHT_REQUEUE_S`. One action per service at a time.
    3. Guard paused: "paused by operator".
    4. Circuit open: blocked, with the guard's message.
    5. Mode observe or recommend: no execution.
    6. Maintenance window: requeue when it ends.
    7. Restart budget exhausted: blocked, ``open_circuit``.
    8. Backoff: ``guard.next_attempt`` in the future: requeue when it comes.
    9. PRUNE: never executed by the pipeline: the storage worker runs the tiered
       recipe itself (storage/monitor.py; ``prune_tier`` events, ``dockwarden prune``).
    10. Otherwise execute.

    Args:
        rec (Recommendation): From :func:`~dockwarden.reconcile.recommend.recommend`.
        mode (Mode): The subject's mode (:func:`service_mode`).
        intent (Intent | None): Effective intent, None for host/untracked.
        guard (GuardRecord | None): The subject's guard record, None if never acted.
        spec (ServiceSpec | None): None for host and untracked subjects.
        policy (Policy): Guardrail settings.
        now (datetime): Aware UTC time of the pass.
        pending (PendingAction | None): The service's newest unjudged action.
        held (bool): The operator is stopping the service right now.
    Returns:
        Decision: ``execute`` True only when the action may run now.
    """
    name, action = rec.subject, rec.action

    def no(reason: str, **kw: object) -> Decision:
        return Decision(rec, execute=False, reason=reason, **kw)  # type: ignore[arg-type]

    if rec.type is RecommendationType.BLOCKED:
        already = guard is not None and guard.circuit is CircuitState.OPEN
        return no(rec.reason, blocked=True, open_circuit=spec is not None and not already)
    if action not in MUTATING_ACTIONS:
        if action is ActionKind.DELAY:
            return no(rec.reason, requeue_after_s=policy.guardrails.dependency_wait_s)
        return no(rec.reason)
    if intent is Intent.STOPPED and action in STARTING_ACTIONS:
        return no(f"{name}: operator stopped it; not running {action.value}")
    if held:
        return no(f"{name}: the operator is stopping it (kill seen, waiting for the container to exit)",
                  requeue_after_s=HOLD_REQUEUE_S)
    if pending is not None and not pending.finished:
        return no(f"{name}: {pending.action.value} ({pending.id}) still in flight", requeue_after_s=IN_FLIGHT_REQUEUE_S)
    if pending is not None:
        return no(f"{name}: waiting for an observation to judge {pending.action.value} ({pending.id})",
                  requeue_after_s=IN_FLIGHT_REQUEUE_S)
    if guard is not None and guard.paused:
        return no(f"{name}: paused by operator (dockwarden resume {name})")
    if guard is not None and guard.circuit is CircuitState.OPEN:
        msg = f" ({guard.message})" if guard.message else ""
        return no(f"{name}: circuit open{msg}; `dockwarden resume {name}` to retry", blocked=True)
    if mode is Mode.OBSERVE:
        return no(f"{name}: mode observe")
    if mode is Mode.RECOMMEND:
        return no(f"{name}: mode recommend")
    left = maintenance_remaining_s(policy.guardrails.maintenance, now)
    if left is not None:
        return no(f"{name}: maintenance window, {action.value} deferred {left:.0f} s",
                  requeue_after_s=left)
    if guard is not None and budget_exhausted(guard, spec, policy, now):
        max_r, win = _budget(spec, policy)
        n = len(_in_window(guard, win, now))
        return no(f"{name}: restart budget exhausted: {n} actions within {win:g} s; circuit open "
                  f"until `dockwarden resume {name}` or the service runs stable for "
                  f"{policy.backoff.stable_reset_s:g} s", blocked=True, open_circuit=True)
    if guard is not None and guard.next_attempt is not None and guard.next_attempt > now:
        wait = (guard.next_attempt - now).total_seconds()
        return no(f"{name}: backoff: next attempt in {wait:g} s (attempt {guard.attempts + 1})",
                  requeue_after_s=wait)
    if action is ActionKind.PRUNE:
        return no(f"{name}: the storage worker frees space in tiers (prune_tier events; "
                  "`dockwarden prune --dry-run` shows them)")
    return Decision(rec, execute=True, reason=rec.reason)


# --------------------------------------------------------------------------- guard transitions


def record_attempt(guard: GuardRecord, *, now: datetime, policy: Policy,
                   spec: ServiceSpec | None) -> GuardRecord:
    """One more remediation attempt at ``now``.

    Args:
        guard (GuardRecord): The record before the attempt.
        now (datetime): Aware UTC time the action starts.
        policy (Policy): Backoff and restart-budget settings.
        spec (ServiceSpec | None): For ``restart_window_s`` overrides.
    Returns:
        GuardRecord: attempts + 1; ``attempt_times`` = the ones still inside the
        budget window plus ``now``; ``last_attempt = now``; ``next_attempt = now +
        backoff_delay_s(attempts + 1)`` (1 s, 2 s, 4 s ... 300 s with defaults).
    """
    attempts = guard.attempts + 1
    _, win = _budget(spec, policy)
    return dataclasses.replace(
        guard, attempts=attempts, attempt_times=_in_window(guard, win, now) + (now,),
        last_attempt=now, next_attempt=now + timedelta(seconds=backoff_delay_s(attempts, policy)),
    )


def open_circuit(guard: GuardRecord, *, now: datetime, message: str) -> GuardRecord:
    """Open the circuit breaker: no actions until :func:`resume` or stability.

    Args:
        guard (GuardRecord): The record to change.
        now (datetime): Aware UTC time; becomes ``circuit_opened_at``.
        message (str): Why, shown in later "circuit open" reasons.
    Returns:
        GuardRecord: ``circuit`` OPEN; attempts and backoff are kept.
    """
    return dataclasses.replace(guard, circuit=CircuitState.OPEN, circuit_opened_at=now,
                               message=message)


def resume(guard: GuardRecord) -> GuardRecord:
    """The operator's ``dockwarden resume``: closed, unpaused, backoff and budget cleared."""
    return dataclasses.replace(guard, circuit=CircuitState.CLOSED, circuit_opened_at=None,
                               paused=False, attempts=0, attempt_times=(), next_attempt=None,
                               message="")


def pause(guard: GuardRecord) -> GuardRecord:
    """The operator's ``dockwarden pause``: no actions until resume."""
    return dataclasses.replace(guard, paused=True)


def observe_stability(guard: GuardRecord, *, container: ContainerState | None, drifting: bool,
                      now: datetime, policy: Policy) -> GuardRecord:
    """Reset backoff and close the circuit once a service has run stable long enough.

    Stable: the container is running, not unhealthy, the service has no drift,
    and ``now - started_at >= backoff.stable_reset_s`` (kubelet resets its
    backoff after 10 min running). A manual pause is kept.

    Args:
        guard (GuardRecord): The service's record.
        container (ContainerState | None): The service's container now.
        drifting (bool): True when the service has any drift this pass.
        now (datetime): Aware UTC time of the observation.
        policy (Policy): For ``backoff.stable_reset_s`` (default 600 s).
    Returns:
        GuardRecord: attempts 0, ``attempt_times`` (), ``next_attempt`` None and
        the circuit closed (message ``"stable for S s"`` when it was open); or
        ``guard`` itself when not yet stable or nothing needs resetting.
    """
    s = policy.backoff.stable_reset_s
    if (container is None or not container.running or container.health == "unhealthy"
            or drifting or container.started_at is None
            or (now - container.started_at).total_seconds() < s):
        return guard
    opened = guard.circuit is CircuitState.OPEN
    if not opened and guard.attempts == 0 and not guard.attempt_times and guard.next_attempt is None:
        return guard
    return dataclasses.replace(
        guard, attempts=0, attempt_times=(), next_attempt=None, circuit=CircuitState.CLOSED,
        circuit_opened_at=None if opened else guard.circuit_opened_at,
        message=f"stable for {s:g} s" if opened else guard.message,
    )


def judge(pending: PendingAction, container: ContainerState | None, *, now: datetime,
          policy: Policy) -> Literal["succeeded", "failed", "pending"]:
    """The closed loop: judge an action by the next observation, not by the API call.

    * succeeded: the container exists, runs, is not unhealthy, and started at or
      after the action (``started_at >= pending.started_at - 1 s`` clock slack),
      so a RESTART of a running container only counts once ``started_at`` moved.
    * failed: the container is exited/dead with ``finished_at`` after the action
      began; or it is missing after an action other than recreate/compose_up; or
      ``now - pending.started_at > guardrails.action_timeout_s`` (default 60 s).
    * pending: otherwise (e.g. restarting, or created but not started yet), and
      always while the call has not returned (``pending.finished`` False).
    * ``stop``: succeeded once the container is not running (or gone); failed
      when it still runs after ``action_timeout_s``.

    Args:
        pending (PendingAction): The action taken, with its start time.
        container (ContainerState | None): The service's container as observed now.
        now (datetime): Aware UTC time of the observation.
        policy (Policy): For ``guardrails.action_timeout_s``.
    Returns:
        Literal["succeeded", "failed", "pending"]: Success is checked first, so a
        container that came up is a success even after the timeout.
    """
    since = pending.started_at
    if not pending.finished:
        return "pending"  # the call has not returned; its deadline closes it if it never does
    if pending.action is ActionKind.STOP:
        if container is None or not container.running:
            return "succeeded"
        if (now - since).total_seconds() > policy.guardrails.action_timeout_s:
            return "failed"
        return "pending"
    if container is not None:
        started = container.started_at
        if (container.running and container.health != "unhealthy" and started is not None
                and started >= since - timedelta(seconds=CLOCK_SLACK_S)):
            return "succeeded"
        if (container.state in ("exited", "dead") and container.finished_at is not None
                and container.finished_at >= since):
            return "failed"
    elif pending.action not in CREATING_ACTIONS:
        return "failed"
    if (now - since).total_seconds() > policy.guardrails.action_timeout_s:
        return "failed"
    return "pending"
