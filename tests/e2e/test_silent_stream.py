"""A resync that skips the list call (issue 9's ``cached`` resync) must not leave a
crash unseen when the event stream goes silent.

The daemon talks to the real engine through a TCP proxy on 127.0.0.1 (a loopback
engine counts as local, so its resyncs may be cached). The proxy can hold back
everything the engine sends on the live event stream (``GET /events`` without
``until``) while every other connection (the API, the liveness ping, the replay
of recent events) flows: the half-open stream of issue 8, which delivers nothing
and never fails. A container killed then must still be started again by a resync:
the engine's replay shows a ``die`` the stream never delivered, so the resync lists.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading

import pytest

from conftest import FAST_POLICY, wait_for, write_inventory, write_policy

DOCKER_SOCK = "/var/run/docker.sock"


class StreamHoldingProxy:
    """127.0.0.1:<port> -> the engine's unix socket, one pair of pump threads per
    connection. ``hold()``: bytes from the engine on connections that asked for
    the live event stream are read and dropped from then on."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.held = threading.Event()
        self.streams = 0  # live event streams asked for
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX)
            engine.connect(DOCKER_SOCK)
            is_stream = threading.Event()
            threading.Thread(target=self._up, args=(client, engine, is_stream), daemon=True).start()
            threading.Thread(target=self._down, args=(engine, client, is_stream), daemon=True).start()

    def _up(self, src: socket.socket, dst: socket.socket, is_stream: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                first = re.match(rb"GET (\S+) HTTP", data)
                if first and b"/events" in first.group(1) and b"until=" not in first.group(1):
                    is_stream.set()
                    self.streams += 1
                dst.sendall(data)
        except OSError:
            return  # either side closed: the pair ends (finally closes the other)
        finally:
            dst.close()

    def _down(self, src: socket.socket, dst: socket.socket, is_stream: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                if is_stream.is_set() and self.held.is_set():
                    continue  # the half-open stream: nothing arrives, nothing fails
                dst.sendall(data)
        except OSError:
            return  # either side closed: the pair ends (finally closes the other)
        finally:
            dst.close()

    def close(self) -> None:
        self._closing = True
        self.listener.close()


@pytest.fixture
def proxy():
    p = StreamHoldingProxy()
    yield p
    p.close()


def test_a_crash_the_silent_stream_never_reported_is_restarted_by_a_resync(tmp_path, containers,
                                                                           daemon_factory, proxy):
    containers.run("web", ["sleep", "3600"])
    name = containers.name("web")
    inv = write_inventory(tmp_path / "inv", [{"name": "web", "container": name}])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY), extra=["-v"],
                       env={"DOCKER_HOST": f"tcp://127.0.0.1:{proxy.port}"}).start(resync=1)
    # The daemon runs cached resyncs (no list call) while the stream delivers.
    wait_for(lambda: d.log_text().count("pass kind=cached") >= 2, 20, what="two cached resyncs")
    assert proxy.streams >= 1
    proxy.held.set()
    n = len(d.events())
    pid = containers.state("web")["Pid"]
    os.kill(pid, signal.SIGKILL)  # from the host: the engine logs a die the stream holds back
    started = d.wait_event(lambda e: e["type"] == "action_started" and e["service"] == "web", timeout=30, after=n)
    assert started["action"] in ("start", "restart"), started
    wait_for(lambda: containers.state("web")["Running"] and containers.state("web")["Pid"] != pid, 20,
             what="web running again")
    assert "the event stream cannot be vouched for" in d.log_text()
