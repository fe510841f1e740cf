"""dockwarden.observe against the real Docker engine.

Every container made here carries the label ``dockwarden.test=1`` and a unique
name ``dwobs-<run>-<n>``; the ``make`` fixture removes them (with their anonymous
volumes) even when a test fails.
"""

from __future__ import annotations

import http.server
import json
import os
import queue
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest

from dockwarden import model
from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver, connect
from dockwarden.observe.inspect import spec_of
from dockwarden.observe.events import EngineLost, EventStream, replay_window
from dockwarden.observe.host import HostSampler
from dockwarden.observe.plan import event_key, stream_complete
from dockwarden.observe.world import observe_world, replace_containers, write_world

pytestmark = pytest.mark.e2e

IMAGE = os.environ.get("DOCKWARDEN_TEST_IMAGE", "dockwarden-test/busybox:latest")
LABELS = {"dockwarden.test": "1"}


# --------------------------------------------------------------------------- fixtures


def _build_busybox_image(client: docker.DockerClient) -> None:
    """Import a root filesystem holding the static busybox and its applets (design.md)."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "root"
        (root / "bin").mkdir(parents=True)
        (root / "tmp").mkdir()
        shutil.copy2(busybox, root / "bin" / "busybox")
        for a in applets:
            if a != "busybox":
                (root / "bin" / a).symlink_to("busybox")
        tar_path = Path(d) / "root.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(root, arcname=".")
        with open(tar_path, "rb") as f:
            subprocess.run(["docker", "import", "-c", 'CMD ["/bin/sh"]', "-", IMAGE],
                           stdin=f, check=True, capture_output=True)


@pytest.fixture(scope="module")
def client():
    try:
        c = connect()
    except ENGINE_ERRORS as e:
        pytest.fail(f"no Docker engine reachable: {e}")
    try:
        c.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        _build_busybox_image(c)
    yield c
    c.close()


@pytest.fixture
def make(client):
    """make(command, **create_kwargs) -> docker Container (created, not started unless start=True)."""
    run = uuid.uuid4().hex[:8]
    made: list[str] = []

    def _make(command=None, *, start=True, **kwargs):
        name = kwargs.pop("name", None) or f"dwobs-{run}-{len(made)}"
        labels = {**LABELS, **kwargs.pop("labels", {})}
        made.append(name)
        c = client.containers.create(IMAGE, command, name=name, labels=labels, **kwargs)
        if start:
            c.start()
        return c

    _make.names = made  # type: ignore[attr-defined]
    yield _make
    for name in made:
        try:
            client.api.remove_container(name, force=True, v=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture
def observer(client):
    o = ContainerObserver(client)
    yield o
    o.close()


def _wait(pred, timeout_s: float = 20.0, interval_s: float = 0.2):
    """Poll ``pred()`` until it returns a truthy value; return it (or the last falsy one)."""
    deadline = time.monotonic() + timeout_s
    val = pred()
    while not val and time.monotonic() < deadline:
        time.sleep(interval_s)
        val = pred()
    return val


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- states


def test_observe_states_health_and_exit_codes(client, make, observer):
    sleeper = make(["sleep", "300"], restart_policy={"Name": "unless-stopped"})
    exited = make(["sh", "-c", "exit 3"])
    created = make(["sleep", "1"], start=False)
    healthy = make(["sleep", "300"], healthcheck={"test": ["CMD-SHELL", "echo pong"], "interval": 10**9})
    sick = make(["sleep", "300"], healthcheck={"test": ["CMD-SHELL", "echo boom; exit 1"],
                                                "interval": 10**9, "retries": 1})
    bad = make(["/nope"], start=False)
    with pytest.raises(docker.errors.APIError):
        bad.start()

    assert _wait(lambda: (observer.inspect_one(exited.name) or _Never).state == "exited")
    assert _wait(lambda: (observer.inspect_one(healthy.name) or _Never).health == "healthy")
    assert _wait(lambda: (observer.inspect_one(sick.name) or _Never).health == "unhealthy")

    states = observer.observe()
    names = [c.name for c in states]
    assert names == sorted(names)
    by = {c.name: c for c in states}
    assert set(make.names) <= set(by)

    s = by[sleeper.name]
    assert s.state == "running" and s.exit_code is None and s.pid > 0
    assert s.restart_policy == "unless-stopped"
    assert s.labels["dockwarden.test"] == "1"
    assert s.image == IMAGE
    assert s.started_at is not None and s.finished_at is None
    assert s.memory_bytes is not None and s.memory_bytes > 0

    e = by[exited.name]
    assert e.state == "exited" and e.exit_code == 3 and not e.oom_killed
    assert e.finished_at is not None  # (may precede StartedAt by microseconds)
    assert e.cpu_percent is None and e.memory_bytes is None

    c = by[created.name]
    assert c.state == "created" and c.exit_code is None and c.started_at is None

    h = by[healthy.name]
    assert h.health == "healthy" and h.health_last_output == "pong" and h.health_failing_streak == 0

    u = by[sick.name]
    assert u.health == "unhealthy" and u.health_last_output == "boom" and u.health_failing_streak >= 1

    b = by[bad.name]
    assert b.exit_code == 127 and b.error and "nope" in b.error


class _Never:
    """Stands in for a missing container in _wait lambdas."""

    state = health = None


def test_oom_killed(client, make, observer):
    c = make(["sh", "-c", "x=a; while :; do x=$x$x; done"], mem_limit="8m")
    st = _wait(lambda: (lambda s: s if s and s.state == "exited" else None)(observer.inspect_one(c.name)),
               timeout_s=60)
    assert st, "the memory hog did not exit within 60 s"
    assert st.oom_killed is True
    assert st.exit_code == 137
    assert st.memory_limit_bytes == 8 * 1024 * 1024


def test_inspect_one_missing_returns_none(observer):
    assert observer.inspect_one(f"dwobs-missing-{uuid.uuid4().hex}") is None


# --------------------------------------------------------------------------- stats


@pytest.mark.parametrize("mode", ["auto", "api"])
def test_cpu_percent_of_busy_container(client, make, mode):
    busy = make(["sh", "-c", "while :; do :; done"], mem_limit="32m")
    o = ContainerObserver(client, stats=mode)
    try:
        if mode == "auto":
            assert o.stats_source == "cgroup"  # the engine is on this host
        first = {c.name: c for c in o.observe()}[busy.name]
        assert first.cpu_percent is None  # one sample is not a rate
        time.sleep(1.0)
        second = {c.name: c for c in o.observe()}[busy.name]
        assert second.cpu_percent is not None and second.cpu_percent > 50, second.cpu_percent
        assert second.memory_bytes is not None and 0 < second.memory_bytes < 32 * 2**20
        assert second.memory_limit_bytes == 32 * 2**20
        # without stats the last figures stay attached; inspect_one attaches them too
        again = {c.name: c for c in o.observe(with_stats=False)}[busy.name]
        assert again.cpu_percent == second.cpu_percent
        one = o.inspect_one(busy.name)
        assert one is not None and one.cpu_percent == second.cpu_percent
    finally:
        o.close()


def test_container_removed_between_list_and_inspect(client, make):
    keep = make(["sleep", "300"])
    victim = make(["sleep", "300"])

    class RacyApi:
        def __init__(self, api):
            self._api = api

        def containers(self, **kw):
            listing = self._api.containers(**kw)
            self._api.remove_container(victim.id, force=True)
            return listing

        def __getattr__(self, name):
            return getattr(self._api, name)

    class RacyClient:
        def __init__(self, c):
            self.api = RacyApi(c.api)
            self._c = c

        def __getattr__(self, name):
            return getattr(self._c, name)

    o = ContainerObserver(RacyClient(client), stats="none")
    try:
        names = {c.name for c in o.observe()}
    finally:
        o.close()
    assert keep.name in names
    assert victim.name not in names


# --------------------------------------------------------------------------- spec_of round trip


def test_container_recreated_from_spec(client, make):
    port = _free_port()
    c = make(["sh", "-c", "echo hi > /tmp/index.html; exec httpd -f -p 80 -h /tmp"],
             labels={"app": "web"}, environment=["GREETING=hello"],
             healthcheck={"test": ["CMD-SHELL", "wget -q -O- http://127.0.0.1/ >/dev/null"],
                          "interval": 2 * 10**9, "timeout": 10**9, "retries": 2},
             ports={"80/tcp": ("127.0.0.1", port)}, restart_policy={"Name": "on-failure", "MaximumRetryCount": 2},
             mem_limit="64m", working_dir="/tmp", volumes=["/data"])
    client.api.exec_start(client.api.exec_create(c.id, ["sh", "-c", "echo keep > /data/f"]))
    before = client.api.inspect_container(c.id)
    volume = next(m["Name"] for m in before["Mounts"] if m["Destination"] == "/data")
    spec = json.loads(json.dumps(spec_of(before)))  # as if stored and loaded again
    client.api.remove_container(c.id, force=True)  # anonymous volume kept (v=False)
    try:
        _check_recreated(client, spec, before, port)
    finally:
        # bound by name now, so `rm -v` would keep it: remove it explicitly
        try:
            client.api.remove_container(before["Name"].lstrip("/"), force=True)
        except docker.errors.NotFound:
            pass
        client.api.remove_volume(volume, force=True)


def _check_recreated(client, spec, before, port):
    image = spec.pop("image")
    new = client.containers.create(image, **spec)
    new.start()
    after = client.api.inspect_container(new.id)
    assert after["Id"] != before["Id"]
    assert after["Name"] == before["Name"]
    for key in ("Image", "Cmd", "Labels", "Healthcheck", "Env", "WorkingDir"):
        assert after["Config"][key] == before["Config"][key], key
    for key in ("PortBindings", "RestartPolicy", "Memory"):
        assert after["HostConfig"][key] == before["HostConfig"][key], key
    assert after["State"]["Status"] == "running"

    body = _wait(lambda: _http_get(f"http://127.0.0.1:{port}/"), timeout_s=10)
    assert body == "hi\n"
    data = client.api.exec_start(client.api.exec_create(new.id, ["cat", "/data/f"]))
    assert data == b"keep\n"  # the anonymous volume followed the container


def _http_get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.read().decode()
    except OSError:
        return None


# --------------------------------------------------------------------------- events


def test_event_stream_delivers_die_for_killed_container(client, make):
    c = make(["sleep", "300"])
    q: queue.Queue = queue.Queue()
    stream = EventStream(client, q)
    stream.start()
    try:
        t0 = time.monotonic()
        # kill in another thread: the API call returns ~90 ms after the signal,
        # later than the die event, which would hide the event's latency
        killer = threading.Thread(target=client.api.kill, args=(c.id,))
        killer.start()
        die = None
        deadline = t0 + 10
        while time.monotonic() < deadline:
            item = q.get(timeout=max(0.01, deadline - time.monotonic()))
            assert not isinstance(item, EngineLost), item
            assert not item.action.startswith("exec_")
            if item.container_id == c.id and item.action == "die":
                die = item
                break
        latency_ms = (time.monotonic() - t0) * 1000
        killer.join()
        assert die is not None, "no die event within 10 s"
        print(f"\nkill -> die event on the queue: {latency_ms:.1f} ms")
        assert die.name == c.name
        assert die.attributes.get("exitCode") == "137"
        assert abs((model.utcnow() - die.time).total_seconds()) < 10
    finally:
        stream.close()
    assert not stream.alive
    # closing is not an engine loss
    leftovers = []
    while not q.empty():
        leftovers.append(q.get_nowait())
    assert not any(isinstance(i, EngineLost) for i in leftovers)


def _drain_until(q: queue.Queue, cid: str, action: str, seen: dict, timeout: float = 10) -> None:
    """Take events off ``q`` into ``seen`` (by event_key) until ``action`` of ``cid`` arrives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = q.get(timeout=max(0.01, deadline - time.monotonic()))
        assert not isinstance(item, EngineLost), item
        seen[event_key(item)] = None
        if item.container_id == cid and item.action == action:
            return
    raise AssertionError(f"no {action} event of {cid[:12]} within {timeout} s")


def test_the_engines_replay_vouches_for_a_stream_that_missed_nothing(client, make):
    """Issue 9's cached resync: the engine's replay of a window (GET /events with
    since and until, its in-memory buffer) against what the stream delivered. A
    stream that delivered every event is vouched for; one that stopped delivering
    (closed here, as a half-open connection would) is not."""
    c = make(["sleep", "300"])
    q: queue.Queue = queue.Queue()
    stream = EventStream(client, q)
    stream.start()
    seen: dict = {}
    try:
        since = time.time_ns()
        client.api.stop(c.id, timeout=0)
        _drain_until(q, c.id, "stop", seen)
        until = time.time_ns()
    finally:
        stream.close()
    total, replayed = replay_window(client, since, until)
    mine = [e.action for e in replayed if e.container_id == c.id]
    assert mine[-2:] == ["die", "stop"] and "kill" in mine, mine
    assert stream_complete(total, replayed, seen)
    # The stream is gone: the start below reaches the engine's buffer, not us.
    client.api.start(c.id)
    after = time.time_ns()
    total, replayed = replay_window(client, until, after)
    assert "start" in [e.action for e in replayed if e.container_id == c.id]
    assert not stream_complete(total, replayed, seen)


def test_event_stream_replays_since(client, make):
    since = model.utcnow()
    c = make(["true"])
    assert _wait(lambda: client.api.inspect_container(c.id)["State"]["Status"] == "exited")
    q: queue.Queue = queue.Queue()
    stream = EventStream(client, q, since=since)
    stream.start()
    try:
        actions = []
        deadline = time.monotonic() + 5
        while "die" not in actions and time.monotonic() < deadline:
            item = q.get(timeout=5)
            if isinstance(item, model.EngineEvent) and item.container_id == c.id:
                actions.append(item.action)
    finally:
        stream.close()
    assert actions[:3] == ["create", "start", "die"]


class _OneEventHandler(http.server.BaseHTTPRequestHandler):
    """A fake engine: ``/events`` sends one container event, then hangs up."""

    def do_GET(self):  # noqa: N802 - http.server API
        if self.path.startswith("/v1.41/events"):
            body = json.dumps({"Type": "container", "Action": "start",
                               "Actor": {"ID": "f" * 64, "Attributes": {"name": "fake"}},
                               "time": 1, "timeNano": 1_000_000_000}).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


def test_event_stream_reports_engine_lost():
    srv = http.server.HTTPServer(("127.0.0.1", 0), _OneEventHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        fake = docker.DockerClient(base_url=f"tcp://127.0.0.1:{srv.server_port}", version="1.41")
        q: queue.Queue = queue.Queue()
        stream = EventStream(fake, q)
        stream.start()
        first = q.get(timeout=5)
        second = q.get(timeout=5)
        stream.close()
    finally:
        srv.shutdown()
    assert isinstance(first, model.EngineEvent) and first.name == "fake"
    assert isinstance(second, EngineLost) and "ended" in second.error

    dead = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    q2: queue.Queue = queue.Queue()
    EventStream(dead, q2).start()
    lost = q2.get(timeout=5)
    assert isinstance(lost, EngineLost) and lost.error


# --------------------------------------------------------------------------- world


def test_observe_world_and_write(client, make, observer, tmp_path):
    c = make(["sleep", "300"])
    info = observer.engine_info()
    assert info["root_dir"] and info["driver"] and info["server_version"]
    assert info["api_version"] == client.api.api_version
    assert info["cgroup_version"] in ("1", "2")

    sampler = HostSampler()
    now = model.utcnow()
    w = observe_world(observer, sampler, node="n1", now=now)
    assert w.engine_ok and w.engine_error is None
    assert w.docker_root_dir == info["root_dir"]
    assert w.host is not None and w.host.disk("/") is not None and w.host.disk(info["root_dir"]) is not None
    assert c.name in w.by_name()

    c.kill()
    updated = observer.inspect_one(c.name)
    assert updated is not None and updated.state == "exited"
    w2 = replace_containers(w, [updated])
    assert w2.by_name()[c.name].state == "exited"
    assert len(w2.containers) == len(w.containers)

    p = tmp_path / "world.json"
    write_world(w2, p)
    data = json.loads(p.read_text())
    assert data["engine_ok"] is True
    assert {x["name"]: x["state"] for x in data["containers"]}[c.name] == "exited"


def test_observe_world_engine_unreachable():
    dead = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41", timeout=2)
    o = ContainerObserver(dead)
    try:
        w = observe_world(o, HostSampler(), node="n1", now=model.utcnow(), docker_root_dir="/var/lib/docker")
    finally:
        o.close()
    assert w.engine_ok is False
    assert w.engine_error
    assert w.containers == ()
    assert w.host is not None and w.host.disk("/") is not None


def test_incremental_observation_inspects_only_what_changed(client, make, observer):
    """issue 9: after one full observation, a resync inspects only the containers
    the list call shows changed (state, health, exit code), and sees them right."""
    ours = [make(["sleep", "300"]) for _ in range(3)]
    hc = make(["sh", "-c", "rm -f /tmp/bad; sleep 300"],
              healthcheck={"test": ["CMD-SHELL", "test ! -f /tmp/bad"], "interval": 500_000_000, "retries": 1})
    _wait(lambda: client.api.inspect_container(hc.id)["State"].get("Health", {}).get("Status") == "healthy")
    full = {c.id: c for c in observer.observe(with_stats=False)}
    assert observer.last_inspected == len(full) >= 4
    again = {c.id: c for c in observer.observe(with_stats=False, incremental=True)}
    assert set(again) == set(full)
    changed_elsewhere = observer.last_inspected  # other tests' containers may change meanwhile
    client.api.kill(ours[0].id)
    client.api.wait(ours[0].id)
    hc.exec_run(["touch", "/tmp/bad"])
    _wait(lambda: client.api.inspect_container(hc.id)["State"]["Health"]["Status"] == "unhealthy")
    after = {c.id: c for c in observer.observe(with_stats=False, incremental=True)}
    assert after[ours[0].id].state == "exited" and after[ours[0].id].exit_code == 137
    assert after[hc.id].health == "unhealthy"
    assert after[ours[1].id].running and after[ours[1].id] == full[ours[1].id]  # kept, not re-inspected
    assert 2 <= observer.last_inspected <= 2 + changed_elsewhere + 5, observer.last_inspected
    assert observer.last_inspected < len(after) or len(after) <= 7


def test_sparse_observation_inspects_only_what_the_list_cannot_tell(client, make, observer):
    """issue 9 (`once`): running containers whose status shows nothing wrong are
    built from the list; an exited one and an unhealthy one are inspected (exit code,
    health output), and so is a running one the caller names (a spec to record).
    A second read of the counters alone gives CPU % without observing again."""
    up = make(["sleep", "300"])
    named = make(["sleep", "300"])
    dead = make(["sh", "-c", "exit 3"])
    sick = make(["sleep", "300"], healthcheck={"test": ["CMD-SHELL", "false"], "interval": 300_000_000,
                                               "retries": 1})
    client.api.wait(dead.id)
    _wait(lambda: client.api.inspect_container(sick.id)["State"].get("Health", {}).get("Status") == "unhealthy")
    given: list = []

    def must(light):
        given.extend(light)
        return [named.name]

    got = {c.id: c for c in observer.observe(with_stats=True, sparse=must)}
    assert up.id in {c.id for c in given} and dead.id not in {c.id for c in given}
    assert got[up.id].running and got[up.id].inspected is False and got[up.id].spec is None
    assert got[named.id].inspected and got[named.id].spec is not None and got[named.id].started_at is not None
    assert got[dead.id].inspected and got[dead.id].exit_code == 3
    assert got[sick.id].inspected and got[sick.id].health == "unhealthy" and got[sick.id].health_failing_streak >= 1
    time.sleep(0.2)
    again = observer.restat([got[up.id], got[dead.id]])
    assert [c.id for c in again] == [up.id, dead.id]
    if observer.stats_source == "cgroup":
        assert again[0].cpu_percent is not None and again[0].memory_bytes  # the second sample gives CPU %
    assert again[1] == got[dead.id]  # not running: nothing to read
    # The next incremental observation inspects what the sparse one only listed.
    observer.observe(with_stats=False, incremental=True)
    assert observer.last_inspected >= len([c for c in got.values() if not c.inspected])
