"""A resync that skips the list call (issue 9's ``cached`` resync) must not leave a
crash unseen when the event stream goes silent.

The daemon talks to the real engine through :class:`engine_proxy.EngineProxy`
(a unix socket, so the engine counts as local and its resyncs may be cached). The
proxy then holds back everything the engine sends on the live event stream while
every other connection (the API, the liveness ping, the replay of recent events)
flows: the half-open stream of issue 8, which delivers nothing and never fails. A
container killed then must still be started again by a resync: the engine's replay
shows a ``die`` the stream never delivered, so the resync lists.
"""

from __future__ import annotations

import os
import signal

import pytest

from conftest import FAST_POLICY, wait_for, write_inventory, write_policy
from engine_proxy import EngineProxy, engine_socket


@pytest.fixture
def proxy():
    p = EngineProxy(engine_socket())
    yield p
    p.close()


def test_a_crash_the_silent_stream_never_reported_is_restarted_by_a_resync(tmp_path, containers,
                                                                           daemon_factory, proxy):
    containers.run("web", ["sleep", "3600"])
    name = containers.name("web")
    inv = write_inventory(tmp_path / "inv", [{"name": "web", "container": name}])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY), extra=["-v"],
                       env={"DOCKER_HOST": proxy.host}).start(resync=1)
    # The daemon runs cached resyncs (no list call) while the stream delivers.
    wait_for(lambda: d.log_text().count("pass kind=cached") >= 2, 20, what="two cached resyncs")
    assert proxy.streams >= 1
    proxy.hold_streams()
    n = len(d.events())
    pid = containers.state("web")["Pid"]
    os.kill(pid, signal.SIGKILL)  # from the host: the engine logs a die the stream holds back
    started = d.wait_event(lambda e: e["type"] == "action_started" and e["service"] == "web", timeout=30, after=n)
    assert started["action"] in ("start", "restart"), started
    wait_for(lambda: containers.state("web")["Running"] and containers.state("web")["Pid"] != pid, 20,
             what="web running again")
    assert "the event stream cannot be vouched for" in d.log_text()
