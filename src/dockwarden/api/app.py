"""The FastAPI application: JSON API, SSE, /metrics, /healthz, /readyz and the dashboard.

Reads come from the latest :class:`~dockwarden.api.snapshot.Snapshot` (swapped
in by each pass) or from the database through the API's own connections, on the server's event
loop (``async def``: memory or sub-millisecond indexed SQLite reads, so no
thread is needed). No handler calls the engine except the writes, which run
in FastAPI's worker threads (plain ``def`` handlers) through
:mod:`dockwarden.operator`, the same action protocol as the CLI, with
``ActionBy.API``. The reconcile loop never waits for a request.

Status codes: 401 no or unknown token (``WWW-Authenticate: Bearer``), 403 a
read token on a write, 421 a foreign ``Host`` on a loopback listener, 404
unknown service/incident, 409 an incident not open, 422 bad parameters, 502 an
action the engine refused (the body carries the action record), 503 no pass
yet / engine unreachable / loop stale (``/healthz``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable

from fastapi import Depends, FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware

from dockwarden.api.auth import READ, WRITE, Guard
from dockwarden.api.metrics import ApiMetrics
from dockwarden.api.snapshot import SampleRing, Snapshot, SnapshotHolder
from dockwarden.api.sse import EventBus, EventReader, SSEResponse, event_stream
from dockwarden.config import Policy
from dockwarden.model import ActionBy, DesiredState, Event, parse_time, rfc3339

STATIC = Path(__file__).parent / "static"
#: /healthz turns 503 when the last pass (or the loop's heartbeat) is older
#: than this many resync intervals (issue 10).
STALE_RESYNCS = 3.0
MAX_ID = 2**63 - 1
#: Security headers of every response (the dashboard loads only its own files).
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
}


@dataclass
class ApiContext:
    """Everything the app reads or calls.

    Attributes:
        guard: tokens, scopes, Host check.
        snapshots: the latest snapshot.
        samples: per-service CPU/memory samples for sparklines.
        metrics: the Prometheus metrics.
        bus: wakes SSE streams.
        events: the event reader (own read-only connection).
        reads: the API's own database handles (:class:`~dockwarden.api.server.Reads`).
        node: this node's name.
        resync_s: the daemon's resync interval, seconds.
        heartbeat: ``time.monotonic()`` of the loop's last round.
        ready: True once ``daemon_ready`` was emitted.
        policy: the policy in force.
        desired: the inventory's desired state in force.
        emit: records an event (the daemon's ``EventLog.send``).
        docker_client: returns a docker client (made on first use) for writes.
        world: the daemon's last observed world state (pause/resume resolve from it), or None.
        cors_origins: origins allowed by CORS (empty: no CORS).
        other_nodes: the other nodes' status documents (a daemon of several nodes).
    """

    guard: Guard
    snapshots: SnapshotHolder
    samples: SampleRing
    metrics: ApiMetrics
    bus: EventBus
    events: EventReader
    reads: Any
    node: str
    resync_s: float
    heartbeat: Callable[[], float]
    ready: Callable[[], bool]
    policy: Callable[[], Policy]
    desired: Callable[[], DesiredState]
    emit: Callable[[Event], Any]
    docker_client: Callable[[], Any]
    world: Callable[[], Any] = lambda: None
    cors_origins: tuple[str, ...] = ()
    other_nodes: Callable[[], list[dict[str, Any]]] = lambda: []
    write_lock: threading.Lock = field(default_factory=threading.Lock)


class Verb(str, Enum):
    stop = "stop"
    start = "start"
    pause = "pause"
    resume = "resume"


def _json(obj: Any, status: int = 200) -> Response:
    """A JSON response serialised with ``json.dumps`` (FastAPI's encoder walks
    every value first, several times slower for an events page)."""
    return Response(json.dumps(obj, default=str, separators=(",", ":")).encode(), status_code=status,
                    media_type="application/json")


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail=detail, headers=headers)


#: Requests per second the API serves sustained before it paces clients, and the
#: burst it allows. A client faster than this gets its responses later
#: (``asyncio.sleep``: the GIL is free meanwhile), so it cannot slow the
#: reconcile loop: measured by ``bench/mttr.py --hammer 1``, crash-to-running p50
#: rose ~80 ms at 100/s and was unchanged at 20/s. Prometheus, a CLI and a few
#: dashboards need a handful per second; a page load fits in the burst.
PACE_RATE_PER_S = 20.0
PACE_BURST = 100.0
#: The longest a request is held back, seconds (then it is served anyway).
PACE_MAX_WAIT_S = 5.0


class Pacer:
    """A token bucket over all requests (one event loop: no lock needed)."""

    def __init__(self, rate_per_s: float = PACE_RATE_PER_S, burst: float = PACE_BURST):
        self.rate, self.burst = rate_per_s, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def delay_s(self) -> float:
        """Take one token; return how long the caller must wait for it, seconds."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else min(PACE_MAX_WAIT_S, -self.tokens / self.rate)


class HostGuard:
    """Pure ASGI middleware: refuse a foreign ``Host`` (421) on a loopback
    listener, pace clients (:class:`Pacer`), and add the security headers (and ``Cache-Control: no-store`` on
    ``/api/``) to every response. Pure ASGI, so streams pass through untouched."""

    def __init__(self, app: Any, guard: Guard, pacer: Pacer | None = None):
        self.app = app
        self.guard = guard
        self.pacer = pacer or Pacer()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        if not self.guard.host_ok(host):
            await JSONResponse({"detail": "Host header not allowed on this listener (DNS rebinding guard); use "
                                          "localhost, 127.0.0.1 or [::1] with the port, or [api] allowed_hosts"},
                               status_code=421)(scope, receive, send)
            return
        wait = self.pacer.delay_s()
        if wait > 0:
            await asyncio.sleep(wait)
        api = scope["path"].startswith("/api/")

        async def send_with_headers(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                h = MutableHeaders(scope=msg)
                for k, v in SECURITY_HEADERS.items():
                    h.setdefault(k, v)
                if api:
                    h.setdefault("cache-control", "no-store")
            await send(msg)

        await self.app(scope, receive, send_with_headers)


def create_app(ctx: ApiContext) -> FastAPI:
    """Build the app for one daemon (no globals: tests build as many as they like)."""
    app = FastAPI(title="dockwarden", version=_version(), openapi_url=None, docs_url=None,
                  redoc_url=None, description="Supervisor of one Docker host: state, drift, incidents, events; "
                                              "stop/start/pause/resume and incident ack through the action protocol.")
    guard = ctx.guard

    app.add_middleware(HostGuard, guard=guard)

    if ctx.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(ctx.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Last-Event-ID"], allow_credentials=False)

    async def need_read(request: Request) -> str:
        header = request.headers.get("authorization")
        scope = guard.scope_of(header)
        if scope is None and (header or not guard.reads_open()):
            raise _problem(401, "a bearer token is required (Authorization: Bearer <token>)",
                           {"WWW-Authenticate": 'Bearer realm="dockwarden"'})
        return scope or READ

    async def need_write(request: Request) -> str:
        scope = guard.scope_of(request.headers.get("authorization"))
        if scope is None:
            raise _problem(401, "writes need the write token (Authorization: Bearer <token from "
                                "<state-dir>/api-token>)", {"WWW-Authenticate": 'Bearer realm="dockwarden"'})
        if scope != WRITE:
            raise _problem(403, "this token may only read")
        return scope

    def snap() -> Snapshot:
        s = ctx.snapshots.get()
        if s is None:
            raise _problem(503, "no reconcile pass yet; try again in a moment")
        return s

    # ------------------------------------------------------------------ health

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        """200 while passes run on schedule; 503 when the last pass is older than
        3 resync intervals or the loop has not gone round for that long (wedged)."""
        now = time.monotonic()
        s = ctx.snapshots.get()
        limit = STALE_RESYNCS * ctx.resync_s
        hb_age = now - ctx.heartbeat()
        pass_age = (now - s.published_mono) if s else None
        problems = []
        if hb_age > limit:
            problems.append(f"the reconcile loop has not gone round for {hb_age:.1f} s (wedged)")
        if pass_age is None:
            problems.append("no pass yet")
        elif pass_age > limit:
            problems.append(f"the last pass was {pass_age:.1f} s ago")
        body = {"ok": not problems, "problems": problems, "heartbeat_age_s": round(hb_age, 3),
                "last_pass_age_s": None if pass_age is None else round(pass_age, 3), "limit_s": limit}
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """200 once the first pass completed (``daemon_ready``), else 503."""
        ready = bool(ctx.ready())
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    # ------------------------------------------------------------------ reads

    @app.get("/api/v1/status", tags=["read"], dependencies=[Depends(need_read)])
    async def status() -> Response:
        """Summary, node, observed_at, host and every tracked service (the
        document ``dockwarden status --json`` prints)."""
        return Response(snap().status_json, media_type="application/json")

    @app.get("/api/v1/nodes", tags=["read"], dependencies=[Depends(need_read)])
    async def nodes() -> Response:
        """Every node this daemon supervises: the fleet summary (the worst node's)
        and each node's status document (the first one is ``/api/v1/status``)."""
        docs = [snap().status, *ctx.other_nodes()]
        order = {"nominal": 0, "reconciling": 1, "degraded": 2, "unknown": 3, "unstable": 4}
        worst = max((d["summary"] for d in docs), key=lambda x: order.get(x, 3))
        return _json({"summary": worst, "nodes": docs})

    @app.get("/api/v1/services", tags=["read"], dependencies=[Depends(need_read)])
    async def services() -> Response:
        """The tracked services (as in status)."""
        s = snap()
        return _json({"node": s.status["node"], "services": s.status["services"]})

    @app.get("/api/v1/services/{name}", tags=["read"], dependencies=[Depends(need_read)])
    async def service(name: str = PathParam(max_length=256)) -> Response:
        """One service, with its current findings and last hour of samples."""
        s = snap()
        sv = s.services_by_name.get(name)
        if sv is None:
            raise _problem(404, f"unknown service {name!r}")
        return _json({**sv, "findings": [f for f in s.status["findings"] if f["subject"] == name],
                      "samples": ctx.samples.get().get(name, [])})

    @app.get("/api/v1/drift", tags=["read"], dependencies=[Depends(need_read)])
    async def drift() -> Response:
        """Current drift (findings, worst first) and recommendations."""
        return _json(snap().drift())

    @app.get("/api/v1/incidents", tags=["read"], dependencies=[Depends(need_read)])
    async def incidents(all: bool = Query(False, description="Include resolved incidents."),  # noqa: A002
                  limit: int = Query(200, ge=1, le=1000)) -> Response:
        """Open and acknowledged incidents, newest first (``all``: resolved too)."""
        return _json({"incidents": [i.to_dict() for i in ctx.reads.incidents(include_resolved=all, limit=limit)]})

    @app.get("/api/v1/storage", tags=["read"], dependencies=[Depends(need_read)])
    async def storage() -> Response:
        """The storage breakdown (bytes) and disk trend with its ETA, from the
        storage worker's last sample."""
        doc = snap().storage
        if doc is None:
            return _json({"available": False,
                          "reason": "no storage sample yet (the storage worker samples every 300 s)"})
        return _json({"available": True, **doc})

    @app.get("/api/v1/pool", tags=["read"], dependencies=[Depends(need_read)])
    async def pool() -> Response:
        """The container pool: its figures and containers (``configured`` false without ``[pool].image``)."""
        return _json(ctx.reads.pool(ctx.policy()))

    @app.get("/api/v1/samples", tags=["read"], dependencies=[Depends(need_read)])
    async def samples(window_s: float = Query(3600.0, gt=0, le=3600.0)) -> Response:
        """Per-service ``[unix_ts, cpu_percent, memory_bytes]`` of the last hour (sparklines)."""
        return _json({"window_s": window_s, "samples": ctx.samples.get(window_s)})

    @app.get("/api/v1/events", tags=["read"], dependencies=[Depends(need_read)])
    async def events(after: int | None = Query(None, ge=0, le=MAX_ID, description="Cursor: events with a larger id."),
               since: str | None = Query(None, max_length=64, description="RFC 3339 time."),
               type: str | None = Query(None, max_length=1000, description="Comma-separated event types."),  # noqa: A002
               service: str | None = Query(None, max_length=256),
               limit: int = Query(100, ge=1, le=1000)) -> Response:
        """Events, oldest first. Without ``after``: the newest ``limit``. Page with
        ``after=<next_after>`` until ``events`` is empty."""
        ts = None
        if since is not None:
            t = parse_time(since)
            if t is None:
                raise _problem(422, f"since: expected an RFC 3339 time, got {since!r}")
            ts = rfc3339(t)
        types = tuple(x.strip() for x in type.split(",") if x.strip()) if type else ()
        if after is None:
            rows = ctx.events.newest(types=types, service=service, since=ts, limit=limit)
        else:
            rows = ctx.events.after(after, types=types, service=service, since=ts, limit=limit)
        nxt = rows[-1]["id"] if rows else (after if after is not None else ctx.events.last_id())
        return _json({"events": rows, "next_after": nxt})

    @app.get("/api/v1/events/stream", tags=["read"], dependencies=[Depends(need_read)],
             responses={200: {"content": {"text/event-stream": {}}}})
    async def stream(request: Request, after: int | None = Query(None, ge=0, le=MAX_ID),
                     type: str | None = Query(None, max_length=1000),  # noqa: A002
                     service: str | None = Query(None, max_length=256)):
        """Server-Sent Events: ``id``, ``event``, ``data``; resumes after
        ``Last-Event-ID`` (or ``after``); keep-alive comments; from now on when neither is given."""
        last = request.headers.get("last-event-id")
        start = after
        if last is not None:
            if not last.strip().isdigit() or int(last) > MAX_ID:
                raise _problem(422, "Last-Event-ID: expected an event id (digits)")
            start = int(last)
        if start is None:
            start = ctx.events.last_id()
        types = tuple(x.strip() for x in type.split(",") if x.strip()) if type else ()
        return SSEResponse(lambda disconnected: event_stream(ctx.events, ctx.bus, after_id=start, types=types,
                                                             service=service, disconnected=disconnected),
                           headers={})

    @app.get("/metrics", tags=["read"], dependencies=[Depends(need_read)])
    async def metrics() -> Response:
        """Prometheus text format (version 0.0.4)."""
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/api/v1/openapi.json", include_in_schema=False, dependencies=[Depends(need_read)])
    async def openapi() -> JSONResponse:
        """The OpenAPI document (a read like any other)."""
        return JSONResponse(app.openapi())

    # ------------------------------------------------------------------ writes

    @app.post("/api/v1/services/{name}/{verb}", tags=["write"], dependencies=[Depends(need_write)])
    def operate(verb: Verb, name: str = PathParam(max_length=256)) -> JSONResponse:
        """stop | start | pause | resume, as the CLI commands, through the same
        action protocol (recorded first, ``by: api``). The body carries the action record."""
        from dockwarden.observe.docker import ENGINE_ERRORS
        from dockwarden.operator import (OperatorError, load_context, pause_service, resume_service, start_service,
                                         stop_service)

        fn = {Verb.stop: stop_service, Verb.start: start_service, Verb.pause: pause_service,
              Verb.resume: resume_service}[verb]
        try:
            with ctx.write_lock:  # one operator command at a time, like one person at a shell
                guard_only = verb in (Verb.pause, Verb.resume)
                world = ctx.world() if guard_only else None  # the guard alone needs no fresh observation
                octx = load_context(policy=ctx.policy(), desired=ctx.desired(), name=name, store=ctx.reads.store,
                                    emit=ctx.emit, client=None if world is not None else ctx.docker_client(),
                                    by=ActionBy.API, world=world)
                res = fn(octx)
        except OperatorError as e:
            raise _problem(404 if e.code == 2 else 503, str(e))
        except ENGINE_ERRORS as e:
            raise _problem(503, f"Docker engine unreachable: {e}")
        return JSONResponse(res.to_json(), status_code=200 if res.ok else 502)

    @app.post("/api/v1/incidents/{incident_id}/ack", tags=["write"], dependencies=[Depends(need_write)])
    def ack(incident_id: int = PathParam(ge=1, le=MAX_ID)) -> Response:
        """Acknowledge an open incident (no more reminders; it still resolves by itself)."""
        from dockwarden.incidents import IncidentError
        from dockwarden.operator import ack_incident

        try:
            inc = ack_incident(ctx.reads.book, ctx.emit, incident_id, by=ActionBy.API)
        except IncidentError as e:
            raise _problem(404 if "no incident" in str(e) else 409, str(e))
        return _json({"ok": True, "incident": inc.to_dict()})

    # ------------------------------------------------------------------ dashboard

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response((STATIC / "index.html").read_bytes(), media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        types = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
        if name not in types:
            raise _problem(404, "not found")
        return Response((STATIC / name).read_bytes(), media_type=types[name],
                        headers={"cache-control": "no-cache"})

    return app


def _version() -> str:
    from dockwarden import __version__

    return __version__
