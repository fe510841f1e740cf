"""A small HTTP client of the API for the CLI (``--url``/``--token``): standard
library only (``http.client``), over TCP or a unix socket (``unix:/path``).

Errors are :class:`ApiError` with the HTTP status (0: no connection) and the
server's ``detail``; the token is sent only in the ``Authorization`` header
and never appears in an error message.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlencode, urlsplit


class ApiError(Exception):
    """A request failed: ``status`` is the HTTP status, 0 when nothing answered."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


@dataclass
class ApiClient:
    """Talks to one daemon.

    Args:
        url: ``http://HOST:PORT`` (a path prefix is kept) or ``unix:/path``.
        token: a bearer token, or None.
        timeout_s: per request, seconds.
    """

    url: str
    token: str | None = None
    timeout_s: float = 30.0

    def _conn(self, timeout: float | None = None) -> tuple[http.client.HTTPConnection, str]:
        t = self.timeout_s if timeout is None else timeout
        if self.url.startswith("unix:"):
            return _UnixConnection(self.url[len("unix:"):], t), ""
        u = urlsplit(self.url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ApiError(0, f"--url: expected http://HOST:PORT or unix:/path, got {self.url!r}")
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        return cls(u.hostname, u.port, timeout=t), u.path.rstrip("/")

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Accept": "application/json", **(extra or {})}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                timeout: float | None = None) -> Any:
        """One request; returns the decoded JSON body.

        Raises:
            ApiError: no answer (status 0) or a status >= 400 (except 502 from a
                write, whose body carries the failed action: returned as is).
        """
        conn, prefix = self._conn(timeout)
        q = {k: v for k, v in (params or {}).items() if v is not None}
        target = prefix + path + (("?" + urlencode(q)) if q else "")
        try:
            conn.request(method, target, headers=self._headers())
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise ApiError(0, f"{self.url} did not answer: {e}") from e
        finally:
            conn.close()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        if resp.status >= 400 and not (resp.status == 502 and isinstance(data, dict) and "ok" in data):
            detail = data.get("detail") if isinstance(data, dict) else body[:200].decode("utf-8", "replace")
            raise ApiError(resp.status, f"{self.url}{path}: HTTP {resp.status}: {detail}")
        return data

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params)

    def post(self, path: str) -> Any:
        return self.request("POST", path)

    def stream(self, path: str, after: int | None = None) -> Iterator[tuple[int, str, dict]]:
        """Follow ``/api/v1/events/stream``: yields ``(id, type, event)``.

        Raises:
            ApiError: the stream could not be opened.
        """
        conn, prefix = self._conn(timeout=None)
        conn.timeout = None
        q = f"?after={after}" if after is not None else ""
        try:
            conn.request("GET", prefix + path + q, headers=self._headers({"Accept": "text/event-stream"}))
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            raise ApiError(0, f"{self.url} did not answer: {e}") from e
        if resp.status != 200:
            raise ApiError(resp.status, f"{self.url}{path}: HTTP {resp.status}")
        ev_id, ev_type, data = 0, "", ""
        for raw in resp:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                if data:
                    yield ev_id, ev_type, json.loads(data)
                ev_id, ev_type, data = 0, "", ""
            elif line.startswith("id:"):
                ev_id = int(line[3:].strip() or 0)
            elif line.startswith("event:"):
                ev_type = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
