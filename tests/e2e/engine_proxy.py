"""A proxy in front of the engine's unix socket, for the faults a real stream sees.

:class:`EngineProxy` forwards every connection to the engine's socket. It can
cut all open connections at once while the engine stays up (a dropped event
stream, as a proxy or a network blip makes one: ``cut``), or hold back
everything the engine sends on the live event streams (``GET /events`` without
``until``) while every other request flows (a half-open stream that delivers
nothing and never fails: ``hold_streams``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import threading

import pytest

_REQUEST_LINE = re.compile(rb"GET (\S+) HTTP")


def engine_socket() -> str:
    """The local engine's socket path (``DOCKER_HOST``, else the default); fails the test otherwise."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.fail(f"the proxy needs a local engine socket, DOCKER_HOST is {host}")
    return host[len("unix://"):]


class EngineProxy:
    """A unix socket forwarding every connection to ``upstream`` (module docstring)."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.dir = tempfile.mkdtemp(prefix="dwproxy", dir="/tmp")  # short: unix socket paths max 107 bytes
        self.path = os.path.join(self.dir, "docker.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(64)
        self._open: set[socket.socket] = set()
        self._streams: set[socket.socket] = set()  # client sides that asked for the live event stream
        self._lock = threading.Lock()
        self._closed = False
        self.held = threading.Event()
        self._stream_count = 0
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    @property
    def streams(self) -> int:
        """Live event streams asked for through the proxy so far (still open or not)."""
        with self._lock:
            return self._stream_count

    def hold_streams(self) -> None:
        """From now on, drop what the engine sends on live event streams (nothing fails)."""
        self.held.set()

    def _accept(self) -> None:
        while not self._closed:
            try:
                down, _ = self.server.accept()
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                up.connect(self.upstream)
            except OSError:
                down.close()
                continue
            with self._lock:
                self._open |= {down, up}
                self.accepted += 1
            threading.Thread(target=self._pump, args=(down, up, down), daemon=True, name="proxy-up").start()
            threading.Thread(target=self._pump, args=(up, down, down), daemon=True, name="proxy-down").start()

    def _pump(self, src: socket.socket, dst: socket.socket, client: socket.socket) -> None:
        upward = src is client
        try:
            while data := src.recv(65536):
                if upward:
                    first = _REQUEST_LINE.match(data)
                    if first and b"/events" in first.group(1) and b"until=" not in first.group(1):
                        with self._lock:
                            self._streams.add(client)
                            self._stream_count += 1
                elif self.held.is_set() and client in self._streams:
                    continue  # the half-open stream: nothing arrives, nothing fails
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)  # half-close, as HTTP clients expect
        except OSError:
            self._drop(src, dst)  # cut, or the other side went away

    def _drop(self, *socks: socket.socket) -> None:
        with self._lock:
            for s in socks:
                if s in self._open:
                    self._open.discard(s)
                    with contextlib.suppress(OSError):  # already disconnected
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()

    def cut(self) -> int:
        """Cut every open connection (both sides); returns how many pairs were open."""
        with self._lock:
            socks = list(self._open)
        self._drop(*socks)
        return len(socks) // 2

    def close(self) -> None:
        self._closed = True
        self.server.close()
        self.cut()
        shutil.rmtree(self.dir, ignore_errors=True)
