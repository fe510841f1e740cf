"""sd_notify(3) client and the daemon's reporter (issue 12), over real unix
datagram sockets (a path and an abstract name); the node loops are stand-ins."""

from __future__ import annotations

import os
import socket
import uuid
from types import SimpleNamespace

import pytest

from dockwarden.sdnotify import SdNotify, SystemdReporter, socket_address, watchdog_interval_s


@pytest.fixture
def listener(tmp_path):
    """A bound datagram socket as systemd would hold it; yields (address, recv)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    s.bind(path)
    s.settimeout(0.2)

    def recv_all() -> list[dict[str, str]]:
        out = []
        while True:
            try:
                data = s.recv(4096)
            except socket.timeout:
                return out
            out.append(dict(line.split("=", 1) for line in data.decode().splitlines()))

    yield path, recv_all
    s.close()


def test_socket_address_path_and_abstract():
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@dw-x") == b"\0dw-x"
    with pytest.raises(ValueError):
        socket_address("relative/path")
    with pytest.raises(ValueError):
        socket_address("@")


def test_watchdog_interval_is_half_and_respects_pid():
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000"}, 42) == 1.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "42"}, 42) == 1.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "x"}, 42) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval_s({}, 42) is None


def test_abstract_namespace_socket_receives():
    name = f"dw-test-{uuid.uuid4().hex[:8]}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(b"\0" + name.encode())
    s.settimeout(1)
    try:
        n = SdNotify("@" + name)
        assert n.send(READY=1, STATUS="a\nb")
        assert s.recv(4096) == b"READY=1\nSTATUS=a b"
        n.close()
    finally:
        s.close()


def test_off_without_socket_and_survives_a_gone_socket(tmp_path):
    assert not SdNotify(None).send(READY=1)
    n = SdNotify(str(tmp_path / "nobody-listens"))
    assert n.enabled and not n.send(WATCHDOG=1)  # logged, never raised


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _loop(clock: Clock, *, ready: bool = True, state: str = "online", summary: str = "nominal"):
    return SimpleNamespace(ready=ready, health=SimpleNamespace(state=SimpleNamespace(value=state)),
                           last_pass_monotonic=clock.t, heartbeat_monotonic=clock.t,
                           status_doc={"summary": summary, "services": [1, 2], "findings": []})


def test_reporter_ready_status_watchdog_and_wedge(listener):
    path, recv = listener
    clock = Clock()
    rep = SystemdReporter(SdNotify(path), resync_s=2.0, watchdog_s=1.0, clock=clock)
    a = _loop(clock, ready=False)
    loops = {"a": a}
    rep.tick(loops)
    got = recv()
    assert got == [{"STATUS": "nominal: 2 services, 0 findings"}, {"WATCHDOG": "1"}]  # pings before READY too
    a.ready = True
    clock.t += 0.5
    rep.tick(loops)
    assert recv() == [{"READY": "1", "STATUS": "nominal: 2 services, 0 findings"}]  # not yet due for a ping
    for _ in range(4):
        clock.t += 1.0
        a.heartbeat_monotonic = clock.t
        rep.tick(loops)
    assert recv() == [{"WATCHDOG": "1"}] * 4
    # The loop stops going round: pings go on until 3 resyncs (6 s) have passed, then stop.
    wedged_at = clock.t
    for _ in range(10):
        clock.t += 1.0
        rep.tick(loops)
    pings = recv()
    assert pings == [{"WATCHDOG": "1"}] * 6, (clock.t - wedged_at, pings)
    a.heartbeat_monotonic = clock.t  # it goes round again
    rep.tick(loops)
    assert recv() == [{"WATCHDOG": "1"}]
    a.status_doc = {"summary": "degraded", "services": [1, 2], "findings": [1]}
    clock.t += 0.1
    rep.tick(loops)
    assert recv() == [{"STATUS": "degraded: 2 services, 1 findings"}]
    rep.stopping()
    assert recv() == [{"STOPPING": "1", "STATUS": "stopping"}]


def test_reporter_ready_with_an_offline_node(listener):
    path, recv = listener
    clock = Clock()
    rep = SystemdReporter(SdNotify(path), resync_s=30.0, watchdog_s=None, clock=clock)
    loops = {"a": _loop(clock), "b": _loop(clock, ready=False, state="offline")}
    rep.tick(loops)
    got = recv()
    assert got[0]["READY"] == "1"
    assert got[0]["STATUS"] == "a nominal (2 services, 0 findings); b offline (2 services, 0 findings)"
    assert rep.tick_s(1.0) == 1.0


def test_from_env_removes_the_variables_from_the_environment(monkeypatch, listener):
    path, recv = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    rep = SystemdReporter.from_env(resync_s=1.0)
    assert rep.notify.enabled and rep.watchdog_s == 0.5 and rep.tick_s(1.0) == 0.5
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ
