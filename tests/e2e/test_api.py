"""The HTTP API on a real daemon and a real engine (issue 10): tokens and scopes,
the Host check, stop/start through the action protocol, SSE after a kill -9 and
its resume, /metrics moving on a crash and recovery, /healthz of a wedged loop."""

from __future__ import annotations

import json
import stat
import time

from conftest import FAST_POLICY, wait_for, write_inventory, write_policy

from tests.support.http import SSEClient, call


def _svc(url: str, name: str, token: str | None = None) -> dict:
    r = call(url, path="/api/v1/status", token=token)
    assert r.status == 200, r.body
    return {s["name"]: s for s in r.json()["services"]}[name]


def _kill9(containers, short: str) -> None:
    """SIGKILL the container's process from the host (a crash, not a docker kill)."""
    containers.kill_process(short)


def test_tokens_scopes_and_host_check_on_loopback(tmp_path, containers, daemon_factory):
    containers.run("web", ["sleep", "100000"])
    read_token = tmp_path / "read-token"
    read_token.write_text("reader-secret-0123456789abcdef\n")
    policy = write_policy(tmp_path / "p.toml", FAST_POLICY + f"""
[api]
read_token_file = "{read_token}"
allowed_hosts = ["dockwarden.internal"]
""")
    inv = write_inventory(tmp_path / "inv", [{"name": "web", "container": containers.name("web")}])
    d = daemon_factory(inv, policy).start(resync=2)
    url = d.api_url()
    port = url.rsplit(":", 1)[1]
    for f in ("api-token", "api.json"):
        assert stat.S_IMODE((d.state_dir / f).stat().st_mode) == 0o600, f
    token = d.api_token()
    assert len(token) >= 43  # token_urlsafe(32): at least 32 random bytes
    assert token not in d.log_text() and token not in (d.state_dir / "events.jsonl").read_text()

    # Reads are open on a loopback listener ...
    assert call(url, path="/api/v1/status").status == 200
    assert call(url, path="/metrics").status == 200
    # ... a wrong token is still refused, the read token reads.
    assert call(url, path="/api/v1/status", token="wrong").status == 401
    assert call(url, path="/api/v1/status", token="reader-secret-0123456789abcdef").status == 200
    # Writes: none without the write token, none with the read token.
    r = call(url, "POST", "/api/v1/services/web/stop")
    assert r.status == 401 and r.headers.get("www-authenticate", "").startswith("Bearer"), r
    assert call(url, "POST", "/api/v1/services/web/stop", token="reader-secret-0123456789abcdef").status == 403
    assert call(url, "POST", "/api/v1/incidents/1/ack").status == 401
    assert containers.state("web")["Running"], "a refused write changed the container"
    # Host header: DNS rebinding guard.
    assert call(url, path="/api/v1/status", host=f"evil.example:{port}").status == 421
    assert call(url, path="/", host=f"evil.example:{port}").status == 421
    assert call(url, path="/api/v1/status", host=f"127.0.0.1:{int(port) + 1}").status == 421
    for ok in (f"localhost:{port}", f"127.0.0.1:{port}", f"dockwarden.internal:{port}"):
        assert call(url, path="/api/v1/status", host=ok).status == 200, ok
    # No CORS unless configured.
    r = call(url, path="/api/v1/status", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_reads_need_a_token_on_a_non_loopback_listener(tmp_path, containers, daemon_factory):
    containers.run("web", ["sleep", "100000"])
    inv = write_inventory(tmp_path / "inv", [{"name": "web", "container": containers.name("web")}])
    # 0.0.0.0 is not loopback: every read needs a token (reached here through 127.0.0.1 only).
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY), extra=["--listen", "0.0.0.0:0"]).start()
    url = d.api_url()
    for path in ("/api/v1/status", "/api/v1/drift", "/api/v1/events", "/api/v1/incidents", "/metrics",
                 "/api/v1/openapi.json", "/api/v1/events/stream"):
        r = call(url, path=path, timeout=5)
        assert r.status == 401, (path, r.status)
    assert call(url, path="/api/v1/status", token=d.api_token()).status == 200
    # No Host check off loopback (the token is the guard there).
    assert call(url, path="/api/v1/status", token=d.api_token(), host="any.example").status == 200


def test_stop_and_start_through_the_api_change_the_container_and_the_intent(tmp_path, containers, daemon_factory):
    containers.run("web", ["sleep", "100000"])
    inv = write_inventory(tmp_path / "inv", [{"name": "web", "container": containers.name("web")}])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=2)
    url, token = d.api_url(), d.api_token()

    r = call(url, "POST", "/api/v1/services/web/stop", token=token)
    assert r.status == 200, r.body
    body = r.json()
    assert body["ok"] and body["intent"] == "stopped"
    assert body["action"]["action"] == "stop" and body["action"]["by"] == "api" and body["action"]["id"]
    assert not containers.state("web")["Running"]
    started = d.wait_event(lambda e: e["type"] == "action_started" and e["details"].get("action_id") == body["action"]["id"])
    assert started["details"]["by"] == "api"
    # The daemon sees the stop as the operator's (recorded first), never restarts it.
    wait_for(lambda: _svc(url, "web")["intent"] == "stopped", 10, what="intent stopped in the snapshot")
    assert _svc(url, "web")["intent_source"] == "api"
    time.sleep(3)  # a resync later, it is still stopped
    assert not containers.state("web")["Running"]

    r = call(url, "POST", "/api/v1/services/web/start", token=token)
    assert r.status == 200 and r.json()["intent"] == "running", r.body
    assert containers.state("web")["Running"]
    wait_for(lambda: _svc(url, "web")["state"] == "running" and _svc(url, "web")["intent"] == "running", 10,
             what="running in the snapshot")
    # An unknown service is a 404 that names the tracked ones; nothing is recorded for it.
    r = call(url, "POST", "/api/v1/services/nope/stop", token=token)
    assert r.status == 404 and "web" in r.json()["detail"]


def test_sse_delivers_a_kill9_drift_within_a_second_and_resumes_without_loss(tmp_path, containers, daemon_factory):
    containers.run("web", ["sleep", "100000"])
    inv = write_inventory(tmp_path / "inv", [{"name": "web", "container": containers.name("web")}])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=2)
    url = d.api_url()
    sse = SSEClient(url).start()
    assert sse.status == 200
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert sse.headers.get("x-accel-buffering") == "no" and sse.headers.get("cache-control") == "no-cache"
    wait_for(lambda: sse.comments, 5, what="the stream's opening comment")

    t_kill = time.monotonic()
    _kill9(containers, "web")
    got = wait_for(lambda: [e for e in sse.events if e[2] == "drift_detected" and e[3]["service"] == "web"], 5,
                   what="drift_detected on the stream")
    assert got[0][0] - t_kill <= 1.0, f"drift delivered {got[0][0] - t_kill:.3f} s after the kill"
    assert got[0][3]["drift"] == "stopped"
    last_id = got[0][1]
    sse.close()

    # While no client listens, the daemon restarts the service: more events.
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == "web", timeout=20)
    again = SSEClient(url, last_event_id=last_id).start()
    expected = call(url, path=f"/api/v1/events?after={last_id}&limit=1000").json()["events"]
    assert expected, "no events after the drift"
    wait_for(lambda: len(again.events) >= len(expected), 10, what="the missed events")
    ids = [e[1] for e in again.events]
    assert ids[:len(expected)] == [e["id"] for e in expected], "events lost or repeated across the reconnect"
    assert ids == sorted(set(ids)) and ids[0] > last_id
    types = [e[2] for e in again.events]
    assert "action_started" in types and "recovered" in types, types
    again.close()


def _metrics(url: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    r = call(url, path="/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain"), r
    out = {}
    for fam in text_string_to_metric_families(r.body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _m(ms: dict, name: str, **labels) -> float | None:
    return ms.get((name, tuple(sorted(labels.items()))))


def test_metrics_parse_and_move_when_a_service_crashes_and_recovers(tmp_path, containers, daemon_factory):
    containers.run("web", ["sleep", "100000"])
    inv = write_inventory(tmp_path / "inv", [{"name": "web", "container": containers.name("web")}])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    url, token = d.api_url(), d.api_token()
    node = "testnode"
    ms = _metrics(url)
    assert _m(ms, "dockwarden_service_up", node=node, service="web") == 1.0
    assert _m(ms, "dockwarden_summary_state", state="nominal") == 1.0
    assert _m(ms, "dockwarden_engine_up", node=node) == 1.0
    assert _m(ms, "dockwarden_circuit_open", node=node, service="web") == 0.0
    assert _m(ms, "dockwarden_build_info", version=__import__("dockwarden").__version__) == 1.0
    starts0 = _m(ms, "dockwarden_actions_total", action="start", result="succeeded")
    rec0 = _m(ms, "dockwarden_recovery_seconds_count")
    assert starts0 == 0.0 and rec0 == 0.0
    for name in ("dockwarden_last_pass_timestamp_seconds", "dockwarden_notifications_queued",
                 "dockwarden_pass_duration_seconds_count"):
        assert _m(ms, name) is not None, name
    assert _m(ms, "dockwarden_incidents_open", priority="P2") == 0.0
    assert _m(ms, "dockwarden_drifts", kind="stopped", priority="P2") == 0.0
    assert _m(ms, "dockwarden_docker_storage_bytes", kind="images") is not None
    assert _m(ms, "dockwarden_pool_containers", state="healthy") == 0.0

    # Hands off, then crash it: down, a P2 drift and an incident, and it stays down.
    assert call(url, "POST", "/api/v1/services/web/pause", token=token).status == 200
    _kill9(containers, "web")

    def down():
        m = _metrics(url)
        return m if (_m(m, "dockwarden_service_up", node=node, service="web") == 0.0
                     and _m(m, "dockwarden_drifts", kind="stopped", priority="P2") == 1.0) else None

    m = wait_for(down, 10, what="service_up 0 and a stopped drift")
    assert _m(m, "dockwarden_summary_state", state="nominal") == 0.0
    wait_for(lambda: _m(_metrics(url), "dockwarden_incidents_open", priority="P2") == 1.0, 10, what="incident P2")

    # Resume: dockwarden starts it; the counters and the recovery histogram move.
    assert call(url, "POST", "/api/v1/services/web/resume", token=token).status == 200

    def recovered():
        m = _metrics(url)
        return m if (_m(m, "dockwarden_service_up", node=node, service="web") == 1.0
                     and _m(m, "dockwarden_actions_total", action="start", result="succeeded") == 1.0
                     and _m(m, "dockwarden_recovery_seconds_count") == 1.0) else None

    m = wait_for(recovered, 20, what="service back up, one start succeeded, one recovery")
    assert _m(m, "dockwarden_recovery_seconds_sum") > 0
    assert _m(m, "dockwarden_action_duration_seconds_count", action="start") == 1.0
    assert _m(m, "dockwarden_drifts", kind="stopped", priority="P2") == 0.0


def test_healthz_turns_503_when_the_loop_is_wedged(tmp_path, containers, daemon_factory, monkeypatch):
    wedge = tmp_path / "wedge"
    monkeypatch.setenv("DOCKWARDEN_TEST_WEDGE_FILE", str(wedge))  # test-only hook (api/server.py)
    containers.run("web", ["sleep", "100000"])
    inv = write_inventory(tmp_path / "inv", [{"name": "web", "container": containers.name("web")}])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    url = d.api_url()
    assert call(url, path="/healthz").status == 200
    assert call(url, path="/readyz").status == 200
    wedge.touch()
    r = wait_for(lambda: (x := call(url, path="/healthz", timeout=5)).status == 503 and x, 15,
                 what="/healthz 503 while wedged")
    assert any("wedged" in p or "last pass" in p for p in r.json()["problems"]), r.json()
    # The HTTP side still answers everything else from the last snapshot.
    assert call(url, path="/api/v1/status", timeout=5).status == 200
    assert call(url, path="/readyz", timeout=5).status == 200
    wedge.unlink()
    wait_for(lambda: call(url, path="/healthz", timeout=5).status == 200, 15, what="/healthz 200 again")


def test_listen_none_serves_nothing_and_cli_reads_over_the_api(tmp_path, containers, daemon_factory):
    containers.run("web", ["sleep", "100000"])
    inv = write_inventory(tmp_path / "inv", [{"name": "web", "container": containers.name("web")}])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=2)
    url, token = d.api_url(), d.api_token()
    r = d.cli("--url", url, "status", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["daemon_running"] is True and "pass" in doc and doc["services"][0]["name"] == "web"
    # The CLI's own status prints the same document shape (issue 9 reads the snapshot).
    local = json.loads(d.cli("status", "--json").stdout)
    assert set(local) <= set(doc) and set(local["services"][0]) == set(doc["services"][0])
    r = d.cli("--url", url, "events", "--json", "--limit", "3")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 3 and all("type" in x and "id" not in x for x in lines)
    r = d.cli("--url", url, "incidents", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == [], r
    r = d.cli("--url", url, "drift", "--json")
    assert r.returncode == 0 and "findings" in json.loads(r.stdout), r
    r = d.cli("--url", url, "stop", "web")
    assert r.returncode == 1 or r.returncode == 2, r  # no token: refused
    assert containers.state("web")["Running"]
    r = d.cli("--url", url, "--token", token, "stop", "web")
    assert r.returncode == 0, r.stderr
    assert not containers.state("web")["Running"]
    r = d.cli("--url", "local", "start", "web")  # the state dir's daemon, its token from api-token
    assert r.returncode == 0, r.stderr
    assert containers.state("web")["Running"]
    d.stop()
    assert not (d.state_dir / "api.json").exists()
    n = len(d.events())
    d2 = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY), extra=["--listen", "none"]).start()
    assert not (d2.state_dir / "api.json").exists()
    assert not any(e["type"] == "api_listening" for e in d2.events()[n:])


def test_unix_socket_listener_and_a_port_in_use(tmp_path, containers, daemon_factory):
    import socket

    containers.run("web", ["sleep", "100000"])
    inv = write_inventory(tmp_path / "inv", [{"name": "web", "container": containers.name("web")}])
    sock_path = tmp_path / "dw.sock"
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY),
                       extra=["--listen", f"unix:{sock_path}"]).start()
    assert d.api_url() == f"unix:{sock_path}"
    assert stat.S_IMODE(sock_path.stat().st_mode) == 0o600
    r = d.cli("--url", f"unix:{sock_path}", "status", "--json")  # reads open on a unix socket
    assert r.returncode == 0 and json.loads(r.stdout)["services"][0]["name"] == "web", r.stderr
    r = d.cli("--url", f"unix:{sock_path}", "pause", "web")
    assert r.returncode != 0, r  # writes still need the token
    r = d.cli("--url", f"unix:{sock_path}", "--token", d.api_token(), "pause", "web")
    assert r.returncode == 0 and "paused" in r.stdout, r.stderr
    d.stop()
    assert not sock_path.exists() and not (d.state_dir / "api.json").exists()

    # A port someone else holds: the daemon supervises anyway and says why the API is off.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        n = len(d.events())
        d2 = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY),
                            extra=["--listen", f"127.0.0.1:{port}"]).start()
        failed = d2.wait_event(lambda e: e["type"] == "api_failed", after=n)
        assert f"cannot listen on 127.0.0.1:{port}" in failed["reason"] and "supervision goes on" in failed["reason"]
        assert not (d2.state_dir / "api.json").exists()
        d2.wait_event(lambda e: e["type"] == "daemon_ready", after=n)


def test_the_mode_in_force_is_what_status_json_the_api_and_the_cli_say(tmp_path, containers, daemon_factory):
    """A daemon in observe mode: status.json (what `status` reads while it runs), the
    API's status and `status --json` all say observe, for the node and each service.
    (status.json once said auto whatever the mode: it was built without it.)"""
    containers.run("web", ["sleep", "100000"])
    inv = write_inventory(tmp_path / "inv", [{"name": "web", "container": containers.name("web")}])
    policy = FAST_POLICY.replace("[guardrails]\n", "[guardrails]\nmode = \"observe\"\n")
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", policy)).start(resync=1)
    on_disk = json.loads((d.state_dir / "status.json").read_text())
    served = call(d.api_url(), path="/api/v1/status", token=d.api_token()).json()
    printed = json.loads(d.cli("status", "--json").stdout)
    for doc in (on_disk, served, printed):
        assert doc["mode"] == "observe" and [s["mode"] for s in doc["services"]] == ["observe"], doc
    assert served["source"] == on_disk["source"] == "daemon" and "pass" in served
