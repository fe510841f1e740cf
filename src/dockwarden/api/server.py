"""Serving the API from the daemon: uvicorn in a daemon thread, and the handle
the reconcile loop talks to.

:func:`start_api` binds the listener (``HOST:PORT`` or ``unix:/path``; ``none``
gives :data:`NO_API`), writes ``<state-dir>/api-token`` (first start) and
``<state-dir>/api.json`` (the address, 0600, for local CLI commands), and
starts uvicorn on its own thread and event loop. The loop calls only
:meth:`ApiHandle.beat` (each round) and :meth:`ApiHandle.publish` (after each
pass, O(services)); neither waits for the HTTP side.

Test-only: when the environment variable ``DOCKWARDEN_TEST_WEDGE_FILE`` names a
file that exists, :meth:`ApiHandle.beat` sleeps until it is gone, wedging the
reconcile loop (the HTTP thread goes on) so tests can see ``/healthz`` turn 503.
Never set it in production.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from dockwarden import jsonfile
from dockwarden.api.auth import Guard, ensure_write_token, read_token_file
from dockwarden.api.metrics import ApiMetrics
from dockwarden.api.snapshot import SampleRing, Snapshot, SnapshotHolder, storage_document
from dockwarden.api.sse import EventBus, EventReader
from dockwarden.config import ConfigError, Policy, Settings
from dockwarden.config_api import ListenAddress, parse_listen
from dockwarden.incidents import IncidentBook
from dockwarden.model import DesiredState, Event, EventType, rfc3339, utcnow
from dockwarden.sinks.events import EventLog
from dockwarden.sinks.notify import Outbox
from dockwarden.store import Store

log = logging.getLogger(__name__)

#: The address file in the state dir, read by local CLI commands.
ADDRESS_FILE = "api.json"
#: The interpreter's thread switch interval while the API runs, seconds.
SWITCH_INTERVAL_S = 0.001
#: Test-only: a file whose existence wedges the reconcile loop (see the module docstring).
WEDGE_ENV = "DOCKWARDEN_TEST_WEDGE_FILE"


def _trim_heap() -> None:
    """Give the import and start-up garbage back to the system (glibc
    ``malloc_trim``; elsewhere nothing). Measured by bench/api.py: ~1 MiB RSS."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError) as e:  # not glibc: nothing to give back
        log.debug("malloc_trim unavailable: %s", type(e).__name__)


class Reads:
    """The API's own database handles (separate connections from the loop's,
    so a request never waits on the loop's lock): the core store (for
    operator writes too), incidents, the notification outbox and the pool,
    each through its own module's public methods.

    Args:
        db_path: ``<state-dir>/dockwarden.db``.
        node: this node's name.
    """

    def __init__(self, db_path: Path, node: str):
        self.db_path = Path(db_path)
        self.store = Store(db_path, node)
        self.book = IncidentBook(db_path, node)
        self.outbox = Outbox(db_path)
        for db in (self.store, self.book, self.outbox):
            db.use_small_cache()
        self._pool: Any = None

    def close(self) -> None:
        for db in (self.store, self.book, self.outbox, self._pool):
            if db is not None:
                db.close()

    def incidents(self, *, include_resolved: bool, limit: int) -> list:
        return self.book.list(include_resolved=include_resolved, limit=limit)

    def figures(self, policy: Policy) -> dict[str, Any]:
        """Scrape-time figures: open incidents by priority, the notification
        queue (count, oldest age in seconds), pool containers by state."""
        out: dict[str, Any] = {"incidents_open": {}}
        for inc in self.book.active().values():
            out["incidents_open"][inc.priority] = out["incidents_open"].get(inc.priority, 0) + 1
        n, oldest = self.outbox.pending_summary()
        out["notifications_queued"] = n
        out["notifications_oldest_age_s"] = max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0
        if policy.pool.image:
            stats = self._pool_db().stats(utcnow())
            out["pool"] = {k: stats.get(k, 0) for k in ("starting", "healthy", "unhealthy", "rate_limited",
                                                        "stopping", "failed")}
        return out

    def _pool_db(self) -> Any:
        if self._pool is None:
            from dockwarden.pool.db import PoolDB

            self._pool = PoolDB(self.db_path)
            self._pool.use_small_cache()
        return self._pool

    def pool(self, policy: Policy) -> dict[str, Any]:
        """``GET /api/v1/pool``: figures and containers, or ``configured: false``."""
        if not policy.pool.image:
            return {"configured": False, "status": None, "containers": []}
        from dockwarden.model import to_jsonable

        s, db = policy.pool, self._pool_db()
        status = {"prefix": s.prefix, "image": s.image, "min": s.min, "max": s.max, **db.stats(utcnow())}
        return {"configured": True, "status": status,
                "containers": [{**to_jsonable(c), "busy": c.busy} for c in db.containers()]}


@dataclass
class DaemonView:
    """What the API may see of the daemon (getters: the daemon reloads them).

    Attributes:
        settings: state dir, docker host.
        listen: ``--listen``/``DOCKWARDEN_LISTEN`` (None: the policy's ``[api] listen``).
        resync_s: seconds between full observations.
        node: this node's name.
        policy, desired: the configuration in force.
        ready: True once ``daemon_ready`` was emitted.
        events: the daemon's event log (the API records through it and subscribes to it).
        workers: the daemon's background workers (the storage worker's last report).
        world: the daemon's last observed world state (when the engine answered), or None.
    """

    settings: Settings
    listen: str | None
    resync_s: float
    node: str
    policy: Callable[[], Policy]
    desired: Callable[[], DesiredState]
    ready: Callable[[], bool]
    events: EventLog
    workers: Sequence[Any] = ()
    world: Callable[[], Any] = lambda: None
    #: The other nodes' status documents (issue 11: one daemon, several nodes); [] alone.
    other_nodes: Callable[[], list[dict[str, Any]]] = lambda: []


class NullApi:
    """The handle when the API is off (``--listen none``): every call does nothing."""

    url: str | None = None

    def beat(self) -> None:
        return None

    def publish(self, result: Any, pass_s: float, passes: int) -> None:
        return None

    def stop(self) -> None:
        return None


NO_API = NullApi()


def bind(listen: ListenAddress) -> tuple[socket.socket, ListenAddress]:
    """Open the listening socket (so errors surface here, not in a thread).

    Returns:
        (socket, address): the address with the port the kernel chose for port 0.
    Raises:
        OSError: the address is in use, not local, or the path not writable.
    """
    if listen.kind == "unix":
        p = Path(listen.path)
        if p.exists() and stat.S_ISSOCK(p.stat().st_mode):
            p.unlink()  # a stale socket of an earlier daemon (the state dir lock says none runs)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(listen.path)
        finally:
            os.umask(old)
        os.chmod(listen.path, 0o600)
    else:
        family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY on accepted sockets only
        # when the listener's proto says TCP; without it every keep-alive response
        # waits for the client's delayed ACK (~40 ms, measured by bench/api.py).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listen.host, listen.port))
        listen = ListenAddress("tcp", host=listen.host, port=sock.getsockname()[1])
    sock.listen(128)
    sock.setblocking(False)
    return sock, listen


def url_of(listen: ListenAddress) -> str:
    """``http://HOST:PORT`` (0.0.0.0 is reached as 127.0.0.1), or ``unix:/path``."""
    if listen.kind == "unix":
        return f"unix:{listen.path}"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen.host, listen.host)
    return f"http://[{host}]:{listen.port}" if ":" in host else f"http://{host}:{listen.port}"


def write_address(state_dir: Path, listen: ListenAddress) -> Path:
    """Write ``<state-dir>/api.json`` (0600): ``url``, ``listen``, ``pid``, ``started_at``."""
    path = Path(state_dir) / ADDRESS_FILE
    jsonfile.write_atomic(path, {"url": url_of(listen), "listen": str(listen), "pid": os.getpid(),
                                 "started_at": rfc3339(utcnow())})
    return path


class ApiHandle:
    """The running API, as the daemon sees it.

    Attributes:
        url: where it answers (``http://...`` or ``unix:/path``).
        heartbeat: ``time.monotonic()`` of the loop's last round.
    """

    def __init__(self, view: DaemonView, listen: ListenAddress, sock: socket.socket, guard: Guard):
        self.view = view
        self.listen = listen
        self.guard = guard
        self.url = url_of(listen)
        self.heartbeat = time.monotonic()
        self.snapshots = SnapshotHolder()
        self.samples = SampleRing()
        self.bus = EventBus()
        self.db_path = view.settings.state_dir / "dockwarden.db"
        self.reads = Reads(self.db_path, view.node)
        self.metrics = ApiMetrics(snapshot=self.snapshots.get, reads=self._figures, resync_s=view.resync_s,
                                  channels=lambda: [c.name for c in view.policy().notify.channel],
                                  other_nodes=view.other_nodes)
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._storage_cache: tuple[Any, Any, dict | None] = (None, None, None)
        view.events.subscribers.append(self.metrics.on_event)
        view.events.subscribers.append(self.bus.notify)
        self.ctx: Any = None  # the app's context, made on the server's thread
        self._sock = sock
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._wedge = os.environ.get(WEDGE_ENV) or None

    def _app(self) -> Any:
        """Build the FastAPI app (on the server's thread: importing FastAPI and
        uvicorn takes about a second, which must not delay the first pass)."""
        from dockwarden.api.app import ApiContext, create_app

        view = self.view
        self.ctx = ApiContext(
            guard=self.guard, snapshots=self.snapshots, samples=self.samples, metrics=self.metrics, bus=self.bus,
            events=EventReader(self.db_path), reads=self.reads, node=view.node, resync_s=view.resync_s,
            heartbeat=lambda: self.heartbeat, ready=view.ready, policy=view.policy, desired=view.desired,
            emit=view.events.send, docker_client=self._docker, world=view.world, other_nodes=view.other_nodes,
            cors_origins=tuple(view.policy().api.cors_origins))
        return create_app(self.ctx)

    def _figures(self) -> dict[str, Any]:
        return self.reads.figures(self.view.policy())

    def _docker(self) -> Any:
        with self._client_lock:
            if self._client is None:
                from dockwarden.observe.docker import connect

                self._client = connect(self.view.settings.docker_host)
            return self._client

    def start(self) -> None:
        """Serve on a daemon thread (clients that connect before the app is built
        wait in the listen backlog)."""

        def serve() -> None:
            try:
                import uvicorn

                # h11, asyncio's loop and no websockets: nothing imported that is not used (RSS).
                config = uvicorn.Config(self._app(), log_level="warning", access_log=False, lifespan="off",
                                        timeout_graceful_shutdown=1, server_header=False, ws="none", http="h11",
                                        loop="asyncio")
                config.load()
                self._server = _quiet_server(uvicorn)(config)
                _trim_heap()
                asyncio.run(self._server.serve(sockets=[self._sock]))
            except Exception:  # the API dying must never take supervision with it
                log.exception("the HTTP API stopped with an error")

        self._thread = threading.Thread(target=serve, name="dockwarden-api", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ called by the loop

    def beat(self) -> None:
        """The loop went round (one line in ``Daemon._loop``)."""
        if self._wedge is not None:
            while os.path.exists(self._wedge):  # test-only, see the module docstring
                time.sleep(0.1)
        self.heartbeat = time.monotonic()

    def publish(self, status: dict[str, Any], pass_s: float, passes: int) -> None:
        """Swap in the snapshot of a pass; never raises.

        Args:
            status: the pass's status document (``report.status_document``, the one
                the daemon writes to ``status.json``); not modified.
            pass_s: the pass's duration, seconds.
            passes: passes so far.
        """
        try:
            status = {**status, "pass": passes, "ready": bool(self.view.ready())}
            snap = Snapshot(status=status, storage=self._storage(), published_at=time.time(),
                            published_mono=time.monotonic(), pass_duration_s=pass_s, passes=passes)
            self.snapshots.publish(snap)
            self.samples.add(status)
            self.metrics.observe_pass(pass_s)
        except Exception:  # a sink never fails a pass
            log.exception("api: cannot publish the snapshot")

    def _storage(self) -> dict[str, Any] | None:
        for w in self.view.workers:
            report = getattr(w, "last_report", None)
            if report is None:
                continue
            trend = getattr(w, "last_trend", None)
            cached_r, cached_t, doc = self._storage_cache
            if cached_r is not report or cached_t is not trend:
                doc = storage_document(report, trend, self.view.policy().storage.top_n)
                self._storage_cache = (report, trend, doc)
            return doc
        return None

    def stop(self) -> None:
        """Stop serving (open SSE streams end) and remove ``api.json``."""
        if self._thread is not None:
            deadline = time.monotonic() + 10
            while self._server is None and self._thread.is_alive() and time.monotonic() < deadline:
                time.sleep(0.05)  # still building the app
            if self._server is not None:
                self._server.should_exit = True
                self.bus.notify()
            self._thread.join(timeout=5)
        try:
            (self.view.settings.state_dir / ADDRESS_FILE).unlink(missing_ok=True)
            if self.listen.kind == "unix":
                Path(self.listen.path).unlink(missing_ok=True)
        except OSError as e:
            log.debug("api: cleanup: %s", e)
        if self.ctx is not None:
            self.ctx.events.close()
        self.reads.close()


def _quiet_server(uvicorn: Any) -> Any:
    """``uvicorn.Server`` whose housekeeping tick runs once a second instead of
    ten times (the Date header has one-second resolution anyway): an idle API
    wakes the process once a second. Shutdown is seen within a second."""

    class QuietServer(uvicorn.Server):
        async def main_loop(self) -> None:
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 10) % 864000  # uvicorn updates its headers when counter % 10 == 0
                await asyncio.sleep(1.0)
                should_exit = await self.on_tick(counter)

    return QuietServer


def _failed(view: DaemonView, listen: ListenAddress, what: str, e: OSError) -> NullApi:
    """Report that the API is off (log and ``api_failed``); supervision goes on."""
    msg = f"the HTTP API is off: {what}: {e.strerror or e}; supervision goes on without it"
    log.error(msg)
    view.events.send(Event(type=EventType.API_FAILED, ts=utcnow(), node=view.node, reason=msg,
                           details={"listen": str(listen), "error": str(e.strerror or e)}))
    return NO_API


def start_api(view: DaemonView) -> ApiHandle | NullApi:
    """Start the API for a daemon (after its setup), or return :data:`NO_API`
    for ``none``. A listener that cannot be opened is reported (log and an
    ``api_failed`` event) and supervision goes on without the API.

    Raises:
        ConfigError: ``--listen`` is malformed, or ``[api] read_token_file`` is
            named but unreadable.
    """
    policy = view.policy()
    raw = view.listen or policy.api.listen
    try:
        listen = parse_listen(raw)
    except ValueError as e:
        raise ConfigError(f"--listen / DOCKWARDEN_LISTEN / api.listen: {e}") from e
    if listen.kind == "none":
        return NO_API
    read_token = read_token_file(policy.api.read_token_file)
    try:
        write_token = ensure_write_token(view.settings.state_dir)
    except OSError as e:  # e.g. the state dir's disk is full at start
        return _failed(view, listen, f"cannot write {view.settings.state_dir / 'api-token'}", e)
    try:
        sock, listen = bind(listen)
    except OSError as e:
        return _failed(view, listen, f"cannot listen on {listen}", e)
    # The HTTP thread must never keep the reconcile loop waiting for the GIL: each
    # blocking call of a pass (engine, SQLite) hands the GIL back and waits up to
    # the switch interval to get it again (5 ms by default; measured by
    # bench/mttr.py --hammer: a busy API slowed crash-to-running by ~60 ms).
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
    guard = Guard(listen, write_token, read_token, tuple(policy.api.allowed_hosts))
    handle = ApiHandle(view, listen, sock, guard)
    handle.start()
    try:
        write_address(view.settings.state_dir, listen)
    except OSError as e:  # the API serves; only `--url local` cannot find it
        log.error("api: cannot write %s: %s", view.settings.state_dir / ADDRESS_FILE, e)
    open_reads = "reads open (loopback)" if listen.loopback else "reads need a token"
    view.events.send(Event(type=EventType.API_LISTENING, ts=utcnow(), node=view.node,
                           reason=f"HTTP API, metrics and dashboard on {handle.url} ({open_reads}; writes need "
                                  f"the token in {view.settings.state_dir / 'api-token'})",
                           details={"url": handle.url, "listen": str(listen), "reads_open": listen.loopback}))
    return handle
