"""The intent model (operator_intent.py) on hand-made event sequences, with a real
SQLite store and no engine. The same rows run against a real engine in
tests/e2e/test_intent_matrix.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dockwarden.model import (ActionBy, ActionKind, ActionRecord, ContainerState, DesiredState, EngineEvent,
                              Intent, IntentSource, Outcome, ServiceSpec, WorldState)
from dockwarden.observe.world import unreported_changes
from dockwarden.operator_intent import KILL_HOLD_S, OperatorIntent, signal_name
from dockwarden.store import Store

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
WEB = ServiceSpec(name="web", container="web-1")


@pytest.fixture
def reader(tmp_path):
    store = Store(tmp_path / "db")
    emitted: list[tuple] = []
    r = OperatorIntent(store, lambda type_, reason, **kw: emitted.append((type_.value, reason, kw)))
    r.emitted = emitted  # type: ignore[attr-defined]
    return r


def ev(action: str, t: float, cid: str = "c1", **attrs: str) -> EngineEvent:
    at = T0 + timedelta(seconds=t)
    return EngineEvent(action=action, container_id=cid, name="web-1", time=at, attributes=attrs, received_at=at)


def feed(r: OperatorIntent, *events: EngineEvent, container: ContainerState | None = None) -> None:
    for e in events:
        r.on_event(e, WEB, container)


def intent(r: OperatorIntent) -> Intent | None:
    rec = r.store.intents().get("web")
    return rec.intent if rec else None


@pytest.mark.parametrize("sig", ["15", "3", "2", "28", "SIGUSR1", "9"])
def test_docker_stop_with_any_stop_signal_is_the_operators(reader, sig):
    """nginx stops with SIGQUIT (3), postgres SIGINT (2), httpd SIGWINCH (28): the
    kill -> die -> stop sequence is a stop whatever the signal."""
    box = ContainerState(id="c1", name="web-1", image="i", state="running",
                         stop_signal={"28": "SIGWINCH", "SIGUSR1": "SIGUSR1"}.get(sig))
    feed(reader, ev("kill", 0, signal=sig), ev("die", 0.4, exitCode="0"), ev("stop", 0.41), container=box)
    assert intent(reader) is Intent.STOPPED
    assert reader.store.intents()["web"].source is IntentSource.OBSERVED


def test_kill_without_die_is_a_reload_not_a_stop(reader):
    feed(reader, ev("kill", 0, signal="1"))
    assert intent(reader) is None
    assert reader.held(T0 + timedelta(seconds=1)) == {"web"}  # no action while its die may follow
    assert reader.held(T0 + timedelta(seconds=KILL_HOLD_S + 1)) == set()


def test_a_crash_long_after_a_reload_signal_is_a_crash(reader):
    feed(reader, ev("kill", 0, signal="1"), ev("die", 60, exitCode="1"))
    assert intent(reader) is None


def test_a_non_stopping_signal_that_kills_at_once_is_a_stop(reader):
    feed(reader, ev("kill", 0, signal="10"), ev("die", 0.2, exitCode="138"))
    assert intent(reader) is Intent.STOPPED


def test_die_without_kill_is_a_crash(reader):
    feed(reader, ev("die", 0, exitCode="137"), ev("oom", 0))
    assert intent(reader) is None and reader.held(T0) == set()


def test_rm_f_of_a_running_container_is_a_removal_taken_back(reader):
    feed(reader, ev("kill", 0, signal="9"), ev("die", 0.05), ev("destroy", 0.15))
    assert intent(reader) is None  # back to the inventory's "running": recreate
    assert reader.emitted[-1][2]["details"]["taken_back"] is True


def test_stop_then_rm_stays_stopped(reader):
    """`docker stop; docker rm` and `compose down`: gone means gone."""
    feed(reader, ev("kill", 0, signal="15"), ev("die", 0.1), ev("stop", 0.12), ev("destroy", 1.5))
    assert intent(reader) is Intent.STOPPED


def test_start_outside_dockwarden_is_running_again_and_pause_is_a_stop(reader):
    feed(reader, ev("kill", 0, signal="15"), ev("die", 0.1), ev("stop", 0.1), ev("start", 5))
    assert intent(reader) is Intent.RUNNING
    feed(reader, ev("pause", 10))
    assert intent(reader) is Intent.STOPPED
    feed(reader, ev("unpause", 20))
    assert intent(reader) is Intent.RUNNING


def _action(store: Store, uid: str, kind: ActionKind, start: float, deadline: float, cid: str | None = "c1"):
    store.begin_action(ActionRecord(uid=uid, service="web", container="web-1", container_id=cid, action=kind,
                                    started_at=T0 + timedelta(seconds=start),
                                    deadline_at=T0 + timedelta(seconds=deadline), by=ActionBy.CLI, pid=1))


def test_own_actions_are_not_intent(reader):
    _action(reader.store, "a1", ActionKind.RESTART, 0, 60)
    feed(reader, ev("kill", 0.1, signal="15"), ev("die", 0.2), ev("stop", 0.2), ev("start", 0.4))
    assert intent(reader) is None and reader.emitted == []


def test_an_interrupted_action_does_not_blind_later_stops(reader):
    """issue 8 finding 2: `dockwarden stop` interrupted, `dockwarden start`, then
    `docker stop` must still be the operator's."""
    _action(reader.store, "a1", ActionKind.STOP, 0, 40)
    assert reader.store.interrupt_action("a1", T0 + timedelta(seconds=1), "Ctrl-C")
    feed(reader, ev("kill", 30, signal="15"), ev("die", 30.2), ev("stop", 30.2))
    assert intent(reader) is Intent.STOPPED


def test_engine_restart_takes_back_only_on_evidence(reader):
    feed(reader, ev("kill", 0, signal="15"), ev("die", 0.1), ev("stop", 0.1))
    assert intent(reader) is Intent.STOPPED
    last = T0 + timedelta(seconds=3)
    kept = reader.reconsider_stops(engine_restarted=False, last_seen=last, manually_stopped=lambda cid: None)
    assert kept == {"taken_back": [], "kept": ["web"]} and intent(reader) is Intent.STOPPED


def test_engine_restart_evidence_takes_the_stop_back(reader):
    feed(reader, ev("kill", 0, signal="15"), ev("die", 0.1), ev("stop", 0.1))
    last = T0 + timedelta(seconds=3)
    out = reader.reconsider_stops(engine_restarted=True, last_seen=last, manually_stopped=lambda cid: None)
    assert out["taken_back"] == ["web"] and intent(reader) is None


def test_dockers_own_flag_wins_over_the_restart_evidence(reader):
    feed(reader, ev("kill", 0, signal="15"), ev("die", 0.1), ev("stop", 0.1))
    out = reader.reconsider_stops(engine_restarted=True, last_seen=T0, manually_stopped=lambda cid: True)
    assert out["kept"] == ["web"] and intent(reader) is Intent.STOPPED


def test_old_stops_are_not_reconsidered(reader):
    feed(reader, ev("kill", 0, signal="15"), ev("die", 0.1), ev("stop", 0.1))
    far = T0 + timedelta(seconds=600)
    out = reader.reconsider_stops(engine_restarted=True, last_seen=far, manually_stopped=lambda cid: None)
    assert out == {"taken_back": [], "kept": []} and intent(reader) is Intent.STOPPED


def test_stops_made_while_not_watching_are_adopted_from_dockers_flag(reader):
    c = ContainerState(id="c1", name="web-1", image="i", state="exited", exit_code=0,
                       finished_at=T0 + timedelta(seconds=50))
    world = WorldState(node="n", observed_at=T0 + timedelta(seconds=60), host=None, containers=(c,))
    desired = DesiredState(node="n", services={"web": WEB})
    assert reader.adopt_unseen_stops(desired, world, since=T0, manually_stopped=lambda cid: False) == []
    assert reader.adopt_unseen_stops(desired, world, since=T0 + timedelta(seconds=55),
                                     manually_stopped=lambda cid: True) == []  # before our last event
    assert reader.adopt_unseen_stops(desired, world, since=T0, manually_stopped=lambda cid: True) == ["web"]
    assert intent(reader) is Intent.STOPPED


def test_signal_names():
    assert signal_name("15") == "SIGTERM" and signal_name("QUIT") == "SIGQUIT" and signal_name("SIGWINCH") == "SIGWINCH"
    assert signal_name(None) is None


def test_unreported_changes_find_what_the_stream_missed():
    before = WorldState(node="n", observed_at=T0, host=None, containers=(
        ContainerState(id="a", name="a", image="i", state="running", started_at=T0 - timedelta(hours=1)),
        ContainerState(id="b", name="b", image="i", state="running", started_at=T0 - timedelta(hours=1)),
    ))
    after = WorldState(node="n", observed_at=T0 + timedelta(seconds=30), host=None, containers=(
        ContainerState(id="a", name="a", image="i", state="exited", started_at=T0 - timedelta(hours=1),
                       finished_at=T0 + timedelta(seconds=5)),
        ContainerState(id="b", name="b", image="i", state="exited", started_at=T0 - timedelta(hours=1),
                       finished_at=T0 + timedelta(seconds=29)),  # too recent: its event may be coming
        ContainerState(id="c", name="c", image="i", state="running", created_at=T0 + timedelta(seconds=2),
                       started_at=T0 + timedelta(seconds=2)),
    ))
    assert unreported_changes(before, after, set(), settle_s=3) == ["a", "c"]
    assert unreported_changes(before, after, {"a", "c"}, settle_s=3) == []


def test_an_action_that_never_finished_explains_nothing_after_its_deadline(reader):
    """A CLI killed mid-stop leaves its action unfinished: past its deadline it no
    longer makes the operator's own `docker stop` look like dockwarden's."""
    _action(reader.store, "a1", ActionKind.STOP, 0, 40)
    feed(reader, ev("kill", 10, signal="15"), ev("die", 10.2), ev("stop", 10.2))
    assert intent(reader) is None  # within the action: its own events
    _action(reader.store, "a2", ActionKind.START, 19.9, 80)  # `dockwarden start`
    feed(reader, ev("start", 20))
    reader.store.finish_action("a2", Outcome(ActionKind.START, "web", "web-1", ok=True, result="started"),
                               T0 + timedelta(seconds=20))
    feed(reader, ev("kill", 50, signal="15"), ev("die", 50.2), ev("stop", 50.2))
    assert intent(reader) is Intent.STOPPED


def test_stops_of_the_engines_own_start_up_are_not_intent(reader):
    """A dockerd killed with SIGKILL stops the containers it finds still running when it
    starts again (no live-restore), before its API answers; those events arrive after
    the reconnect. Stamped between the engine's start and its first answer: not intent.
    A stop after the first answer is the operator's again."""
    reader.engine_started_up(T0 + timedelta(seconds=10), T0 + timedelta(seconds=12))
    feed(reader, ev("kill", 11, signal="15"), ev("die", 11.2, exitCode="0"), ev("stop", 11.3))
    assert intent(reader) is None and reader.held(T0 + timedelta(seconds=12)) == set()
    feed(reader, ev("kill", 12.5, signal="15"), ev("die", 12.6), ev("stop", 12.7))
    assert intent(reader) is Intent.STOPPED


def test_a_stop_before_the_engine_restarted_stays_the_operators(reader):
    """issue 8.7: a `docker stop` made before the engine went away is not the engine's own."""
    reader.engine_started_up(T0 + timedelta(seconds=10), T0 + timedelta(seconds=12))
    feed(reader, ev("kill", 5, signal="15"), ev("die", 5.1), ev("stop", 5.2))
    assert intent(reader) is Intent.STOPPED


def test_an_engine_restart_ends_the_holds_of_kills_without_their_die(reader):
    """The engine's shutdown killed the process; the stream went away before its `die`.
    After the restart nothing holds the service any more (it was held 10 s: recovery
    with the daemon running took 15.9 s instead of 8 in bench/recovery.py)."""
    feed(reader, ev("kill", 0, signal="9"))
    assert reader.held(T0 + timedelta(seconds=1)) == {"web"}
    assert reader.end_holds() == ["web"]
    assert reader.held(T0 + timedelta(seconds=1)) == set()
    feed(reader, ev("kill", 2, signal="9"), ev("die", 2.1))  # a finished sequence is not a hold
    assert reader.end_holds() == []
