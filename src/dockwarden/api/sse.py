"""``GET /api/v1/events/stream``: the event log as Server-Sent Events.

The stream reads the SQLite ``events`` table by id (its own read-only
connection), so a client that reconnects with ``Last-Event-ID`` gets every
event after the last one it saw, none twice and none lost: ids are assigned
in commit order (one writer at a time, autocommit inserts).

Each event is sent as (WHATWG HTML, "Server-sent events")::

    id: <events.id>
    event: <type>
    data: <the events.jsonl object, one line of JSON>

The daemon's event log wakes the streams as it records (:class:`EventBus`:
delivery within milliseconds); a one-second poll also picks up events other
processes (CLI commands) recorded. A comment line is sent on connect and
every ``keepalive_s`` (proxies close idle connections). Responses carry
``Cache-Control: no-cache`` and ``X-Accel-Buffering: no`` (nginx would buffer
otherwise; Dozzle does the same). A client that stops reading is dropped once
one write has waited ``write_deadline_s``, and a client that disconnects is
noticed at once (``http.disconnect``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator

from starlette.responses import Response

from dockwarden.db import SMALL_CACHE_PRAGMA

#: Seconds between keep-alive comments (Dozzle and most proxies: under 30-60 s).
KEEPALIVE_S = 15.0
#: A write that has not completed after this many seconds drops the client.
WRITE_DEADLINE_S = 10.0
#: Seconds between polls of the table when nothing woke the stream.
POLL_S = 1.0
#: Events sent per read of the table.
BATCH = 500
#: The reconnection delay suggested to clients (``retry:``), milliseconds.
RETRY_MS = 2000

log = logging.getLogger(__name__)


class EventBus:
    """Wakes the SSE streams (on uvicorn's event loop) when the daemon records
    an event. :meth:`notify` is an ``EventLog`` subscriber (any thread)."""

    def __init__(self) -> None:
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()

    def notify(self, _event: Any = None) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, ev in waiters:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # that loop is closed: the server stopped
                log.debug("SSE: a waiter's loop is closed (the server stopped)")

    def register(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        w = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(w)
        return w

    def unregister(self, w: tuple[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
        with self._lock:
            self._waiters.discard(w)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._waiters)


class EventReader:
    """Reads the events table through its own read-only connection.

    Args:
        db_path: ``<state-dir>/dockwarden.db``.
    """

    def __init__(self, db_path: Path):
        self.db_path = Path(db_path)
        self._db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, check_same_thread=False, timeout=5)
        self._db.row_factory = sqlite3.Row
        self._db.execute(SMALL_CACHE_PRAGMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def after(self, after_id: int, *, types: tuple[str, ...] = (), service: str | None = None,
              since: str | None = None, limit: int = BATCH) -> list[dict[str, Any]]:
        """Events with ``id > after_id``, oldest first, at most ``limit``.

        Args:
            after_id: the last id the reader has.
            types: only these types (empty: all).
            service: only this service.
            since: only events at or after this RFC 3339 UTC time.
        Returns:
            list[dict]: the events.jsonl shape plus ``id``; ``details`` parsed.
        """
        clauses, params = _filters(types, service, since)
        clauses.insert(0, "id > ?")
        params.insert(0, int(after_id))
        params.append(int(limit))
        sql = "SELECT * FROM events WHERE " + " AND ".join(clauses) + " ORDER BY id LIMIT ?"
        return self._rows(sql, params)

    def newest(self, *, types: tuple[str, ...] = (), service: str | None = None, since: str | None = None,
               limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` matching events, oldest first."""
        clauses, params = _filters(types, service, since)
        clauses.insert(0, "1")
        params.append(int(limit))
        sql = ("SELECT * FROM (SELECT * FROM events WHERE " + " AND ".join(clauses)
               + " ORDER BY id DESC LIMIT ?) ORDER BY id")
        return self._rows(sql, params)

    def _rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        """Run one query; rows as dicts with ``details`` parsed (``{}`` when unreadable)."""
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            try:
                d["details"] = json.loads(d["details"] or "{}")
            except ValueError:
                d["details"] = {}
            out.append(d)
        return out

    def last_id(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(id) FROM events").fetchone()
        return int(row[0] or 0)


def format_event(row: dict[str, Any]) -> bytes:
    """One SSE message: ``id``, ``event`` and one ``data`` line (JSON has no raw
    newlines, so one line always suffices)."""
    ev_id = row.pop("id")
    data = json.dumps(row, default=str, separators=(",", ":"))
    return f"id: {ev_id}\nevent: {row.get('type', 'message')}\ndata: {data}\n\n".encode()


async def event_stream(reader: EventReader, bus: EventBus, *, after_id: int, types: tuple[str, ...] = (),
                       service: str | None = None, keepalive_s: float = KEEPALIVE_S,
                       poll_s: float = POLL_S, disconnected: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """The SSE byte stream from ``after_id`` on, until the client goes.

    Yields:
        bytes: ``retry:`` and a comment first, then events and keep-alive comments.
    """
    waiter = bus.register()
    try:
        yield f"retry: {RETRY_MS}\n: dockwarden events from id {after_id}\n\n".encode()
        last_sent = time.monotonic()
        while disconnected is None or not disconnected.is_set():
            rows = reader.after(after_id, types=(), service=None)
            if rows:
                after_id = int(rows[-1]["id"])
                chunk = b"".join(format_event(r) for r in rows
                                 if (not types or r["type"] in types) and (service is None or r["service"] == service))
                if chunk:
                    yield chunk
                    last_sent = time.monotonic()
                if len(rows) >= BATCH:
                    continue  # more waiting: no sleep
            if time.monotonic() - last_sent >= keepalive_s:
                yield b": keep-alive\n\n"
                last_sent = time.monotonic()
            ev = waiter[1]
            # Woken by a new event, or by the timeout (then: poll, maybe a keep-alive).
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ev.wait(), timeout=min(poll_s, keepalive_s))
            ev.clear()
    finally:
        bus.unregister(waiter)


class SSEResponse(Response):
    """A raw ASGI response for an SSE stream with a write deadline and
    disconnect detection (Starlette's ``StreamingResponse`` has neither a
    deadline nor a way to stop a generator that waits).

    Args:
        make_stream: called with the ``disconnected`` event; returns the byte stream.
        write_deadline_s: drop the client when one write takes longer, seconds.
    """

    media_type = "text/event-stream"

    def __init__(self, make_stream, *, headers: dict[str, str] | None = None,
                 write_deadline_s: float = WRITE_DEADLINE_S):
        super().__init__(content=b"", media_type=self.media_type)
        self.make_stream = make_stream
        self.extra_headers = headers or {}
        self.write_deadline_s = write_deadline_s

    async def __call__(self, scope, receive, send) -> None:
        disconnected = asyncio.Event()

        async def watch() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    disconnected.set()
                    return

        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                   (b"x-accel-buffering", b"no")]
        headers += [(k.lower().encode(), v.encode()) for k, v in self.extra_headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        watcher = asyncio.create_task(watch())
        stream = self.make_stream(disconnected)
        try:
            async for chunk in stream:
                if disconnected.is_set():
                    break
                await asyncio.wait_for(send({"type": "http.response.body", "body": chunk, "more_body": True}),
                                       timeout=self.write_deadline_s)
        except (asyncio.TimeoutError, OSError):
            pass  # a dead or stuck client: dropped
        finally:
            watcher.cancel()
            await stream.aclose()
        if not disconnected.is_set():
            try:
                await asyncio.wait_for(send({"type": "http.response.body", "body": b"", "more_body": False}),
                                       timeout=1.0)
            except (asyncio.TimeoutError, OSError) as e:  # the client is gone: nothing to end
                log.debug("SSE: cannot end the response: %s", type(e).__name__)


def _filters(types: tuple[str, ...], service: str | None, since: str | None) -> tuple[list[str], list[Any]]:
    """WHERE clauses (placeholders only, never values) and their parameters for
    the event filters shared by :meth:`EventReader.after` and :meth:`EventReader.newest`."""
    clauses: list[str] = []
    params: list[Any] = []
    if types:
        clauses.append("type IN (" + ",".join("?" for _ in types) + ")")
        params.extend(types)
    if service is not None:
        clauses.append("service = ?")
        params.append(service)
    if since is not None:
        clauses.append("ts >= ?")
        params.append(since)
    return clauses, params
