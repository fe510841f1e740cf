"""A tiny HTTP helper for API tests (standard library, real sockets)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(url: str, method: str = "GET", path: str = "/", *, token: str | None = None, host: str | None = None,
         headers: dict[str, str] | None = None, timeout: float = 30, stream: bool = False) -> Reply:
    """One request to ``url`` + ``path``; ``host`` overrides the Host header.
    With ``stream`` a 200 response's body is not read (an event stream never ends)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    try:
        conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        for k, v in h.items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if stream and r.status == 200:
            return Reply(r.status, hdrs, b"")
        return Reply(r.status, hdrs, r.read())
    finally:
        conn.close()


@dataclass
class SSEClient:
    """Reads ``/api/v1/events/stream`` on a thread; ``events`` gets
    ``(received_monotonic, id, type, data)`` as they arrive."""

    url: str
    token: str | None = None
    last_event_id: int | None = None
    events: list = field(default_factory=list)
    comments: list = field(default_factory=list)
    status: int | None = None
    headers: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._conn: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._open = threading.Event()

    def start(self) -> "SSEClient":
        self._thread.start()
        assert self._open.wait(10), "the SSE stream did not open"
        return self

    def _run(self) -> None:
        u = urlsplit(self.url)
        self._conn = http.client.HTTPConnection(u.hostname, u.port, timeout=None)
        h = {"Accept": "text/event-stream"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if self.last_event_id is not None:
            h["Last-Event-ID"] = str(self.last_event_id)
        try:
            self._conn.request("GET", "/api/v1/events/stream", headers=h)
            r = self._conn.getresponse()
            self.status, self.headers = r.status, {k.lower(): v for k, v in r.getheaders()}
            self._open.set()
            ev_id, ev_type, data = None, None, ""
            for raw in r:
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if data:
                        self.events.append((time.monotonic(), ev_id, ev_type, json.loads(data)))
                    ev_id, ev_type, data = None, None, ""
                elif line.startswith(":"):
                    self.comments.append(line)
                elif line.startswith("id:"):
                    ev_id = int(line[3:].strip())
                elif line.startswith("event:"):
                    ev_type = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
        except (OSError, http.client.HTTPException, AttributeError, ValueError):
            pass
        finally:
            self._open.set()

    def close(self) -> None:
        if self._conn is not None and self._conn.sock is not None:
            try:
                import socket

                self._conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._conn.close()
        self._thread.join(timeout=5)
