"""The API's parts without a daemon: listen addresses, the Host check and token
scopes, the write token file, the sample ring, the metrics fed by events, the
SSE wire format and stream (issue 10)."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from datetime import datetime, timezone

import pytest

from dockwarden.api.auth import READ, WRITE, Guard, ensure_write_token, read_token_file
from dockwarden.api.metrics import ApiMetrics
from dockwarden.api.snapshot import SampleRing, Snapshot
from dockwarden.api.sse import EventBus, EventReader, event_stream, format_event
from dockwarden.config import ConfigError
from dockwarden.config_api import ApiPolicy, parse_listen
from dockwarden.model import Event, EventType


@pytest.mark.parametrize("raw,kind,host,port,loopback", [
    ("127.0.0.1:9321", "tcp", "127.0.0.1", 9321, True),
    ("127.0.0.2:0", "tcp", "127.0.0.2", 0, True),
    ("[::1]:80", "tcp", "::1", 80, True),
    ("localhost:1", "tcp", "localhost", 1, True),
    ("0.0.0.0:9321", "tcp", "0.0.0.0", 9321, False),
    ("192.0.2.1:9321", "tcp", "192.0.2.1", 9321, False),
    ("unix:/run/dw.sock", "unix", "", 0, True),
    ("none", "none", "", 0, False),
])
def test_parse_listen(raw, kind, host, port, loopback):
    a = parse_listen(raw)
    assert (a.kind, a.host, a.port, a.loopback) == (kind, host, port, loopback)


@pytest.mark.parametrize("bad", ["9321", ":9321", "::1:9321", "host:port", "host:70000", "unix:relative", "[::1]"])
def test_parse_listen_rejects(bad):
    with pytest.raises(ValueError):
        parse_listen(bad)
    with pytest.raises(ValueError):
        ApiPolicy(listen=bad)


def test_host_check_on_loopback_only():
    g = Guard(parse_listen("127.0.0.1:9321"), "w" * 43, None, ("dw.internal",))
    for ok in ("localhost:9321", "127.0.0.1:9321", "[::1]:9321", "dw.internal", "DW.internal:9321", "LOCALHOST:9321"):
        assert g.host_ok(ok), ok
    for bad in (None, "", "evil.example:9321", "localhost:9322", "localhost", "127.0.0.1.evil:9321",
                "[::1]", "localhost:9321@evil"):
        assert not g.host_ok(bad), bad
    assert Guard(parse_listen("0.0.0.0:9321"), "w").host_ok("anything")
    assert Guard(parse_listen("unix:/x"), "w").host_ok(None)


def test_token_scopes():
    g = Guard(parse_listen("0.0.0.0:1"), "write-token", "read-token")
    assert g.scope_of("Bearer write-token") == WRITE
    assert g.scope_of("bearer read-token") == READ
    for bad in (None, "", "Bearer", "Bearer ", "Basic write-token", "Bearer write-token2", "Bearer read"):
        assert g.scope_of(bad) is None, bad
    assert not g.reads_open()
    assert Guard(parse_listen("unix:/x"), "w").reads_open()


def test_write_token_file_is_made_once_0600(tmp_path):
    t = ensure_write_token(tmp_path)
    p = tmp_path / "api-token"
    assert len(t) >= 43 and stat.S_IMODE(p.stat().st_mode) == 0o600
    p.chmod(0o644)
    assert ensure_write_token(tmp_path) == t and stat.S_IMODE(p.stat().st_mode) == 0o600


def test_read_token_file(tmp_path):
    assert read_token_file("") is None
    f = tmp_path / "r"
    f.write_text("  tok \nignored\n")
    assert read_token_file(str(f)) == "tok"
    f.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_token_file(str(f))
    with pytest.raises(ConfigError, match="read_token_file"):
        read_token_file(str(tmp_path / "missing"))


def _status(cpu):
    return {"node": "n", "services": [{"name": "a", "cpu_percent": cpu, "memory_bytes": 10},
                                      {"name": "b", "cpu_percent": None, "memory_bytes": None}]}


def test_sample_ring_is_bounded_and_spaced():
    ring = SampleRing(window_s=100, min_interval_s=10)
    assert ring.add(_status(1.0), now=1000)
    assert not ring.add(_status(2.0), now=1005)  # too soon
    assert not ring.add(_status(None), now=1020)  # no stats in this pass
    for i in range(1, 30):
        ring.add(_status(float(i)), now=1000 + 10 * i)
    got = ring.get(now=1290)
    assert [p[0] for p in got["a"]][0] >= 1190 and len(got["a"]) <= 11
    ring.add({"node": "n", "services": [{"name": "c", "cpu_percent": 1.0, "memory_bytes": 1}]}, now=2000)
    assert set(ring.get(now=2000)) == {"c"}  # services no longer tracked are dropped


def _ev(t, **kw):
    return Event(type=t, ts=datetime(2026, 1, 1, 0, 0, kw.pop("s", 0), tzinfo=timezone.utc), node="n", **kw)


def test_metrics_count_actions_recoveries_and_notifications():
    snap = Snapshot(status={"node": "n", "summary": "degraded", "engine_ok": True, "services": [
        {"name": "a", "up": False, "circuit_open": True, "intent": "running", "guard": {"paused": False},
         "cpu_percent": None, "memory_bytes": None}], "untracked": [{"container": "x"}],
        "findings": [{"drift": "stopped", "priority": "P2"}], "host": None}, published_at=5.0)
    m = ApiMetrics(snapshot=lambda: snap, reads=lambda: {"incidents_open": {"P2": 1}, "notifications_queued": 3},
                   resync_s=30, channels=lambda: ["ops"])
    m.on_event(_ev(EventType.ACTION_STARTED, action="start", details={"action_id": "a-1"}))
    m.on_event(_ev(EventType.ACTION_SUCCEEDED, action="start", details={"action_id": "a-1"}, s=2))
    m.on_event(_ev(EventType.ACTION_SUCCEEDED, action="start", details={"action_id": "a-1"}, s=3))  # counted once
    m.on_event(_ev(EventType.ACTION_FAILED, action="start", details={"action_id": "unknown"}))
    m.on_event(_ev(EventType.RECOVERED, details={"downtime_s": 1.5}))
    m.on_event(_ev(EventType.NOTIFICATION_DELIVERED, details={"channel": "ops"}))
    m.on_event(_ev(EventType.NOTIFICATION_DELIVERED, details={"channel": "not-in-policy"}))
    from prometheus_client.parser import text_string_to_metric_families

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(m.render().decode()) for s in f.samples}
    assert samples[("dockwarden_actions_total", (("action", "start"), ("result", "succeeded")))] == 1
    assert samples[("dockwarden_actions_total", (("action", "start"), ("result", "failed")))] == 0
    assert samples[("dockwarden_action_duration_seconds_sum", (("action", "start"),))] == 2
    assert samples[("dockwarden_recovery_seconds_sum", ())] == 1.5
    assert samples[("dockwarden_notifications_total", (("channel", "ops"), ("result", "delivered")))] == 1
    assert not any(k[1] and ("channel", "not-in-policy") in k[1] for k in samples)
    assert samples[("dockwarden_circuit_open", (("node", "n"), ("service", "a")))] == 1
    assert samples[("dockwarden_service_up", (("node", "n"), ("service", "a")))] == 0
    assert samples[("dockwarden_summary_state", (("state", "degraded"),))] == 1
    assert samples[("dockwarden_summary_state", (("state", "nominal"),))] == 0
    assert samples[("dockwarden_drifts", (("kind", "stopped"), ("priority", "P2")))] == 1
    assert samples[("dockwarden_drifts", (("kind", "missing"), ("priority", "P2")))] == 0
    assert samples[("dockwarden_untracked_containers", ())] == 1
    assert samples[("dockwarden_incidents_open", (("priority", "P2"),))] == 1
    assert samples[("dockwarden_notifications_queued", ())] == 3
    assert samples[("dockwarden_last_pass_timestamp_seconds", ())] == 5.0
    # Isolated registries: a second instance starts from zero.
    m2 = ApiMetrics(snapshot=lambda: None, reads=lambda: {}, resync_s=30)
    assert b'dockwarden_actions_total{action="start",result="succeeded"} 0.0' in m2.render()


def test_sse_format_is_one_message_per_event():
    msg = format_event({"id": 7, "type": "drift_detected", "reason": "two\nlines", "details": {}})
    text = msg.decode()
    assert text.startswith("id: 7\nevent: drift_detected\ndata: {") and text.endswith("}\n\n")
    assert text.count("\n") == 4  # the newline inside the reason is escaped in JSON


def _db(tmp_path, n):
    p = tmp_path / "dockwarden.db"
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT, type TEXT, node TEXT, "
               "service TEXT, container TEXT, drift TEXT, priority TEXT, action TEXT, reason TEXT, details TEXT)")
    for i in range(n):
        db.execute("INSERT INTO events (ts, type, node, service, reason, details) VALUES (?, ?, 'n', ?, '', '{}')",
                   (f"2026-01-01T00:00:{i:02d}.000Z", "drift_detected" if i % 2 else "recovered", f"s{i % 3}"))
    db.commit()
    return p, db


def test_event_stream_resumes_by_id_and_keeps_alive(tmp_path):
    p, db = _db(tmp_path, 5)
    reader, bus = EventReader(p), EventBus()

    async def take(after_id, n, **kw):
        out = []
        gen = event_stream(reader, bus, after_id=after_id, keepalive_s=0.05, poll_s=0.02, **kw)
        async for chunk in gen:
            out.append(chunk.decode())
            if len(out) >= n:
                break
        await gen.aclose()
        return out

    chunks = asyncio.run(take(2, 3))
    assert chunks[0].startswith("retry: ")
    assert [line for line in "".join(chunks[1:2]).splitlines() if line.startswith("id:")] == ["id: 3", "id: 4",
                                                                                               "id: 5"]
    assert chunks[2] == ": keep-alive\n\n"
    only = asyncio.run(take(0, 2, types=("recovered",), service="s0"))
    assert [line for line in only[1].splitlines() if line.startswith("id:")] == ["id: 1"]  # the only recovered of s0
    assert reader.last_id() == 5 and [e["id"] for e in reader.newest(limit=2)] == [4, 5]
    reader.close()
    db.close()


def test_event_reader_filters_after_and_newest_alike(tmp_path):
    # ids 1..8: type recovered at odd ids, service s(i % 3) for i = id - 1, ts second = id - 1
    p, db = _db(tmp_path, 8)
    reader = EventReader(p)
    kw = {"types": ("recovered",), "service": "s0", "since": "2026-01-01T00:00:01.000Z"}
    assert [e["id"] for e in reader.after(0, **kw)] == [7]
    assert [e["id"] for e in reader.newest(**kw)] == [7]
    assert [e["id"] for e in reader.after(3, types=("drift_detected",))] == [4, 6, 8]
    assert [e["id"] for e in reader.newest(types=("drift_detected", "recovered"), limit=3)] == [6, 7, 8]
    assert [e["id"] for e in reader.newest(service="s1", since="2026-01-01T00:00:02.000Z")] == [5, 8]
    reader.close()
    db.close()


def test_sse_drops_a_client_that_stops_reading():
    from dockwarden.api.sse import SSEResponse

    async def endless(_disconnected):
        while True:
            yield b"data: x\n\n"

    sent = []

    async def send(msg):
        sent.append(msg["type"])
        if msg["type"] == "http.response.body" and len(sent) > 3:
            await asyncio.sleep(3600)  # the client's window is full: the write never completes

    async def receive():
        await asyncio.sleep(3600)  # no disconnect is ever seen

    async def run():
        t0 = asyncio.get_running_loop().time()
        await SSEResponse(endless, write_deadline_s=0.2)({"type": "http"}, receive, send)
        return asyncio.get_running_loop().time() - t0

    took = asyncio.run(asyncio.wait_for(run(), timeout=5))
    assert took < 2.0 and sent[0] == "http.response.start"


def _app(tmp_path, **kw):
    from fastapi.testclient import TestClient

    from dockwarden.api.app import ApiContext, create_app
    from dockwarden.config import Policy
    from dockwarden.model import DesiredState
    from dockwarden.api.snapshot import SnapshotHolder

    p = tmp_path / "dockwarden.db"
    if not p.exists():
        _db(tmp_path, 3)[1].close()
    guard = Guard(parse_listen("127.0.0.1:9321"), "write-token")
    ctx = ApiContext(guard=guard, snapshots=SnapshotHolder(), samples=SampleRing(),
                     metrics=ApiMetrics(snapshot=lambda: None, reads=lambda: {}, resync_s=1.0), bus=EventBus(),
                     events=EventReader(p), reads=None, node="n", resync_s=1.0, heartbeat=lambda: 0.0,
                     ready=lambda: False, policy=Policy, desired=lambda: DesiredState("n"), emit=lambda e: None,
                     docker_client=lambda: None, **kw)
    return TestClient(create_app(ctx), base_url="http://127.0.0.1:9321")


def test_cors_only_when_configured(tmp_path):
    plain = _app(tmp_path)
    r = plain.get("/api/v1/events", headers={"Origin": "https://ops.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    cors = _app(tmp_path, cors_origins=("https://ops.example",))
    r = cors.get("/api/v1/events", headers={"Origin": "https://ops.example"})
    assert r.headers["access-control-allow-origin"] == "https://ops.example"
    r = cors.get("/api/v1/events", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    r = cors.options("/api/v1/services/x/stop", headers={"Origin": "https://ops.example",
                                                           "Access-Control-Request-Method": "POST",
                                                           "Access-Control-Request-Headers": "authorization"})
    assert r.status_code == 200 and "authorization" in r.headers["access-control-allow-headers"].lower()


def test_app_without_a_pass_yet(tmp_path):
    c = _app(tmp_path)
    assert c.get("/api/v1/status").status_code == 503  # no snapshot yet
    assert c.get("/readyz").status_code == 503
    h = c.get("/healthz")
    assert h.status_code == 503 and "no pass yet" in h.json()["problems"]
    assert c.get("/api/v1/events?limit=2").json()["next_after"] == 3
    assert c.get("/api/v1/events?since=yesterday").status_code == 422
    assert c.get("/", headers={"Host": "evil.example:9321"}).status_code == 421
    page = c.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert c.get("/static/app.js").status_code == 200 and c.get("/static/../app.py").status_code == 404
