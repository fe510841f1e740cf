from datetime import datetime, timedelta, timezone

from dockwarden.model import (ContainerState, DesiredState, Intent, IntentRecord, IntentSource, ServiceSpec,
                              WorldState)
from dockwarden.recovery import RecoverySession

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def w(**states):
    cs = tuple(ContainerState(id=n, name=n, image="i", state=s.split("/")[0],
                              health=(s.split("/")[1] if "/" in s else None)) for n, s in states.items())
    return WorldState(node="n", observed_at=T0, host=None, containers=cs)


DESIRED = DesiredState(node="n", services={n: ServiceSpec(name=n) for n in ("db", "web", "off", "up")})
INTENTS = {"off": IntentRecord("off", Intent.STOPPED, IntentSource.CLI, T0)}


def test_session_lists_brought_back_left_stopped_and_failed():
    s = RecoverySession.begin("engine_restart", T0, DESIRED, INTENTS,
                              w(db="exited", web="exited", off="exited", up="running"))
    assert s.expected == ["db", "web"] and s.left_stopped == ["off"] and s.already_running == ["up"]
    s.observe(DESIRED, w(db="running/starting", web="exited"), T0 + timedelta(seconds=1))
    assert not s.finished(T0 + timedelta(seconds=1), 300)
    s.observe(DESIRED, w(db="running/healthy", web="exited"), T0 + timedelta(seconds=3))
    assert not s.finished(T0 + timedelta(seconds=3), 300)
    assert s.finished(T0 + timedelta(seconds=301), 300)
    summary = s.summary(T0 + timedelta(seconds=301))
    assert summary["brought_back"] == [{"service": "db", "seconds": 3.0}]
    assert summary["failed"] == ["web"] and summary["left_stopped"] == ["off"]
    assert not s.finished(T0 + timedelta(seconds=400), 300)  # reported once


def test_session_finishes_when_all_are_back():
    s = RecoverySession.begin("host_reboot", T0, DESIRED, INTENTS, w(db="exited", web="exited", up="running"))
    s.observe(DESIRED, w(db="running", web="running", up="running"), T0 + timedelta(seconds=2))
    assert s.finished(T0 + timedelta(seconds=2), 300)
    summary = s.summary(T0 + timedelta(seconds=2))
    assert summary["duration_s"] == 2.0 and summary["failed"] == []
